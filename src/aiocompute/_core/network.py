"""How a client reaches its server: proxies, TLS, extra headers, caller-owned sessions, hooks.

Every API client takes the same connection options (:class:`ConnectionOptions`), checked
here once and applied by :class:`~aiocompute._core.transport.Transport`:

- ``trust_env`` (default True, like requests and httpx): honour ``HTTP_PROXY`` /
  ``HTTPS_PROXY`` / ``NO_PROXY`` (and their lower-case forms) and ``SSL_CERT_FILE`` /
  ``SSL_CERT_DIR``.
- ``proxy``: a proxy URL for every request (overrides the environment); credentials in it
  are sent as ``Proxy-Authorization`` and never logged.
- ``verify``: True (the system's CA store), False (no verification: for tests only), the
  path of a CA bundle file or directory, or an :class:`ssl.SSLContext`.
- ``headers``: extra headers on every request; they never override authentication.
- ``user_agent``: appended to the SDK's own ``User-Agent``.
- ``http_session``: a caller-owned :class:`aiohttp.ClientSession` (the client uses it and
  never closes it; its own connector, limits and ``trust_env`` then apply).
- ``event_hooks``: ``{"request": [...], "response": [...]}``, callables or coroutine
  functions given a read-only, redacted :class:`RequestView` / :class:`ResponseView` of
  each HTTP try (httpx's pattern). An exception a hook raises ends the call as it is.
"""

from __future__ import annotations

import functools
import inspect
import ipaddress
import os
import ssl
import sys
import urllib.request
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypedDict

from attrs import frozen
from yarl import URL

from .._exceptions import register_secret

if sys.version_info >= (3, 11):
    from typing import Unpack
else:  # pragma: no cover
    from typing_extensions import Unpack

if TYPE_CHECKING:
    import aiohttp

__all__ = [
    "ConnectionOptions",
    "EventHooks",
    "RequestHook",
    "RequestView",
    "ResponseHook",
    "ResponseView",
    "Unpack",
    "check_proxy",
    "env_proxies",
    "http_url",
    "is_loopback",
    "proxy_from_env",
    "ssl_setting",
]


class ConnectionOptions(TypedDict, total=False):
    """The connection options every client constructor takes (see this module's docs)."""

    trust_env: bool
    proxy: str | None
    verify: bool | str | os.PathLike[str] | ssl.SSLContext
    headers: Mapping[str, str] | None
    user_agent: str | None
    http_session: aiohttp.ClientSession | None
    event_hooks: Mapping[str, Sequence[Callable[[Any], object]]] | None


@frozen
class RequestView:
    """A read-only view of one HTTP try, for ``event_hooks["request"]``.

    ``url`` is redacted and ``headers`` have every credential replaced by ``***``.
    ``attempt`` counts the tries of this call (1 for the first).
    """

    method: str
    url: str
    headers: Mapping[str, str]
    attempt: int


@frozen
class ResponseView:
    """A read-only view of the answer to one HTTP try, for ``event_hooks["response"]``.

    ``headers`` are redacted like the request's; ``elapsed`` is the seconds from sending the
    request to receiving the status line. The body is not part of the view.
    """

    status: int
    headers: Mapping[str, str]
    request: RequestView
    elapsed: float


RequestHook = Callable[[RequestView], "object | Awaitable[object]"]
ResponseHook = Callable[[ResponseView], "object | Awaitable[object]"]


@frozen
class EventHooks:
    """Checked ``event_hooks``: the request and response hooks, in the order given."""

    request: tuple[RequestHook, ...] = ()
    response: tuple[ResponseHook, ...] = ()

    @classmethod
    def of(cls, hooks: Mapping[str, Sequence[Callable[[Any], object]]] | None) -> EventHooks:
        """Check ``{"request": [...], "response": [...]}``; either key may be left out."""
        if hooks is None:
            return cls()
        if not isinstance(hooks, Mapping):
            raise TypeError('event_hooks must be a mapping: {"request": [...], "response": [...]}')
        unknown = set(hooks) - {"request", "response"}
        if unknown:
            raise ValueError(
                f"event_hooks: unknown event(s) {sorted(map(str, unknown))}; "
                "use 'request' and 'response'"
            )
        checked: dict[str, tuple[Callable[[Any], object], ...]] = {}
        for event in ("request", "response"):
            given = hooks.get(event, ())
            if (
                callable(given)
                or isinstance(given, (str, bytes))
                or not isinstance(given, Sequence)
            ):
                raise TypeError(f"event_hooks[{event!r}] must be a list of callables")
            for i, hook in enumerate(given):
                if not callable(hook):
                    raise TypeError(f"event_hooks[{event!r}][{i}] is not callable: {hook!r}")
            checked[event] = tuple(given)
        return cls(request=checked["request"], response=checked["response"])

    def __bool__(self) -> bool:
        return bool(self.request or self.response)


async def call_hooks(hooks: Sequence[Callable[[Any], object]], view: object) -> None:
    """Call each hook with ``view``, awaiting the ones that return an awaitable."""
    for hook in hooks:
        result = hook(view)
        if inspect.isawaitable(result):
            await result


