"""A small name -> object registry, shared by every registry of the project.

Lives in ``corruptions`` because that package must not import ``robustbench_lift``; the reverse is fine.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")

__all__ = ["Registry", "close_match", "suggest", "unknown_name"]


def _fold(name: str) -> str:
    return name.strip().lower().replace("-", "_").replace(" ", "_")


def close_match(name: object, valid: Iterable[str]) -> str | None:
    """The valid name closest to ``name`` (same name up to case, hyphens and spaces first, then ``difflib``), or
    None when nothing is close. Only a suggestion: callers still refuse ``name``."""
    if not isinstance(name, str):
        return None
    folded: dict[str, str] = {}
    for v in valid:
        folded.setdefault(_fold(v), v)
    key = _fold(name)
    if key in folded:
        return folded[key]
    hits = difflib.get_close_matches(key, list(folded), n=1, cutoff=0.6)
    return folded[hits[0]] if hits else None


def suggest(names: Iterable[object], valid: Iterable[str]) -> str:
    """``"; did you mean 'b'?"`` for the close valid names of ``names`` (``"'b' for 'B', 'c' for 'C'"`` when several
    are given), or ``""`` when none is close."""
    names, valid = list(names), list(valid)
    pairs = [(n, m) for n in names if (m := close_match(n, valid)) is not None]
    if not pairs:
        return ""
    if len(names) == 1:
        return f"; did you mean {pairs[0][1]!r}?"
    return "; did you mean " + ", ".join(f"{m!r} for {n!r}" for n, m in pairs) + "?"


def unknown_name(what: str, name: object, valid: Iterable[str]) -> str:
    """``"unknown <what> 'x'; valid: a, b, c; did you mean 'b'?"`` (the suggestion only when a name is close)."""
    valid = list(valid)
    return (
        f"unknown {what} {name!r}; valid: {', '.join(valid) or '(none registered)'}{suggest([name], valid)}"
    )


class Registry(Generic[T]):
    """Maps names to objects (functions, classes, builders) plus free-form metadata.

    Args:
        kind: what is registered, used in error messages ("pooling", "model", "corruption", ...).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._meta: dict[str, dict[str, Any]] = {}

    def register(self, name: str | None = None, **meta: Any) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name`` (default: its ``__name__``). Duplicates raise."""

        def deco(obj: T) -> T:
            key = name or getattr(obj, "__name__", None)
            if not key:
                raise ValueError(f"cannot register an unnamed {self.kind}")
            self.add(key, obj, **meta)
            return obj

        return deco

    def add(self, name: str, obj: T, **meta: Any) -> None:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = obj
        self._meta[name] = dict(meta)

    def unregister(self, name: str) -> T:
        """Remove ``name`` and return its object (for tests and plug-ins that clean up after themselves)."""
        obj = self.get(name)
        del self._items[name]
        del self._meta[name]
        return obj

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise ValueError(self.unknown_message(name)) from None

    def meta(self, name: str) -> dict[str, Any]:
        self.get(name)
        return dict(self._meta[name])

    def names(self, **filters: Any) -> list[str]:
        """Registered names in registration order, optionally filtered by metadata equality."""
        return [n for n in self._items if all(self._meta[n].get(k) == v for k, v in filters.items())]

    def unknown_message(self, name: object) -> str:
        return unknown_name(self.kind, name, self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)
