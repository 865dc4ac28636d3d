"""Command-line interface: ``robustbench-lift <command> ...`` (also ``python cli.py <command> ...``).

Each subcommand lives in its own module under ``robustbench_lift/commands/`` exposing
``register(subparsers) -> argparse.ArgumentParser`` and ``run(args) -> int``, listed in ``commands.COMMANDS``
(adding a command: its module and one import line in ``commands/__init__.py``). Exit codes: 0 ok, 1 check failed, 2 usage or input error.
"""

from __future__ import annotations

import argparse
import errno
import logging
import sys
from collections.abc import Sequence

from . import __version__
from .commands import COMMANDS
from .commands._args import UsageError

__all__ = ["build_parser", "main", "UsageError"]

log = logging.getLogger("robustbench_lift")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robustbench-lift",
        description="Measure how pooling layers change the robustness of image classifiers.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        p = module.register(sub)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if getattr(args, "_run", None) is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args._run(args) or 0)
    except (UsageError, ValueError, FileNotFoundError, NotADirectoryError, TypeError) as exc:
        # ValueError/TypeError from the library are validation errors with a message meant for the user.
        if args.verbose >= 2:
            raise
        print(f"robustbench-lift {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        # Disk full, read-only folder, permission denied...: the environment, not a bug - exit 2 with the file named.
        # Every file the toolkit writes goes through fileio's atomic writers, so nothing half-written is left.
        if args.verbose >= 2:
            raise
        what = "disk full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else (exc.strerror or str(exc))
        where = f" ({exc.filename})" if exc.filename else ""
        print(
            f"robustbench-lift {args.command}: error: {what}{where}; free space (or fix the folder) and re-run "
            "the same command: finished work is kept",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished work is saved, re-run the same command to resume", file=sys.stderr)
        return 130
