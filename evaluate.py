"""IrEne's `evaluate.py` command line, kept for compatibility: same as `irene evaluate`."""

import sys

from irene.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
