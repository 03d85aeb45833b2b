"""What the API ``_protocol`` modules share: the one :class:`Request` type their builders
return, the check of every id that goes into a URL path, and reading a JSON body without
letting a hostile one escape as a bare exception.

Sans I/O like the modules that use it: no aiohttp, no anyio. A client sends a
:class:`Request` with :meth:`aiocompute._core.transport.Transport.send`.

Why ids are checked, not only quoted: a URL library and the servers behind it resolve
``.`` and ``..`` segments, so ``DELETE /batches/..`` would reach ``DELETE /`` (and
``DELETE /batches/.`` the collection itself); ``/``, ``?`` and ``#`` would change the path
or cut it; ``%`` would let an id carry an already-encoded ``%2e%2e`` or ``%2f`` that a
server decodes before routing. No API of this SDK has ids with those characters, so they
are refused with an error that says why, never silently changed.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import quote

from attrs import field, frozen

__all__ = ["NOT_JSON", "TOO_DEEP", "HTTPMethod", "Request", "path_id", "read_json"]

#: The HTTP methods the APIs use.
HTTPMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]


@frozen
class Request:
    """One API call, ready for a transport: what every ``_protocol`` builder returns.

    ``method`` is the HTTP method and ``path`` is relative to the client's base URL;
    ``params`` is the query (None or absent parameters: none) and ``body`` the JSON body
    (None: no body). ``idempotent`` says whether the call may be retried after it may have reached
    the server: reads yes, and writes whose repetition changes nothing; creates, launches,
    stops and deletes no. It has no default: every builder states it.

    ``operation`` names the API's operation where the API has such names (Workbench's RPC
    method, a LakeSail operation); ``stream`` marks a call whose answer is a long-lived
    stream (opened with ``Transport.stream``). A request carries no credential: auth
    headers are the transport's.
    """

    method: HTTPMethod
    path: str
    idempotent: bool = field(kw_only=True)
    body: Any = field(default=None, kw_only=True)
    params: Mapping[str, Any] | None = field(default=None, kw_only=True)
    operation: str | None = field(default=None, kw_only=True)
    stream: bool = field(default=False, kw_only=True)


_DOT_SEGMENTS = frozenset({".", ".."})
_PATH_CHARS = {
    "/": "it would split the URL path",
    "?": "it would start the URL's query",
    "#": "it would start the URL's fragment",
    "%": "it would be read as a percent-escape",
}


def path_id(value: object, what: str) -> str:
    """``value``, checked and percent-quoted, ready to be one segment of a URL path.

    ``what`` names the argument in the errors. Raises :class:`TypeError` if ``value`` is
    not a ``str``, and :class:`ValueError` (saying which character, and why) if it is empty
    or only whitespace, is ``.`` or ``..``, or contains ``/ ? # %``, whitespace, a control
    character (C0, DEL, C1) or a lone surrogate. Other characters (non-ASCII, ``:``, ``@``,
    ...) are percent-quoted: ``urllib.parse.unquote`` gives the id back.
    """
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, got {type(value).__name__}")
    if not value or value.isspace():
        raise ValueError(f"{what} must not be empty or only whitespace")
    if value in _DOT_SEGMENTS:
        raise ValueError(f"{what} must not be {value!r}: a dot segment would change the URL path")
    found = _REFUSED.search(value)
    if found is not None:
        char = found.group()
        why = _PATH_CHARS.get(char) or _unsafe(char)
        raise ValueError(f"{what} must not contain {char!r} (at index {found.start()}): {why}")
    return quote(value, safe="")


#: Every character refused by _PATH_CHARS or _unsafe, in one class: re's ``\s`` is exactly
#: ``str.isspace``, and categories Cc and Cs are these ranges (a test checks every code
#: point). One search instead of a Python call per character: a 34-character id took 12 us.
_REFUSED = re.compile(r"[/?#%\s\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def _unsafe(char: str) -> str | None:
    """Why a character may not be in a path id, or None if it may (once quoted)."""
    if char.isspace():  # includes U+2028/U+2029 and the separators \x1c-\x1f
        return "whitespace is not allowed in an id"
    category = unicodedata.category(char)
    if category == "Cc":  # C0, DEL and C1 controls
        return "control characters are not allowed in an id"
    if category == "Cs":  # cannot be encoded as UTF-8, so not quoted either
        return "a lone surrogate is not valid text"
    return None


#: :func:`read_json`'s reason for a body that is not valid JSON.
NOT_JSON = "invalid JSON"
#: :func:`read_json`'s reason for JSON nested deeper than the parser can go.
TOO_DEEP = "JSON nested too deeply"


def read_json(body: str | bytes | bytearray) -> tuple[Any, str | None]:
    """``(value, None)`` for a JSON body, else ``(None, reason)`` (:data:`NOT_JSON` or
    :data:`TOO_DEEP`).

    Never raises for a bad body: ``json.loads`` raises ``RecursionError`` for deep nesting
    (``[[[[...``), which is no error an SDK user expects, and its ``JSONDecodeError`` holds
    the whole body in ``.doc``. A caller that raised its error inside an ``except`` would
    chain that body (perhaps holding credentials) as ``__context__``; raising after this
    returns chains nothing.
    """
    try:
        return json.loads(body), None
    except RecursionError:
        return None, TOO_DEEP
    except ValueError:  # JSONDecodeError, and UnicodeDecodeError for bytes
        return None, NOT_JSON
