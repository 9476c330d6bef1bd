import sys

from irene.cli import console_main

sys.exit(console_main())
