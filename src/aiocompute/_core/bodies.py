"""HTTP bodies as text: the charset from ``Content-Type``, and an HTML page (a proxy's
error page, a login page) reduced to its words for an error's excerpt.

Plain functions on bytes and header values: no aiohttp, no I/O. Shared by the successful
:class:`~aiocompute._core.responses.Response` and the error building of
:mod:`aiocompute._core.http_errors`.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping

__all__ = ["content_type_of", "decode", "looks_like_html", "readable"]

# HTML is reduced to text from at most this many characters: the excerpt is short anyway,
# and the tag-stripping regex must stay cheap on hostile input.
_HTML_SCAN_CHARS = 4096

_HTML_START = (b"<!doctype html", b"<html", b"<head", b"<body", b"<title")
_HTML_NOISE = re.compile(r"(?is)<(script|style)\b[^>]*>.*?</\1\s*>|<!--.*?-->|<[^>]*>")


def content_type_of(headers: Mapping[str, str]) -> str:
    """The ``Content-Type`` header's value, "" when there is none."""
    return headers.get("Content-Type", "") or ""


def _charset(content_type: str) -> str:
    match = re.search(r"charset\s*=\s*\"?([\w.:-]+)", content_type, re.IGNORECASE)
    return match.group(1) if match else "utf-8"


def decode(body: bytes, content_type: str) -> str:
    """``body`` decoded with the charset of ``content_type`` (UTF-8 by default, also for an
    unknown charset name); undecodable bytes are replaced."""
    try:
        return body.decode(_charset(content_type), "replace")
    except LookupError:  # an unknown charset name
        return body.decode("utf-8", "replace")


def looks_like_html(body: bytes, content_type: str) -> bool:
    """Whether the body is an HTML page: by its content type, or by how it starts."""
    if "html" in content_type.lower():
        return True
    return body[:256].lstrip().lower().startswith(_HTML_START)


def readable(body: bytes, content_type: str) -> str:
    """The body as text fit for an excerpt: an HTML page is reduced to its words."""
    if looks_like_html(body, content_type):
        text = decode(body[: _HTML_SCAN_CHARS * 4], content_type)[:_HTML_SCAN_CHARS]
        return " ".join(html.unescape(_HTML_NOISE.sub(" ", text)).split())
    return decode(body[:_HTML_SCAN_CHARS], content_type)
