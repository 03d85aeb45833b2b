"""The aiohttp seam: :class:`Transport`, one ``ClientSession`` per client, and the one HTTP
try that requests and streams share.

Every API client talks HTTP through a :class:`Transport`: it joins paths onto the base URL,
adds the headers (auth last, so nothing replaces a credential), holds the rate governor's
slot around each try, calls the event hooks, and raises what
:mod:`aiocompute._core.http_errors` maps aiohttp's failures and non-2xx answers onto. What
it configures from lives in :mod:`~aiocompute._core.http_config` (timeouts, pool limits),
:mod:`~aiocompute._core.auth` (auth providers, credential redaction) and
:mod:`~aiocompute._core.network` (proxies, TLS, hooks); what it sends is prepared by
:mod:`~aiocompute._core.requests`, and what it returns is in :mod:`~aiocompute._core.responses`.
An API's ``_protocol`` builds a :class:`~aiocompute._core.protocol_kit.Request`, which
:meth:`Transport.send` sends.

Retries go through :func:`aiocompute._core.retries.call_with_retries`; whether a call is
idempotent is always stated by the caller.

Timeouts: ``Timeouts.total`` bounds each HTTP exchange (one try) of :meth:`Transport.request`;
the retry policy's ``total_timeout`` bounds the retrying. Streams (:meth:`Transport.stream`)
never inherit ``total``: they are bounded by the connect timeout and by a *stall* timeout,
the longest silence allowed between two chunks.

Credentials never reach logs, reprs or errors: the transport logs method, redacted URL,
status and elapsed time only, and every header value that looks like a credential is
registered for redaction (:mod:`aiocompute._core.auth`).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy as _copy
import itertools
import logging
import os
import random
import ssl
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, TypeVar

import aiohttp
import anyio
from multidict import CIMultiDict
from yarl import URL

from .._exceptions import (
    APIError,
    ClientClosedError,
    InsecureTransportWarning,
    OutcomeUnknown,
    TransportError,
    redact_headers,
)
from .auth import AuthProvider, NoAuth, checked_headers, remember_credentials
from .governor import Governor
from .http_config import (
    DEFAULT_LIMITS,
    DEFAULT_TIMEOUTS,
    PoolLimits,
    Timeouts,
    check_seconds,
    default_user_agent,
)
from .http_errors import (
    AMBIGUOUS_STATUSES,
    MAPPED,
    ErrorParser,
    api_error,
    error_in_body,
    map_error,
    safe_url,
)
from .network import (
    EventHooks,
    RequestView,
    ResponseView,
    call_hooks,
    check_proxy,
    env_proxies,
    proxy_from_env,
    ssl_setting,
)
from .observability import record_response, retry_recorder
from .protocol_kit import Request
from .requests import BaseURL, Prepared
from .responses import ByteStream, Response
from .retries import DEFAULT_RETRY, RetryPolicy, call_with_retries, parse_retry_after

__all__ = ["ERROR_BODY_LIMIT", "Transport"]

logger = logging.getLogger("aiocompute.transport")

T = TypeVar("T")

#: At most this many bytes of an error response are read (the rest is dropped).
ERROR_BODY_LIMIT = 64 * 1024


# --------------------------------------------------------------------------- transport


async def _read_bounded(content: aiohttp.StreamReader, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await content.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _bounded(deadline: float | None) -> contextlib.AbstractContextManager[object]:
    """``anyio.fail_after(deadline)``, or nothing without a deadline: a request has none
    (its ClientTimeout bounds it), and an unbounded cancel scope cost about 6 % of a
    typed read's client CPU (two generator context managers and a scope per try)."""
    return anyio.fail_after(deadline) if deadline is not None else contextlib.nullcontext()


