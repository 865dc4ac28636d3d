"""CLI subcommands, one module each (see ``robustbench_lift.cli``), listed in :data:`COMMANDS` by explicit imports.

A command module only parses arguments, calls the library and prints: it exposes
``register(subparsers) -> argparse.ArgumentParser`` and ``run(args) -> int``. Adding a command is one module plus
its import line and entry below.
"""

from __future__ import annotations

from . import check, compare, corrupt, demo, evaluate, report, train

#: The subcommands, in the order ``--help`` lists them.
COMMANDS = (check, compare, corrupt, demo, evaluate, report, train)

__all__ = ["COMMANDS"]
