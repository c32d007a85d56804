"""Name -> builder tables: datasets, nets, methods, losses and metrics register here by name."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from ganbench.errors import RecipeError

T = TypeVar("T")


class Registry(Generic[T]):
    """A validated table from a lower-case name to a builder; unknown names raise a RecipeError."""

    def __init__(self, kind: str, key: str) -> None:
        self.kind = kind  # "method", "dataset", ... for error messages
        self.key = key  # the recipe key that selects from this registry, e.g. "method.name"
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(entry: T) -> T:
            self.add(name, entry)
            return entry

        return add

    def add(self, name: str, entry: T) -> None:
        if not name or name != name.lower() or " " in name:
            raise ValueError(f"{self.kind} names are lower-case without spaces, got {name!r}")
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = entry

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise RecipeError(
                f"{self.key}: unknown {self.kind} {name!r}; choose one of {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
