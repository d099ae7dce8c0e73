"""A name -> entry table with the project's errors; imports nothing heavy."""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries of one kind by name, in registration order.

    Args:
      kind: what an entry is ("dataset", "attack"), for the messages.
      entry_type: the class every entry must be.
    """

    def __init__(self, kind: str, entry_type: type):
        self.kind, self.entry_type, self._entries = kind, entry_type, {}

    def add(self, entry: T, *, replace: bool = False) -> T:
        if not isinstance(entry, self.entry_type):
            raise TypeError(
                f"spec must be a {self.entry_type.__name__}, got {type(entry).__name__}"
            )
        if entry.name in self._entries and not replace:
            raise ValueError(
                f"{self.kind} {entry.name!r} is already registered (pass replace=True)"
            )
        self._entries[entry.name] = entry
        return entry

    def remove(self, name: str) -> None:
        self.get(name)
        del self._entries[name]

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise ValueError(f"{self.kind} must be one of {self.names()}, got {name!r}")
        return self._entries[name]

    def names(self) -> list[str]:
        return list(self._entries)
