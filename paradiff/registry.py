"""Named extensions: one registry per kind of extension point.

A registry holds the built-ins (registered in code, the same way an extension registers), those
registered with `register`, and the entry points of installed packages in its `group`, read on
first use (pyproject.toml's `[project.entry-points."<group>"]`; paradiff's own declares the
shapes world's). A name registered before the entry points are read keeps its value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Extensions by name. `key(entry_point_name, value)` names an entry point's value (default:
    the entry point's name)."""

    def __init__(
        self,
        group: str,
        builtins: Mapping[str, T] | None = None,
        key: Callable[[str, T], str] | None = None,
    ) -> None:
        self.group = group
        self._entries: dict[str, T] = dict(builtins or {})
        self._key = key
        self._read = False

    def register(self, name: str, value: T) -> None:
        self._entries[name] = value

    def entries(self) -> dict[str, T]:
        """Every registered extension by name (the group's entry points read on first use)."""
        if not self._read:
            self._read = True
            for point in entry_points(group=self.group):
                value = point.load()
                name = point.name if self._key is None else self._key(point.name, value)
                self._entries.setdefault(name, value)
        return self._entries
