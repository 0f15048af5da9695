"""Memoisation helpers shared by the modules that compute per-patient values."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


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
