#!/usr/bin/env python3
"""Launcher: ``python cli.py ...`` does what the ``robustbench-lift`` command does."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from robustbench_lift.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
