"""Name -> entry tables: datasets, nets, methods and losses each register one self-describing entry by name.

An entry carries what it is (a display label, a one-line description and what its kind declares: a net's sample
shapes, a dataset's paper split, a method's loss family) beside how to build it, so that validation, `ganbench list`
and the tables read one place. `summary()` is the entry's row in `ganbench list`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, Protocol, TypeVar

from ganbench.errors import RecipeError


class Described(Protocol):
    """What every registry entry tells about itself."""

    name: str
    label: str
    description: str

    def summary(self) -> dict[str, str]:
        """The entry as one row of `ganbench list`: column -> text, the same columns for every entry of a kind."""
        ...


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

    def entries(self) -> list[T]:
        """Every entry, in name order."""
        return [self._entries[name] for name in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
