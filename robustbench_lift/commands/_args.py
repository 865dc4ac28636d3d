"""Argument types shared by the subcommands (``type=`` callables for argparse)."""

from __future__ import annotations

import argparse

__all__ = [
    "UsageError",
    "parse_list",
    "parse_ints",
    "parse_floats",
    "positive_int",
    "non_negative_int",
    "device_name",
]


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