class _Pool:
    """The ``aiohttp.ClientSession`` a transport and its :meth:`Transport.with_options`
    copies share: made lazily in the running loop, unless the caller gave their own.

    Calls that are not idempotent (a launch, a delete) go through a second session that
    never reuses a connection (:meth:`get` with ``fresh=True``): a kept-alive connection
    the server is closing at that very moment fails the request with "server closed the
    connection" although the server never read it, and such a failure cannot be told from
    one after the server acted, so the call could not be retried. Reads keep the pool.
    """

    def __init__(
        self,
        *,
        limits: PoolLimits,
        timeout: aiohttp.ClientTimeout,
        trust_env: bool,
        session: aiohttp.ClientSession | None,
    ) -> None:
        self._limits = limits
        self._timeout = timeout
        self._trust_env = trust_env
        self.session = session
        self._fresh: aiohttp.ClientSession | None = None
        #: Whether the SDK made the session (and so closes it).
        self.owned = session is None
        self.closed = False
        #: Whether the plain-http credential warning was given (once per client).
        self.warned_insecure = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def get(self, *, fresh: bool = False) -> aiohttp.ClientSession:
        """The session; with ``fresh``, one whose every request opens a new connection
        (the caller's own session when it gave one: its connector is its own)."""
        if self.closed:
            raise ClientClosedError("this client is closed; create a new one")
        session = self._pooled()
        if not fresh or not self.owned:
            return session
        if self._fresh is None:
            self._fresh = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(force_close=True),
                timeout=self._timeout,
                raise_for_status=False,
                trust_env=self._trust_env,
            )
        return self._fresh

    def _pooled(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self.session is None:
            connector = aiohttp.TCPConnector(
                limit=self._limits.max_connections,
                limit_per_host=self._limits.max_connections_per_host,
                keepalive_timeout=self._limits.keepalive_timeout,
            )
            self.session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                raise_for_status=False,
                trust_env=self._trust_env,
            )
            self._loop = loop
        elif self.owned and self._loop is not loop:
            raise RuntimeError(
                "this client was first used on another event loop; create one client per event loop"
            )
        return self.session

    def open_sessions(self) -> list[aiohttp.ClientSession]:
        """The sessions made so far (the pooled one, and the fresh-connection one)."""
        return [s for s in (self.session, self._fresh) if s is not None]

    async def aclose(self) -> None:
        self.closed = True
        if self.owned:
            sessions = (self.session, self._fresh)
            self.session = self._fresh = None
            for session in sessions:
                if session is not None and not session.closed:
                    await session.close()


