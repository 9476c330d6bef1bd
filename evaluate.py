"""IrEne's `evaluate.py` command line, kept for compatibility: same as `irene evaluate`."""

import sys

from irene.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", "--json", *sys.argv[1:]]))
