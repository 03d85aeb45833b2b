"""aiocompute: an async-first client SDK for remote compute platforms.

The names below are the public surface; everything in a module whose name starts with an
underscore is private. Sync twins of the clients live in :mod:`aiocompute.sync`; the
embedded emulator in :mod:`aiocompute.emulator`.
"""

from ._core.config import ConfigError
from ._core.fanout import FanOutResult, Outcome, RateGovernor, fan_out, fan_out_iter
from ._core.jsonstream import DecodedValue, JSONStreamDecoder
from ._core.pagination import Page, Paginator
from ._core.polling import PollCadence, PollEvent, TransitionEvent, WaitResult, WaitToken
from ._core.retries import RetryPolicy
from ._core.streaming import ResumePolicy
from ._core.transport import PoolLimits, Timeouts
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
from .etengine import ETEngineClient
from .lakesail import LakeSailClient
from .qiskit import QiskitRuntimeClient
from .workbench import JobSpec, LaunchParameters, WorkbenchClient

__all__ = [
    "APIError",
    "AioComputeError",
    "AuthenticationError",
    "ConfigError",
    "DecodedValue",
    "ETEngineClient",
    "FanOutResult",
    "JSONStreamDecoder",
    "JobSpec",
    "LakeSailClient",
    "LaunchParameters",
    "NotFoundError",
    "Outcome",
    "Page",
    "Paginator",
    "PollCadence",
    "PollEvent",
    "PoolLimits",
    "ProtocolError",
    "QiskitRuntimeClient",
    "RateGovernor",
    "RateLimitError",
    "ResumePolicy",
    "RetryPolicy",
    "ServerError",
    "StreamDecodeError",
    "Timeouts",
    "TransitionEvent",
    "TransportError",
    "UnreachableState",
    "WaitError",
    "WaitResult",
    "WaitTimeout",
    "WaitToken",
    "WorkbenchClient",
    "__version__",
    "fan_out",
    "fan_out_iter",
]