class Transport:
    """An HTTP client bound to one API base URL: one ``aiohttp.ClientSession`` (made lazily
    inside the running loop, or the caller's ``http_session``), closed by :meth:`aclose` or
    ``async with``.

    ``path`` arguments are joined onto ``base_url`` (``"https://h/api"`` + ``"/v1/x"`` =
    ``"https://h/api/v1/x"``); an absolute ``http(s)://`` URL is used as is. Auth headers
    are sent to the base URL's origin only, unless a call says ``authenticate=True``.
    Redirects are never followed: a 3xx answer raises :class:`APIError` naming its
    ``Location`` (none of the APIs redirects, and following one would carry credentials
    and bodies to another origin).

    ``user_agent``, if given, is appended to ``aiocompute/<v> python/<x.y> aiohttp/<v>``.
    ``headers`` are sent with every request; they never override the auth headers.
    ``trust_env``, ``proxy``, ``verify``, ``http_session`` and ``event_hooks`` are the
    connection options of :mod:`aiocompute._core.network`. ``error_parser`` reads an API's
    error answers; ``body_error_parser`` finds an error inside a 2xx body (Workbench's
    RPC errors), which is then retried and reported to the governor like an HTTP status.
    ``credential_hint`` names where the credential comes from, for 401 messages.
    ``on_retry(attempt, error, delay)`` is called before each retry wait.

    A transport garbage-collected while open emits a :class:`ResourceWarning` and closes
    its connections best-effort.
    """

    def __init__(
        self,
        base_url: str,
        *,
        auth: AuthProvider | None = None,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        limits: PoolLimits = DEFAULT_LIMITS,
        retry: RetryPolicy = DEFAULT_RETRY,
        error_parser: ErrorParser | None = None,
        body_error_parser: ErrorParser | None = None,
        user_agent: str | None = None,
        governor: Governor | None = None,
        headers: Mapping[str, str] | None = None,
        on_retry: Callable[[int, BaseException, float], None] | None = None,
        trust_env: bool = True,
        proxy: str | None = None,
        verify: bool | str | os.PathLike[str] | ssl.SSLContext = True,
        http_session: aiohttp.ClientSession | None = None,
        event_hooks: Mapping[str, Sequence[Callable[[Any], object]]] | None = None,
        credential_hint: str | None = None,
    ) -> None:
        self._closed = False
        self._derived = False
        self._base = BaseURL(base_url)
        for name, value, kind in (
            ("timeouts", timeouts, Timeouts),
            ("limits", limits, PoolLimits),
            ("retry", retry, RetryPolicy),
        ):
            if not isinstance(value, kind):
                raise TypeError(f"{name}= must be a {kind.__name__}, got {value!r}")
        if not isinstance(trust_env, bool):
            raise TypeError(f"trust_env must be True or False, got {trust_env!r}")
        if user_agent is not None and (
            not isinstance(user_agent, str) or "\n" in user_agent or "\r" in user_agent
        ):
            raise ValueError("user_agent must be a single-line string")
        if http_session is not None:
            if not isinstance(http_session, aiohttp.ClientSession):
                raise TypeError(
                    "http_session must be an aiohttp.ClientSession, "
                    f"got {type(http_session).__name__}"
                )
            if limits != DEFAULT_LIMITS:
                raise ValueError(
                    "limits= has no effect with http_session=: the session's own connector "
                    "sets its limits"
                )
        self._auth: AuthProvider = auth if auth is not None else NoAuth()
        self._timeouts = timeouts
        self._retry = retry
        self._error_parser = error_parser
        self._body_error_parser = body_error_parser
        self._governor = governor
        self._on_retry = on_retry
        self._credential_hint = credential_hint
        self._proxy = check_proxy(proxy)
        # The environment's proxies, read once (see network.env_proxies); the base URL's
        # own is worked out now, as nearly every request goes there.
        self._env_proxies = env_proxies() if trust_env and self._proxy is None else {}
        self._base_proxy = self._proxy or proxy_from_env(self._base.url, self._env_proxies)
        self._ssl = ssl_setting(verify, trust_env=trust_env)
        self._hooks = EventHooks.of(event_hooks)
        agent = default_user_agent()
        self._default_headers: dict[str, str] = {
            "User-Agent": f"{agent} {user_agent}" if user_agent else agent,
            "Accept": "application/json",
        }
        self._default_headers.update(checked_headers(headers, "headers"))
        self._pool = _Pool(
            limits=limits,
            timeout=timeouts._for_request(timeouts.total),
            # An explicit proxy replaces the environment's.
            # aiohttp's own trust_env would look the proxies (and ~/.netrc) up again on
            # every request, in a worker thread: the transport does it once instead.
            trust_env=False,
            session=http_session,
        )
        self._rng = random.Random()
        # Test seam: the sleep used between retries.
        self._sleep: Callable[[float], Awaitable[Any]] = anyio.sleep

    # -- properties & lifecycle

    @property
    def base_url(self) -> str:
        """The base URL paths are joined onto (no trailing slash)."""
        return self._base.url

    @property
    def timeouts(self) -> Timeouts:
        """The timeouts in force."""
        return self._timeouts

    @property
    def retry(self) -> RetryPolicy:
        """The default retry policy of :meth:`request`."""
        return self._retry

    @property
    def closed(self) -> bool:
        """True after :meth:`aclose` (of this transport, or of the one it was copied from)."""
        return self._closed or self._pool.closed

    def with_options(
        self,
        *,
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Transport:
        """A light copy with other timeouts, retry policy or extra headers, sharing this
        transport's connections, auth, governor and hooks. Closing the copy leaves the
        connections open; closing the original closes them for both."""
        if timeouts is not None and not isinstance(timeouts, Timeouts):
            raise TypeError(f"timeouts= must be a Timeouts, got {timeouts!r}")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise TypeError(f"retry= must be a RetryPolicy, got {retry!r}")
        copy = _copy.copy(self)
        copy._derived = True
        copy._closed = False
        if timeouts is not None:
            copy._timeouts = timeouts
        if retry is not None:
            copy._retry = retry
        if headers is not None:
            copy._default_headers = {
                **self._default_headers,
                **checked_headers(headers, "headers"),
            }
        return copy

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={safe_url(self._base.url)!r})"

    async def __aenter__(self) -> Transport:
        if self.closed:
            raise ClientClosedError("this client is closed; create a new one")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections (unless this is a :meth:`with_options` copy, or the
        session is the caller's). Idempotent."""
        self._closed = True
        if not self._derived:
            await self._pool.aclose()

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        pool = getattr(self, "_pool", None)  # __init__ may have failed early
        if pool is None or self._derived or not pool.owned:
            return
        sessions = [s for s in pool.open_sessions() if not s.closed]
        if not sessions:
            return
        # Must never raise (warnings may be turned into errors; the loop may be gone).
        with contextlib.suppress(Exception):
            _warn(
                f"unclosed {self!r}: use `async with` or `await client.aclose()`",
                ResourceWarning,
                source=self,
            )
        for session in sessions:
            with contextlib.suppress(Exception):
                # Closing the connector makes the session count as closed, so aiohttp does
                # not report it again; this only drops sockets, it needs no await.
                close_now = getattr(session.connector, "_close", None)
                if close_now is not None:
                    close_now()

    # -- request building

    async def _headers_for(self, p: Prepared) -> CIMultiDict[str]:
        merged = CIMultiDict(self._default_headers)
        merged.update(p.extra)
        if p.content_type is not None:
            merged["Content-Type"] = p.content_type
        if p.use_auth:
            auth_headers = await self._auth.headers()
            # Providers may refresh tokens: remember each one for redaction.
            remember_credentials(auth_headers)
            # Last: no other header may replace a credential.
            merged.update(auth_headers)
        return merged

    def _warn_if_insecure(self, p: Prepared) -> None:
        if (
            p.use_auth
            and p.insecure
            and not self._pool.warned_insecure
            and not isinstance(self._auth, NoAuth)
        ):
            self._pool.warned_insecure = True
            warnings.warn(
                f"a credential is sent over plain http to {safe_url(p.url)!r}: anyone on the "
                "network can read it; use https://",
                InsecureTransportWarning,
                stacklevel=4,
            )

    def _feedback(self, status: int | None, retry_after: float | None) -> None:
        if self._governor is not None:
            self._governor.feedback(status, retry_after)

    def _proxy_for(self, url: str) -> URL | None:
        if self._proxy is not None or url.startswith(self._base.url):
            return self._base_proxy
        return proxy_from_env(url, self._env_proxies)  # another origin, e.g. an IAM endpoint

    def _governed(self) -> AbstractAsyncContextManager[object]:
        return self._governor.slot() if self._governor is not None else contextlib.nullcontext()

    # -- one HTTP try, shared by requests and streams

    async def _open(
        self,
        p: Prepared,
        *,
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 (aiohttp's, passed on)
        attempt: int,
        timeout_text: str,
        deadline: float | None = None,
        fresh: bool = False,
    ) -> aiohttp.ClientResponse:
        """Send one try and return its 2xx response, unread (the caller reads and releases
        it). Any other status raises the matching :class:`APIError` (3xx included: never
        followed); a failure to get one raises :class:`TransportError`. ``deadline`` bounds
        the wait for the status line and for an error body (streams, which have no total
        timeout). ``fresh`` sends it on a new connection (see :class:`_Pool`)."""
        if self._closed:
            raise ClientClosedError("this client is closed; create a new one")
        session = self._pool.get(fresh=fresh)
        headers = await self._headers_for(p)
        request_view: RequestView | None = None
        if self._hooks:
            request_view = RequestView(p.verb, p.where, redact_headers(headers), attempt)
            await call_hooks(self._hooks.request, request_view)
        self._warn_if_insecure(p)
        sent_at = anyio.current_time()
        response: aiohttp.ClientResponse | None = None
        error: TransportError | None = None
        try:
            with _bounded(deadline):
                response = await session.request(
                    p.verb,
                    p.url,
                    params=p.query,
                    data=p.body,
                    headers=headers,
                    timeout=timeout,
                    allow_redirects=False,
                    proxy=self._proxy_for(p.url),
                    ssl=self._ssl,
                )
        except MAPPED as exc:
            error = map_error(exc, method=p.verb, url=p.where, timeout_text=timeout_text)
        if error is not None or response is None:
            # Raised outside the except block: aiohttp's exception holds the request's
            # headers (its request_info) and must not ride along as __context__.
            if response is not None:
                response.close()
            self._feedback(None, None)
            record_response(None)
            logger.debug("%s %s failed: %s", p.verb, p.where, error)
            raise error or TransportError("no response", method=p.verb, url=p.where)
        elapsed = anyio.current_time() - sent_at
        status = response.status
        record_response(status)
        logger.debug("%s %s -> %d in %.3fs", p.verb, p.where, status, elapsed)
        try:
            if self._hooks.response:
                assert request_view is not None
                shown = redact_headers(response.headers)
                view = ResponseView(status, shown, request_view, elapsed)
                await call_hooks(self._hooks.response, view)
        except BaseException:
            response.close()
            raise
        if 200 <= status < 300:
            return response
        raw = b""
        # The status alone is enough if the error body cannot be had in time.
        with contextlib.suppress(*MAPPED), _bounded(deadline):
            raw = await _read_bounded(response.content, ERROR_BODY_LIMIT)
        response.close()  # the rest of an error body is not worth reading
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        self._feedback(status, retry_after)
        raise api_error(
            status,
            response.reason,
            raw,
            response.headers,
            method=p.verb,
            url=p.where,
            retry_after=retry_after,
            parser=self._error_parser,
            credential_hint=self._credential_hint,
        )

    async def _with_retries(
        self,
        once: Callable[[int], Awaitable[T]],
        retry: RetryPolicy | None,
        idempotent: bool,
    ) -> T:
        attempts = itertools.count(1)
        return await call_with_retries(
            lambda: once(next(attempts)),
            retry if retry is not None else self._retry,
            idempotent=idempotent,
            rng=self._rng,
            sleep=self._sleep,
            on_retry=retry_recorder(self._on_retry),
        )

    # -- request

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (the per-try HTTP timeout)
        authenticate: bool | None = None,
    ) -> Response:
        """Send a request (retrying per policy) and return the 2xx :class:`Response`.

        ``json`` is sent as a JSON body (None: no body), ``data`` as a form; ``params``
        become the query (None values dropped, bools as ``true``/``false``, lists
        repeated). ``idempotent`` must be stated: False (a launch, a stop) means retry
        only when the request never left. ``retry`` overrides the transport's policy for
        this call; ``timeout`` overrides ``Timeouts.total`` for each try. ``authenticate``
        forces auth headers on (True) or off (False); by default they go only to the base
        URL's origin.

        Raises :class:`APIError` subclasses for non-2xx answers, :class:`TransportError`
        when the server could not be reached or the exchange failed, and
        :class:`OutcomeUnknown` when a call that is not idempotent failed after it may
        have reached the server.
        """
        if not isinstance(idempotent, bool):
            raise TypeError("idempotent= must be True or False")
        if timeout is not None:
            check_seconds("request", "timeout", timeout, allow_none=False)
        p = self._base.prepare(
            method,
            path,
            json=json,
            data=data,
            params=params,
            headers=headers,
            authenticate=authenticate,
        )
        total = self._timeouts.total if timeout is None else timeout
        client_timeout = self._timeouts._for_request(total)
        timeout_text = (
            f"after {total:g} s without a complete response"
            if total
            else "waiting for the response"
        )

        async def once(attempt: int) -> Response:
            return await self._request_once(
                p, client_timeout, attempt, timeout_text, fresh=not idempotent
            )

        unknown: TransportError | APIError | None = None
        try:
            return await self._with_retries(once, retry, idempotent)
        except TransportError as exc:
            if idempotent or not exc.sent or exc.outcome_unknown:
                raise
            unknown = exc
        except APIError as exc:
            # A 502/503/504 may come from something between us and the server, after the
            # server took the request: for a create or a delete, nobody can say it did not.
            if idempotent or exc.status not in AMBIGUOUS_STATUSES:
                raise
            unknown = exc
        # Outside the except block: the new error stands alone (its text says it all).
        if isinstance(unknown, APIError):
            status: int | None = unknown.status
            what, timed_out = unknown.message, False
            if str(status) not in what:
                what = f"HTTP {status}: {what}"
        else:
            status, what, timed_out = None, unknown.message, unknown.timed_out
        raise OutcomeUnknown(
            f"{what}; the server may have received this {p.verb} and acted on it, "
            "so what it creates or deletes may exist (or be gone): look it up before trying "
            "again, as sending it again could make a duplicate",
            method=p.verb,
            url=p.where,
            status=status,
            timed_out=timed_out,
            reason=what,
        )

    def send(
        self,
        request: Request,
        *,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
    ) -> Awaitable[Response]:
        """Send a request an API's ``_protocol`` built: :meth:`request` with its method,
        path, query, JSON body and idempotence; ``retry`` and ``timeout`` as there."""
        # request()'s coroutine itself: a coroutine of our own would only pass it on.
        return self.request(
            request.method,
            request.path,
            json=request.body,
            params=request.params or None,
            idempotent=request.idempotent,
            retry=retry,
            timeout=timeout,
        )

    async def _request_once(
        self,
        p: Prepared,
        client_timeout: aiohttp.ClientTimeout,
        attempt: int,
        timeout_text: str,
        *,
        fresh: bool,
    ) -> Response:
        async with self._governed():
            response = await self._open(
                p,
                timeout=client_timeout,
                attempt=attempt,
                timeout_text=timeout_text,
                fresh=fresh,
            )
            error: TransportError | None = None
            try:
                body = await response.read()
            except MAPPED as exc:
                error = map_error(exc, method=p.verb, url=p.where, timeout_text=timeout_text)
            finally:
                response.release()
            if error is not None:
                self._feedback(None, None)
                record_response(None)
                raise error
            status, headers = response.status, response.headers
            in_body = error_in_body(
                status, body, headers, method=p.verb, url=p.where, parser=self._body_error_parser
            )
            if in_body is not None:
                code = in_body.code
                stands_for = code if isinstance(code, int) and 400 <= code < 600 else status
                self._feedback(stands_for, in_body.retry_after)
                raise in_body
            self._feedback(status, None)
            return Response(status, headers, body, p.verb, p.where)

    # -- stream

    def stream(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        stall_timeout: float | None = None,
        idempotent: bool = True,
        retry: RetryPolicy | None = None,
        authenticate: bool | None = None,
    ) -> AbstractAsyncContextManager[ByteStream]:
        """Open a long-lived streamed response: ``async with t.stream(...) as s:``.

        The stream is not bound by ``Timeouts.total``; instead each wait for the next chunk
        is bounded by ``stall_timeout`` (default ``Timeouts.stall``). Opening (connect and
        status) is retried like :meth:`request`, and a non-2xx status raises the same
        errors. Leaving the block in any way (end, break, error, cancellation) closes the
        connection at once. Reading the body is never retried here: a stream that broke
        halfway must be resumed by the caller, who knows what was already seen.
        """
        if not isinstance(idempotent, bool):
            raise TypeError("idempotent= must be True or False")
        stall = stall_timeout if stall_timeout is not None else self._timeouts.stall
        check_seconds("stream", "stall_timeout", stall, allow_none=False)
        p = self._base.prepare(
            method,
            path,
            json=json,
            data=None,
            params=params,
            headers=headers,
            authenticate=authenticate,
        )
        return self._stream_context(p, stall, retry, idempotent)

    @contextlib.asynccontextmanager
    async def _stream_context(
        self, p: Prepared, stall: float, retry: RetryPolicy | None, idempotent: bool
    ) -> AsyncIterator[ByteStream]:
        # Connect is bounded by its own timeout; the wait for the status line by the stall
        # timeout. Together they bound the opening, pool waits included.
        deadline = stall + (self._timeouts.connect or 0.0)
        timeout_text = f"opening the stream (no answer within {deadline:g} s)"

        async def open_once(attempt: int) -> ByteStream:
            # The governor's slot covers the opening, not the life of the stream.
            async with self._governed():
                response = await self._open(
                    p,
                    timeout=self._timeouts._for_stream(),
                    attempt=attempt,
                    timeout_text=timeout_text,
                    deadline=deadline,
                )
            self._feedback(response.status, None)
            return ByteStream(response, stall=stall, method=p.verb, url=p.where)

        stream = await self._with_retries(open_once, retry, idempotent)
        try:
            yield stream
        finally:
            await stream.aclose()
