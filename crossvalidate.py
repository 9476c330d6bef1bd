"""IrEne's `crossvalidate.py` command line, kept for compatibility (= `irene crossvalidate`)."""

import sys

from irene.cli import main

if __name__ == "__main__":
    sys.exit(main(["crossvalidate", *sys.argv[1:]]))
