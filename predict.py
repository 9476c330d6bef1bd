"""IrEne's `predict.py` command line, kept for compatibility: same as `irene predict`."""

import sys

from irene.cli import main

if __name__ == "__main__":
    sys.exit(main(["predict", *sys.argv[1:]]))
