"""A small name -> object registry, shared by every registry of the project.

Lives in ``corruptions`` because that package must not import ``robustbench_lift``; the reverse is fine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")

__all__ = ["Registry"]


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
        valid = ", ".join(self._items) or "(none registered)"
        return f"unknown {self.kind} {name!r}; valid: {valid}"

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)
