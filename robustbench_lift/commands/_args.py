"""Argument types shared by the subcommands (``type=`` callables for argparse)."""

from __future__ import annotations

import argparse

__all__ = ["UsageError", "parse_list", "parse_ints", "parse_floats", "positive_int", "non_negative_int"]


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
            out.extend(range(int(lo), int(hi) + 1) if sep else [int(item)])
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected integers like 1,3,5 or 1-5, got {text!r}") from None
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
