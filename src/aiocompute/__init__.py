"""aiocompute: an async-first client SDK for remote compute platforms."""

from ._exceptions import (
    AioComputeError,
    APIError,
    AuthenticationError,
    NotFoundError,
    ProtocolError,
    RateLimitError,
    ServerError,
    StreamDecodeError,
    TransportError,
    UnreachableState,
    WaitError,
    WaitTimeout,
)
from ._version import __version__

__all__ = [
    "APIError",
    "AioComputeError",
    "AuthenticationError",
    "NotFoundError",
    "ProtocolError",
    "RateLimitError",
    "ServerError",
    "StreamDecodeError",
    "TransportError",
    "UnreachableState",
    "WaitError",
    "WaitTimeout",
    "__version__",
]
