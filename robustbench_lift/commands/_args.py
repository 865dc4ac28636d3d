"""Argument types, help texts and the help formatter shared by the subcommands.

Nothing here imports torch or the evaluation stack at module import: ``--help`` must stay fast, so a ``type=``
callable that needs a heavy module imports it when it is called.
"""

from __future__ import annotations

import argparse
import os

__all__ = [
    "UsageError",
    "parse_list",
    "parse_ints",
    "parse_floats",
    "positive_int",
    "non_negative_int",
    "device_name",
    "HelpFormatter",
    "REPORTS_ROOT",
    "OUT_HELP",
    "LIMIT_HELP",
    "run_path",
    "add_limit",
]

#: Where a bare NAME given for a run or report folder lives (``--out NAME`` means ``reports/NAME``).
REPORTS_ROOT = "reports"

#: The sentence every option or argument resolved by :func:`run_path` ends its help with.
OUT_HELP = f"a bare NAME means {REPORTS_ROOT}/NAME; a path (with a /) is used as given"

#: The help of ``--limit`` wherever it selects evaluation images (``evaluate``, ``corrupt``, ``demo``).
LIMIT_HELP = (
    "a seeded random subset of N images (the same N and --seed pick the same images in evaluate and corrupt)"
)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps descriptions as written and appends ``(default: X)`` to an option's help where it says something.

    Nothing is appended when the help already states its default, for flags (``store_true`` / ``--no-*``) and for
    a default of ``None``.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if (
            "default" in text.lower()
            or action.default is None
            or action.default is argparse.SUPPRESS
            or action.nargs == 0
            or not action.option_strings
            or isinstance(action.default, bool)
        ):
            return text
        return f"{text} (default: %(default)s)"


def run_path(text: str) -> str:
    """A run or report folder: a bare ``NAME`` means ``reports/NAME``; a path (with a separator) is kept.

    The one rule for every command, so that ``evaluate --out runA`` writes ``reports/runA`` and ``report runA`` /
    ``check runA`` / ``compare runA runB`` read it back.
    """
    if not text:
        raise argparse.ArgumentTypeError("expected a folder name or path, got an empty string")
    if os.path.isabs(text) or "/" in text or os.sep in text or text in (".", ".."):
        return text
    return os.path.join(REPORTS_ROOT, text)


def add_limit(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """Add ``--limit N`` with the one meaning and help text evaluate and corrupt share."""
    parser.add_argument("--limit", type=positive_int, default=None, metavar="N", help=LIMIT_HELP)


class UsageError(Exception):
    """Bad input from the user: the CLI prints it without a traceback and exits with code 2."""


def parse_list(text: str) -> list[str]:
    """``"a,b, c"`` -> ``["a", "b", "c"]``; empty entries are an error."""
    items = [s.strip() for s in text.split(",")]
    if not items or any(not s for s in items):
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    return items


def parse_ints(text: str) -> list[int]:
    """``"1,3,5"`` or ``"1-5"`` -> a list of integers."""
    out: list[int] = []
    for item in parse_list(text):
        lo, sep, hi = item.partition("-")
        try:
            first, last = (int(lo), int(hi)) if sep else (int(item), int(item))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected integers like 1,3,5 or 1-5, got {text!r}") from None
        if last < first:
            raise argparse.ArgumentTypeError(
                f"empty range {item!r}: write the smaller number first (e.g. 1-5)"
            )
        out.extend(range(first, last + 1))
    return out


def parse_floats(text: str) -> list[float]:
    """``"0.5,0.5,0.5"`` -> a list of floats."""
    try:
        return [float(v) for v in parse_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 0.5,0.5,0.5, got {text!r}") from None


def _int_at_least(text: str, minimum: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    return _int_at_least(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    return _int_at_least(text, 0, "an integer >= 0")


def device_name(text: str) -> str:
    """``cpu``, ``cuda``, ``cuda:N`` or ``mps``, checked against what this machine has (no traceback later)."""
    kind, _, index = text.partition(":")
    if kind not in ("cpu", "cuda", "mps") or (index and not index.isdigit()):
        raise argparse.ArgumentTypeError(f"unknown device {text!r}; valid: cpu, cuda, cuda:N, mps")
    if kind == "cpu":
        return text
    import torch  # only when a non-CPU device is asked for: keeps --help fast

    if kind == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(
                f"device {text!r} asked for but CUDA is not available here; use cpu"
            )
        if index and int(index) >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(
                f"device {text!r} asked for but this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    elif not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise argparse.ArgumentTypeError(f"device {text!r} asked for but MPS is not available here; use cpu")
    return text
