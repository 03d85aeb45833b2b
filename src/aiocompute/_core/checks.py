"""Numeric argument checks, one rule for the whole SDK.

- :class:`TypeError` when the value is not of the right kind. ``bool`` is never a number
  here (``True`` is an ``int`` to Python, never a timeout or a count to a user).
- :class:`ValueError` when it is of the right kind but out of range (NaN and infinities
  included, unless allowed).

Messages name the argument as the caller knows it (``"timeout"``, ``"RetryPolicy.max_attempts"``)
and show the value given. attrs validators are made by :func:`validator`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

__all__ = ["count", "number", "probability", "seconds", "validator"]


def number(
    value: object,
    name: str,
    *,
    minimum: float | None = None,
    above: float | None = None,
    maximum: float | None = None,
    below: float | None = None,
    finite: bool = True,
    unit: str = "",
) -> float:
    """``value`` checked to be a number (an ``int`` or ``float``, not a ``bool``) within
    ``[minimum, maximum]``, ``> above`` and ``< below``; finite unless ``finite=False``.
    ``unit`` (e.g. ``"seconds"``) goes into messages. A caller that allows None checks for
    it first."""
    what = f"a number of {unit}" if unit else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be {what}, got {value!r}")
    if finite and not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if math.isnan(value):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if above is not None and not value > above:
        raise ValueError(f"{name} must be > {above:g}, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum:g}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum:g}, got {value!r}")
    if below is not None and not value < below:
        raise ValueError(f"{name} must be < {below:g}, got {value!r}")
    return value


def seconds(value: object, name: str) -> float:
    """A positive, finite number of seconds (a timeout, an interval)."""
    return number(value, name, above=0, unit="seconds")


def probability(value: object, name: str) -> float:
    """A number within ``[0, 1]`` (a rate, a share of requests)."""
    return number(value, name, minimum=0, maximum=1)


def count(value: object, name: str, *, minimum: int = 0, maximum: int | None = None) -> int:
    """An ``int`` (not a ``bool``) of at least ``minimum`` (and at most ``maximum``)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if maximum is not None and not minimum <= value <= maximum:
        raise ValueError(f"{name} must be within {minimum}..{maximum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return value


def validator(
    check: Callable[..., object], owner: str | None, **options: Any
) -> Callable[[Any, Any, Any], None]:
    """An attrs validator running ``check(value, "<owner>.<attribute>", **options)``;
    ``owner=None`` names the instance's class (validators shared by several classes)."""

    def validate(instance: Any, attribute: Any, value: Any) -> None:
        prefix = type(instance).__name__ if owner is None else owner
        check(value, f"{prefix}.{attribute.name}", **options)

    return validate
