"""What a transport returns: a whole :class:`Response`, or a :class:`ByteStream` read as it
arrives.

Both carry the redacted URL and the method for their errors; neither shows its body or
headers in its repr (a token endpoint's body is a credential).
"""

from __future__ import annotations

import json as _json
from collections.abc import Mapping
from typing import Any, NamedTuple

import aiohttp
import anyio

from .._exceptions import ProtocolError, TransportError
from .bodies import content_type_of, decode, looks_like_html, readable
from .http_errors import MAPPED, map_error

__all__ = ["ByteStream", "Response"]


class Response(NamedTuple):
    """A complete, successful (2xx) HTTP response.

    ``headers`` is case-insensitive. ``url`` is the redacted URL that was requested.
    """

    status: int
    headers: Mapping[str, str]
    body: bytes
    method: str
    url: str

    @property
    def text(self) -> str:
        """The body decoded with the charset of ``Content-Type`` (UTF-8 by default)."""
        return decode(self.body, content_type_of(self.headers))

    def json(self) -> Any:
        """The body parsed as JSON.

        Raises :class:`ProtocolError` (with the status and a short excerpt) for an empty
        body, an HTML page (a proxy's or a login page) or anything that is not valid JSON.
        """
        if not self.body.strip():
            raise ProtocolError(
                "expected a JSON body, got an empty one",
                status=self.status,
                method=self.method,
                url=self.url,
            )
        try:
            return _json.loads(self.body)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
            detail = (
                "nested too deeply"
                if isinstance(exc, RecursionError)
                else f"{type(exc).__name__}: {exc}"
            )
        # Raised here, not in the except block: the JSONDecodeError (whose .doc is the whole
        # body) must not ride along as __context__.
        content_type = content_type_of(self.headers)
        if looks_like_html(self.body, content_type):
            message = "expected JSON, got an HTML page (from a proxy or a login page?)"
        else:
            message = f"expected JSON, got an invalid body ({detail})"
        raise ProtocolError(
            message,
            status=self.status,
            body=readable(self.body, content_type),
            method=self.method,
            url=self.url,
        )

    def __repr__(self) -> str:
        # Never the body or headers: a token endpoint's body is a credential.
        return (
            f"Response(status={self.status}, method={self.method!r}, url={self.url!r}, "
            f"body=<{len(self.body)} bytes>)"
        )


class ByteStream:
    """The body of a long-lived streamed response, as byte chunks in arrival order.

    Iterate with ``async for chunk in stream``. Each wait for the next chunk is bounded by
    the stall timeout: silence longer than that raises :class:`TransportError` ("stream
    stalled"). Obtained from :meth:`Transport.stream`, whose ``async with`` block closes it.
    """

    def __init__(
        self, response: aiohttp.ClientResponse, *, stall: float, method: str, url: str
    ) -> None:
        self._response = response
        self._stall = stall
        self._eof = False
        self._closed = False
        #: Bytes received so far.
        self.bytes_read = 0
        #: The request method.
        self.method = method
        #: The redacted request URL.
        self.url = url

    @property
    def status(self) -> int:
        """The HTTP status (always 2xx: other statuses raise when the stream is opened)."""
        return self._response.status

    @property
    def headers(self) -> Mapping[str, str]:
        """The response headers (case-insensitive)."""
        return self._response.headers

    @property
    def closed(self) -> bool:
        """True once the stream ended or was closed."""
        return self._closed

    def __aiter__(self) -> ByteStream:
        return self

    async def __anext__(self) -> bytes:
        if self._eof:
            raise StopAsyncIteration
        if self._closed:
            raise RuntimeError("this stream was closed: read it inside its `async with` block")
        error: TransportError | None = None
        try:
            with anyio.fail_after(self._stall):
                chunk = await self._response.content.readany()
        except MAPPED as exc:
            self._shut()
            if isinstance(exc, TimeoutError) and not isinstance(exc, aiohttp.ClientError):
                error = TransportError(
                    f"stream stalled: no data for {self._stall:g} s",
                    sent=True,
                    retryable=True,
                    method=self.method,
                    url=self.url,
                )
            else:
                error = map_error(
                    exc, method=self.method, url=self.url, timeout_text="reading the stream"
                )
        except BaseException:
            self._shut()  # cancelled mid-read: the connection is in an unknown state
            raise
        if error is not None:
            # Raised outside the except block: aiohttp's exception (its request_info holds
            # the request's headers) must not ride along as __context__.
            raise error
        if not chunk:
            self._eof = True
            self._shut()
            raise StopAsyncIteration
        self.bytes_read += len(chunk)
        return chunk

    async def aclose(self) -> None:
        """Close the stream now; an unread connection is dropped, not reused."""
        self._shut()

    def _shut(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._eof:
            self._response.release()  # fully read: the connection may be reused
        else:
            self._response.close()  # unread bytes pending: drop the connection

    def __repr__(self) -> str:
        return f"ByteStream(status={self.status}, url={self.url!r}, bytes_read={self.bytes_read})"
