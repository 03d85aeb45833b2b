"""Requests as a transport sends them, worked out once before the first try.

:class:`BaseURL` is the base URL a transport is bound to: paths are joined onto it, and its
origin decides where auth headers go. :meth:`BaseURL.prepare` turns one call's arguments
into a :class:`Prepared` request: the URL, the encoded query and body (JSON or a form), the
checked extra headers, whether auth headers go with it, and the redacted URL its errors,
logs and hooks show. No I/O here; every try of a request (and every retry) sends the same.
"""

from __future__ import annotations

import json as _json
import re
from collections.abc import Mapping
from typing import Any, NamedTuple
from urllib.parse import urlencode

from yarl import URL

from .auth import checked_headers
from .http_errors import safe_url
from .network import http_url, is_loopback

__all__ = ["BaseURL", "Prepared"]


class Prepared(NamedTuple):
    """What every try of one request or stream sends, worked out once."""

    verb: str
    url: str
    query: list[tuple[str, str]] | None
    body: bytes | None
    content_type: str | None
    extra: Mapping[str, str]
    use_auth: bool
    #: A credential would go over plain http to a host that is not loopback.
    insecure: bool
    #: The redacted URL with its query, for errors, logs and hooks.
    where: str


class BaseURL:
    """The base URL of a transport, checked: an absolute http(s) URL with no query.

    ``url`` is the base URL with no trailing slash. Its password, if it has one, is
    registered for redaction like any other credential.
    """

    __slots__ = ("_insecure", "_origin", "url")

    def __init__(self, base_url: str) -> None:
        parsed = _check_base_url(base_url)
        self.url = str(parsed).rstrip("/")
        self._origin = (parsed.scheme, parsed.host, parsed.port)
        # (A password in the URL itself was registered as a secret by http_url.)
        self._insecure = parsed.scheme == "http" and not is_loopback(parsed.host)

    def resolve(self, path: str) -> tuple[str, bool]:
        """The URL of ``path``, and whether it was joined onto the base URL (then it has the
        base URL's origin by construction; an absolute URL must be checked)."""
        if not isinstance(path, str):
            raise TypeError(f"path must be a str, got {type(path).__name__}")
        if _ABSOLUTE.match(path):
            if not path.lower().startswith(("http://", "https://")):
                raise ValueError(f"only http(s) URLs can be requested, got {safe_url(path)!r}")
            return path, False
        if not path:
            return self.url, True
        return f"{self.url}/{path.lstrip('/')}", True

    def prepare(
        self,
        method: str,
        path: str,
        *,
        json: Any,
        data: Mapping[str, str] | None,
        params: Mapping[str, Any] | None,
        headers: Mapping[str, str] | None,
        authenticate: bool | None,
    ) -> Prepared:
        """One call's arguments, checked and encoded (see :meth:`Transport.request`).

        Auth headers go to the base URL's origin only, unless ``authenticate`` says
        otherwise.
        """
        verb = method.upper()
        url, joined = self.resolve(path)
        query = _encode_params(params)
        where = safe_url(_with_query(url, query))
        body, content_type = _encode_body(json, data, f"{verb} {where}")
        extra = checked_headers(headers, f"{verb} {where}")
        if joined:
            same_origin, insecure = True, self._insecure
        else:
            try:
                target = URL(url)
            except ValueError:
                same_origin, insecure = False, False
            else:
                # Effective ports: "https://h:443" and "https://h" are one origin.
                same_origin = (target.scheme, target.host, target.port) == self._origin
                insecure = target.scheme == "http" and not is_loopback(target.host)
        use_auth = same_origin if authenticate is None else authenticate
        return Prepared(verb, url, query, body, content_type, extra, use_auth, insecure, where)


def _check_base_url(base_url: str) -> URL:
    # (No path in the example: each client documents its own; Workbench's adds /api.)
    url = http_url(base_url, "base_url", example="https://host.example.com")
    if url.query_string or url.fragment:
        raise ValueError(f"base_url must not have a query or fragment: {safe_url(base_url)!r}")
    return url


_ABSOLUTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def _encode_params(params: Mapping[str, Any] | None) -> list[tuple[str, str]] | None:
    if params is None:
        return None
    encoded: list[tuple[str, str]] = []
    for key, value in params.items():
        values = value if isinstance(value, (list, tuple)) else (value,)
        for item in values:
            if item is None:  # an absent optional parameter
                continue
            if isinstance(item, bool):
                encoded.append((key, "true" if item else "false"))
            elif isinstance(item, (str, int, float)):
                encoded.append((key, str(item)))
            else:
                raise TypeError(
                    f"query parameter {key!r}: cannot send a {type(item).__name__} "
                    "(use str, int, float, bool, or a list of those)"
                )
    return encoded


def _with_query(url: str, query: list[tuple[str, str]] | None) -> str:
    """The URL as it will be sent, for logs and errors."""
    if not query:
        return url
    try:
        parsed = URL(url)
        return str(parsed.with_query([*parsed.query.items(), *query]))
    except (TypeError, ValueError):
        return url


# What json.dumps(separators=(",", ":"), ensure_ascii=False, allow_nan=False) would build on
# every call; one encoder serves every call (encode() keeps no state between calls).
_JSON_ENCODER = _json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _encode_body(
    json_body: Any, data: Mapping[str, str] | None, where: object
) -> tuple[bytes | None, str | None]:
    if json_body is not None and data is not None:
        raise ValueError(f"{where}: pass either json= or data=, not both")
    if json_body is not None:
        try:
            text = _JSON_ENCODER.encode(json_body)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{where}: the JSON body cannot be encoded: {exc}") from None
        return text.encode("utf-8"), "application/json"
    if data is not None:
        if not isinstance(data, Mapping):
            raise TypeError(f"{where}: data= must be a mapping of form fields")
        return urlencode(list(data.items())).encode("ascii"), "application/x-www-form-urlencoded"
    return None, None
