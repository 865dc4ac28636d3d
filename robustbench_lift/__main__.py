"""``python -m robustbench_lift ...`` does what the ``robustbench-lift`` command does."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
