"""What configures a transport's HTTP: timeouts, connection-pool limits, the User-Agent.

Plain frozen values, checked when made (a bad number raises at once, naming the field);
:class:`~aiocompute._core.transport.Transport` turns them into aiohttp's settings.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import aiohttp
from attrs import field, frozen

from .._version import __version__
from .checks import count, seconds

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_TIMEOUTS",
    "PoolLimits",
    "Timeouts",
    "check_seconds",
    "default_user_agent",
]


def check_seconds(owner: str, name: str, value: Any, *, allow_none: bool) -> None:
    """Raise unless ``value`` is a positive finite number (or None, if ``allow_none``);
    ``owner.name`` names it in the error."""
    if value is None:
        if allow_none:
            return
        raise ValueError(f"{owner}.{name} must be a positive number of seconds, not None")
    seconds(value, f"{owner}.{name}")


def _seconds(owner: str, *, allow_none: bool) -> Callable[[Any, Any, Any], None]:
    def check(_inst: Any, attribute: Any, value: Any) -> None:
        check_seconds(owner, attribute.name, value, allow_none=allow_none)

    return check


def _count(_inst: Any, attribute: Any, value: Any) -> None:
    count(value, f"PoolLimits.{attribute.name}")  # 0 = unlimited


@frozen
class Timeouts:
    """Timeouts in seconds; ``None`` means no limit (except for ``stall``).

    - ``connect``: establishing a TCP (and TLS) connection.
    - ``read``: the longest wait for the next bytes of a response (socket read). A request
      arms this timer only when it could fire before ``total`` does (``read < total``, or
      ``total`` is None): by default ``total`` already bounds every request.
    - ``total``: one whole HTTP exchange of :meth:`Transport.request` (each try on its own;
      the retry policy bounds the retrying). Never applied to streams.
    - ``stall``: the longest silence allowed on a stream between two chunks. It cannot be
      None: a stream without a stall timeout could hang forever.
    """

    connect: float | None = field(default=10.0, validator=_seconds("Timeouts", allow_none=True))
    read: float | None = field(default=60.0, validator=_seconds("Timeouts", allow_none=True))
    total: float | None = field(default=60.0, validator=_seconds("Timeouts", allow_none=True))
    stall: float = field(default=60.0, validator=_seconds("Timeouts", allow_none=False))

    def _for_request(self, total: float | None) -> aiohttp.ClientTimeout:
        # connect=None: waiting for a free pooled connection is bounded by total, not by the
        # connect timeout, so a busy fan-out does not fail with spurious connect timeouts.
        # aiohttp re-arms the read timer on every chunk received: skip it when total, which
        # covers the body too, would always fire first.
        read = self.read if total is None or (self.read is not None and self.read < total) else None
        return aiohttp.ClientTimeout(
            total=total, connect=None, sock_connect=self.connect, sock_read=read
        )

    def _for_stream(self) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(
            total=None, connect=None, sock_connect=self.connect, sock_read=None
        )


@frozen
class PoolLimits:
    """Connection-pool limits of a transport's one ``ClientSession``.

    ``max_connections`` and ``max_connections_per_host`` use aiohttp's meaning: 0 means
    unlimited. ``keepalive_timeout`` is how long an idle connection is kept for reuse.
    """

    max_connections: int = field(default=100, validator=_count)
    max_connections_per_host: int = field(default=0, validator=_count)
    keepalive_timeout: float = field(
        default=15.0, validator=_seconds("PoolLimits", allow_none=False)
    )


#: The default timeouts: connect 10 s, read 60 s, total 60 s, stall 60 s.
DEFAULT_TIMEOUTS = Timeouts()

#: The default pool: 100 connections, no per-host limit, 15 s keep-alive.
DEFAULT_LIMITS = PoolLimits()


def default_user_agent() -> str:
    """``aiocompute/<version> python/<x.y> aiohttp/<version>``."""
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    return f"aiocompute/{__version__} python/{py} aiohttp/{aiohttp.__version__}"