def http_url(value: object, what: str, *, example: str) -> URL:
    """``value`` checked to be an absolute ``http://`` or ``https://`` URL with a host.

    Its password, if any, is registered as a secret, so that no error or log line shows
    it; errors name the argument (``what``) and never show the URL's user info.
    """
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a URL string, got {type(value).__name__}")
    try:
        url = URL(value.strip())
    except ValueError:
        url = URL()
    register_secret(url.password)
    if url.scheme not in ("http", "https") or not url.host:
        safe = str(url.with_user(None)) if url.host else "<unreadable>"
        raise ValueError(f"{what} must be an http(s) URL such as {example!r}, got {safe!r}")
    return url


def check_proxy(proxy: str | None) -> URL | None:
    """The proxy URL, checked (see :func:`http_url`), or None."""
    return None if proxy is None else http_url(proxy, "proxy", example="http://proxy:3128")


def env_proxies() -> Mapping[str, str]:
    """The environment's proxy settings now, by scheme (``http``, ``https``, ``all``, and
    ``no`` for the hosts to reach directly), as :mod:`urllib.request` reads them: lower-case
    names win over upper-case ones, and ``HTTP_PROXY`` is ignored in a CGI script.

    Read once per client (like httpx): looking them up on every request would cost a thread
    hop each, most of a fast read's client time.
    """
    found: dict[str, str] = urllib.request.getproxies_environment()
    return MappingProxyType(found)


def proxy_from_env(url: str | URL, proxies: Mapping[str, str]) -> URL | None:
    """The proxy ``proxies`` (from :func:`env_proxies`) name for ``url``, or None when it is
    to be reached directly (no proxy for its scheme, or its host matches ``NO_PROXY``)."""
    target = URL(url) if isinstance(url, str) else url
    chosen = proxies.get(target.scheme or "") or proxies.get("all")
    if not chosen:
        return None
    if target.host and _bypassed(target.host, proxies.get("no", "")):
        return None
    return check_proxy(chosen if "://" in chosen else f"http://{chosen}")


def _bypassed(host: str, no_proxy: str) -> bool:
    # NO_PROXY as curl and urllib read it: "*", or names matched as the host or a suffix
    # of it at a dot ("example.com" and ".example.com" both cover "api.example.com").
    host = host.strip("[]").lower()
    for entry in no_proxy.replace(" ", "").lower().split(","):
        if entry == "*":
            return True
        name = entry.strip("[]").rsplit(":", 1)[0] if entry.count(":") == 1 else entry
        name = name.lstrip(".")
        if name and (host == name or host.endswith("." + name)):
            return True
    return False


def ssl_setting(
    verify: bool | str | os.PathLike[str] | ssl.SSLContext,
    *,
    trust_env: bool,
    environ: Mapping[str, str] | None = None,
) -> ssl.SSLContext | bool:
    """What aiohttp's ``ssl=`` gets for ``verify``.

    True keeps aiohttp's default verified context, unless ``trust_env`` and
    ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` name a CA bundle: then a context that trusts it.
    False turns verification off. A path (file or directory) gives a context that trusts
    that CA bundle. An :class:`ssl.SSLContext` is used as it is.
    """
    if isinstance(verify, ssl.SSLContext):
        return verify
    if isinstance(verify, bool):
        if not verify:
            return False
        env = os.environ if environ is None else environ
        cafile = (env.get("SSL_CERT_FILE") or None) if trust_env else None
        capath = (env.get("SSL_CERT_DIR") or None) if trust_env else None
        if cafile is None and capath is None:
            return True
        return _context_for(cafile, capath, where="$SSL_CERT_FILE / $SSL_CERT_DIR")
    if isinstance(verify, (str, os.PathLike)):
        path = Path(verify)
        if path.is_dir():
            return _context_for(None, str(path), where="verify=")
        if path.is_file():
            return _context_for(str(path), None, where="verify=")
        raise ValueError(f"verify= names no CA bundle file or directory: {str(path)!r}")
    raise TypeError(
        "verify must be True, False, the path of a CA bundle or an ssl.SSLContext, "
        f"got {type(verify).__name__}"
    )


def _context_for(cafile: str | None, capath: str | None, *, where: str) -> ssl.SSLContext:
    try:
        return _verified_context(cafile, capath)
    except (OSError, ssl.SSLError) as exc:  # a missing or unreadable file
        error = ValueError(f"{where}: cannot load the CA bundle {cafile or capath!r}: {exc}")
    raise error


# Loading a CA bundle takes tens of milliseconds (measured: 27 ms for the system
# bundle), paid by every client that trusts it: one context per bundle serves them all
# (a context is only read once made). A bundle changed on disk is read by a new process.
@functools.lru_cache(maxsize=16)
def _verified_context(cafile: str | None, capath: str | None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=cafile, capath=capath)


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` names this machine: ``localhost`` or a loopback address."""
    if not host:
        return False
    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
