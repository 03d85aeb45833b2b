"""Authentication headers, and keeping credentials out of every text the SDK shows.

An :class:`AuthProvider` supplies the headers of each HTTP try; :class:`StaticAuth` (a
bearer token, a raw API key, a session cookie) and :class:`NoAuth` are the plain ones (an
API may bring its own, such as Qiskit's refreshing IAM tokens). Every header value that
looks like a credential, whether it comes from a provider or from the caller's extra
headers, is registered with :func:`aiocompute._exceptions.register_secret`, so that error
texts are scrubbed of it even when a server echoes it back.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Protocol

from .._exceptions import SECRET_HEADER, register_secret

__all__ = [
    "AuthProvider",
    "NoAuth",
    "StaticAuth",
    "checked_headers",
    "register_credential",
    "remember_credentials",
]


def register_credential(value: str) -> None:
    """Register a credential (a header value) for redaction, with its part after a scheme."""
    register_secret(value)
    # "Bearer abc" / "Basic abc" / "token abc": the bare credential may be echoed alone.
    parts = value.split(None, 1)
    if len(parts) == 2:
        register_secret(parts[1].strip())


def remember_credentials(headers: Mapping[str, str]) -> None:
    """Register the value of every header whose name says it holds a credential."""
    for name, value in headers.items():
        if SECRET_HEADER.search(name):
            register_credential(value)


def checked_headers(headers: Mapping[str, str] | None, where: object) -> dict[str, str]:
    """``headers`` as a dict, checked (str to str, no line breaks), credentials registered.

    ``where`` is only formatted into an error message. Errors name the header, never its
    value (it may be a credential).
    """
    if headers is None:
        return {}
    if not isinstance(headers, Mapping):
        raise TypeError(f"{where} must be a mapping of header names to values")
    checked: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise TypeError(f"{where}: header {name!r} must map a str to a str")
        if any(c in name or c in value for c in "\r\n"):
            raise ValueError(f"{where}: header {name!r} contains a line break")
        if SECRET_HEADER.search(name):
            register_credential(value)
        checked[name] = value
    return checked


class AuthProvider(Protocol):
    """Supplies the authentication headers of each HTTP try.

    Called once per try, so a provider may refresh an expiring token (Qiskit's IAM token)
    between tries.
    """

    async def headers(self) -> Mapping[str, str]:
        """The headers to add to the request, e.g. ``{"Authorization": "Bearer ..."}``."""
        ...


class StaticAuth:
    """Fixed authentication headers (a bearer token, a raw API key, a session cookie).

    Every value (and its part after a scheme such as ``Bearer``) is registered for
    redaction. The repr shows header names, never values.
    """

    __slots__ = ("_headers",)

    def __init__(self, headers: Mapping[str, str]) -> None:
        checked = checked_headers(headers, "StaticAuth")
        for value in checked.values():
            register_credential(value)
        self._headers: Mapping[str, str] = MappingProxyType(checked)

    @classmethod
    def bearer(cls, token: str) -> StaticAuth:
        """``Authorization: Bearer <token>``."""
        if not isinstance(token, str) or not token.strip():
            raise ValueError("a bearer token must be a non-empty string")
        return cls({"Authorization": f"Bearer {token.strip()}"})

    async def headers(self) -> Mapping[str, str]:
        """The fixed headers."""
        return self._headers

    def __repr__(self) -> str:
        return f"StaticAuth(<headers: {', '.join(self._headers) or 'none'}>)"


class NoAuth:
    """No authentication headers."""

    __slots__ = ()

    async def headers(self) -> Mapping[str, str]:
        """An empty mapping."""
        return MappingProxyType({})

    def __repr__(self) -> str:
        return "NoAuth()"
