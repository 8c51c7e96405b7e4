"""``python -m cifarnets`` (also what ``torchrun -m cifarnets train ...`` runs)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
