"""Memoisation helpers shared by the modules that compute per-patient values."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def keep(memo: dict[Any, T], key: Hashable, value: T, size: int) -> T:
    """Store `value` in a memory of at most `size` entries and return it.

    A full memory is emptied rather than trimmed: what a cohort repeats is found again at
    once, and what it never repeats (a lab value) costs no bookkeeping per entry. Called only
    when a lookup missed, so the lookups themselves stay plain dict reads.
    """
    if len(memo) >= size:
        memo.clear()
    memo[key] = value
    return value


class once(Generic[T]):  # noqa: N801 - used as a decorator, like property
    """A property computed on first use and then stored on the instance.

    functools.cached_property does the same, but on Python 3.11 it takes a lock on every
    first use, which costs more than the values cached here take to compute. Works on
    frozen dataclasses: the value goes straight into the instance's __dict__.
    """

    def __init__(self, compute: Callable[[Any], T]) -> None:
        self.compute = compute
        self.name = compute.__name__
        self.__doc__ = compute.__doc__

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        value = instance.__dict__[self.name] = self.compute(instance)
        return value
