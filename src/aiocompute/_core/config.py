"""Settings resolution shared by every client: explicit argument first, then the environment."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from typing import TypeVar

from .._exceptions import AioComputeError

__all__ = ["ConfigError", "check_str", "renamed_argument", "resolve_setting"]

T = TypeVar("T")


class ConfigError(AioComputeError, ValueError):
    """A setting is missing or empty: given neither as an argument nor in the environment.

    Also a :class:`ValueError`, since it is raised for bad constructor arguments.
    """


def check_str(value: object, argument: str) -> str:
    """``value`` if it is a ``str``, else :class:`TypeError` naming ``argument`` and the type.

    Never the value itself: it may be a secret (a token passed as bytes, say).
    """
    if not isinstance(value, str):
        raise TypeError(f"{argument} must be a str, got {type(value).__name__}")
    return value


def resolve_setting(
    value: str | None,
    env_names: Sequence[str],
    *,
    what: str,
    argument: str,
    required: bool = True,
    environ: Mapping[str, str] | None = None,
) -> str | None:
    """Return ``value`` if given, else the first non-empty environment variable of ``env_names``.

    Raises :class:`ConfigError` naming both the argument and the variables when a required
    setting is missing, and :class:`TypeError` when ``value`` is not a ``str``. The errors
    never contain the value of anything (it may be a secret).
    """
    if value is not None:
        check_str(value, argument)
        if not value.strip():
            raise ConfigError(f"{what}: the {argument!r} argument is empty")
        return value
    env = os.environ if environ is None else environ
    for name in env_names:
        found = env.get(name)
        if found and found.strip():
            return found.strip()
    if required:
        names = " or ".join(f"${n}" for n in env_names)
        raise ConfigError(f"{what} is required: pass {argument}=... or set {names}")
    return None


def renamed_argument(
    new: T | None, old: T | None, *, new_name: str, old_name: str, where: str
) -> T | None:
    """The value of an argument that was renamed: ``new`` if given, else ``old`` with a
    :class:`DeprecationWarning` naming the new name (old names keep working for a release).

    Both given is a :class:`TypeError`. ``where`` names the callable in the messages.
    """
    if old is None:
        return new
    if new is not None:
        raise TypeError(f"{where}: pass {new_name}= only ({old_name}= is its deprecated old name)")
    warnings.warn(
        f"{where}({old_name}=...) is deprecated: use {new_name}=...",
        DeprecationWarning,
        stacklevel=3,
    )
    return old
