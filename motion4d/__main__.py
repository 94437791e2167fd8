"""``python -m motion4d ...``: the ``motion4d`` console script (also under ``torchrun -m motion4d``)."""
import sys

from motion4d.cli import main

if __name__ == "__main__":
    sys.exit(main())
