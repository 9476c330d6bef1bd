"""IrEne's `train.py` command line, kept for compatibility: same as `irene train`."""

import sys

from irene.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
