"""IBM Cloud IAM authentication for Qiskit Runtime: an API key exchanged for bearer tokens.

:class:`IAMAuth` is an :class:`~aiocompute._core.auth.AuthProvider`. It fetches an
access token from ``POST <iam_url>`` (form ``grant_type=...apikey&apikey=<key>``) through the
client's own :class:`~aiocompute._core.transport.Transport` (``authenticate=False``, absolute
URL, so the emulator can serve it too), caches it, and fetches a new one once
``refresh_fraction`` of its lifetime has passed (80% by default: about 12 minutes before a
one-hour token expires). Concurrent callers that find the token due share ONE refresh.

IAM is sent only what it needs: the form (with ``response_type=cloud_iam``, as IBM's own
client sends it), no instance CRN and no API version. Those go to the API only, with the
token: :class:`ServiceAuth` adds them to the headers of API requests.

The API key and every token are registered for redaction; neither appears in a repr, a log
line or an error.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType

import anyio

from .._core.checks import number
from .._core.clock import now as clock_now
from .._core.config import ConfigError
from .._core.http_errors import safe_url
from .._core.transport import Transport
from .._exceptions import APIError, AuthenticationError, ProtocolError, register_secret
from . import _protocol as P

__all__ = ["DEFAULT_IAM_URL", "IAMAuth", "ServiceAuth"]

logger = logging.getLogger("aiocompute.auth")

#: IBM Cloud IAM's token endpoint.
DEFAULT_IAM_URL = "https://iam.cloud.ibm.com/identity/token"


class IAMAuth:
    """Bearer tokens from IBM Cloud IAM for an API key, refreshed before they expire.

    ``api_key`` is the IBM Cloud API key; ``iam_url`` the token endpoint.
    ``refresh_fraction`` (0 < f <= 1) is the part of a token's lifetime after which a new
    one is fetched. ``clock`` (seconds; default the event loop's clock) is injectable for
    tests.

    Use :meth:`bind` to give it the transport it fetches tokens through (the client does).
    """

    def __init__(
        self,
        api_key: str,
        *,
        iam_url: str = DEFAULT_IAM_URL,
        refresh_fraction: float = 0.8,
        clock: Callable[[], float] = clock_now,
    ) -> None:
        if not isinstance(api_key, str) or not api_key.strip():
            raise ValueError("the IBM Cloud API key must be a non-empty string")
        if not isinstance(iam_url, str) or not iam_url.lower().startswith(("http://", "https://")):
            raise ValueError(f"iam_url must be an absolute http(s) URL, got {iam_url!r}")
        number(refresh_fraction, "refresh_fraction", above=0, maximum=1)
        self._api_key = api_key.strip()
        register_secret(self._api_key)
        self.iam_url = iam_url
        self.refresh_fraction = float(refresh_fraction)
        self._clock = clock
        self._transport: Transport | None = None
        self._token: str | None = None
        self._refresh_at = -math.inf
        self._expires_at = -math.inf
        self._lock: anyio.Lock | None = None
        #: How many tokens were fetched (for tests and the curious).
        self.fetches = 0

    def bind(self, transport: Transport) -> None:
        """Fetch tokens through ``transport`` (the client's own)."""
        self._transport = transport

    @property
    def has_token(self) -> bool:
        """Whether a token is cached and not yet expired."""
        return self._token is not None and self._clock() < self._expires_at

    def invalidate(self, stale: str | None = None) -> None:
        """Forget the cached token, so the next request fetches a new one.

        With ``stale``, only if it is still the cached token: many requests rejected with
        the same old token cause one refresh, not one each.
        """
        if stale is None or stale == self._token:
            self._refresh_at = -math.inf
            self._expires_at = -math.inf

    @property
    def current(self) -> str | None:
        """The cached token, whatever its age (the client compares it after a 401)."""
        return self._token

    async def ensure(self) -> str:
        """A valid token: the cached one, or a fresh one if it is due (single-flight)."""
        if self._token is not None and self._clock() < self._refresh_at:
            return self._token
        if self._lock is None:
            self._lock = anyio.Lock()  # made in the running loop, at first need
        async with self._lock:
            # Whoever held the lock may have refreshed already.
            if self._token is not None and self._clock() < self._refresh_at:
                return self._token
            return await self._refresh()

    async def headers(self) -> Mapping[str, str]:
        """``{"Authorization": "Bearer <token>"}``, refreshing the token if it is due."""
        token = await self.ensure()
        return MappingProxyType({"Authorization": f"Bearer {token}"})

    async def _refresh(self) -> str:
        transport = self._transport
        if transport is None:
            raise RuntimeError("IAMAuth is not bound to a transport (call bind())")
        started = self._clock()
        try:
            response = await transport.request(
                "POST",
                self.iam_url,
                data=P.iam_token_form(self._api_key),
                # Fetching a token twice is harmless; auth must not recurse into itself.
                idempotent=True,
                authenticate=False,
            )
        except APIError as exc:
            if exc.status in (404, 405):
                # Nothing answers token requests there: the address is wrong, not the key.
                raise ConfigError(
                    f"no IBM Cloud IAM token endpoint at {safe_url(self.iam_url)} ({exc.message}): "
                    "check iam_url= or $QISKIT_IBM_IAM_URL (it ends in /identity/token)"
                ) from None
            if exc.status is not None and 400 <= exc.status < 500 and exc.status != 429:
                raise AuthenticationError(
                    f"IBM Cloud IAM refused the API key: {exc.message}",
                    status=exc.status,
                    code=exc.code,
                    body=exc.body,
                    method=exc.method,
                    url=exc.url,
                ) from None
            raise
        try:
            data = response.json()
        except ProtocolError as exc:
            raise ProtocolError(f"IBM Cloud IAM answered oddly: {exc.message}") from None
        token = P.parse_iam_token(data, now=time.time())
        register_secret(token.access_token)
        self._token = token.access_token
        self._expires_at = started + token.expires_in
        self._refresh_at = started + token.expires_in * self.refresh_fraction
        self.fetches += 1
        logger.debug("fetched an IAM token valid for %.0f s", token.expires_in)
        return token.access_token

    def __repr__(self) -> str:
        if self._token is None:
            state = "no token yet"
        else:
            left = self._expires_at - self._clock()
            state = f"token expires in {left:.0f} s" if left > 0 else "token expired"
        return f"IAMAuth(iam_url={self.iam_url!r}, {state})"


class ServiceAuth:
    """The headers of every Qiskit Runtime API request: ``IAMAuth``'s bearer token plus fixed
    service headers (``Service-CRN``, ``IBM-API-Version``).

    Given to the transport as its auth provider, so these headers go where the credential
    goes (the API's origin) and never to IAM, whose token requests are sent unauthenticated.
    """

    def __init__(self, iam: IAMAuth, service_headers: Mapping[str, str]) -> None:
        self.iam = iam
        self._service_headers = dict(service_headers)

    async def headers(self) -> Mapping[str, str]:
        """The service headers and ``Authorization: Bearer <token>`` (refreshed if due)."""
        return MappingProxyType({**self._service_headers, **await self.iam.headers()})

    def __repr__(self) -> str:
        return f"ServiceAuth({self.iam!r}, headers={sorted(self._service_headers)})"
