"""aiocompute: an async-first client SDK for remote compute platforms.

The names below are the public surface; everything in a module whose name starts with an
underscore is private. Sync twins of the clients live in :mod:`aiocompute.sync`; the
embedded emulator in :mod:`aiocompute.emulator`.

Where names live: this package has the four clients, what they share (errors, options,
paginators, waits, fan-out) and the inputs a call is given (``JobSpec``, ``LaunchParameters``,
``Hardware``, ``SessionConfig``). Every model of an API, inputs and answers alike, is in
that API's package: ``from aiocompute.workbench import Session`` (``aiocompute.workbench``,
``.qiskit``, ``.lakesail``, ``.etengine``), where names such as ``Session`` differ per API.
"""

import importlib
from typing import TYPE_CHECKING, Any

from ._core import observability as _observability
from ._core.config import ConfigError
from ._core.fanout import FanOutResult, Outcome, fan_out, fan_out_iter
from ._core.governor import RateGovernor
from ._core.handles import Handle
from ._core.http_config import PoolLimits, Timeouts
from ._core.jsonstream import DecodedValue, JSONStreamDecoder
from ._core.network import RequestView, ResponseView
from ._core.pagination import Page, Paginator
from ._core.retries import RetryPolicy
from ._core.streaming import ResumePolicy
from ._core.wait_types import PollCadence, PollEvent, TransitionEvent, WaitResult, WaitToken
from ._exceptions import (
    AioComputeError,
    APIError,
    AuthenticationError,
    ClientClosedError,
    ConflictError,
    InsecureTransportWarning,
    NotFoundError,
    OutcomeUnknown,
    ProtocolError,
    RateLimitError,
    ServerError,
    StreamDecodeError,
    TransportError,
    UnreachableState,
    UsageLimitExceeded,
    WaitError,
    WaitTimeout,
)
from ._version import __version__

# AIOCOMPUTE_LOG=debug (or info, warning, error) logs to stderr without code; unset: nothing.
_observability.configure_logging()

if TYPE_CHECKING:
    from .etengine import ETEngineClient, Hardware
    from .lakesail import LakeSailClient, SessionConfig
    from .qiskit import QiskitRuntimeClient
    from .workbench import JobSpec, LaunchParameters, WorkbenchClient

# The API packages load on first use (PEP 562): a program that talks to one platform does
# not pay for importing the other three.
_LAZY_NAMES = {
    "ETEngineClient": "etengine",
    "LakeSailClient": "lakesail",
    "QiskitRuntimeClient": "qiskit",
    "WorkbenchClient": "workbench",
    "JobSpec": "workbench",
    "LaunchParameters": "workbench",
    "Hardware": "etengine",
    "SessionConfig": "lakesail",
}
_LAZY_PACKAGES = frozenset({"etengine", "lakesail", "qiskit", "workbench"})


def __getattr__(name: str) -> Any:
    if name in _LAZY_PACKAGES:
        return importlib.import_module(f"{__name__}.{name}")
    package = _LAZY_NAMES.get(name)
    if package is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{package}"), name)
    globals()[name] = value  # found directly from now on
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_NAMES) | _LAZY_PACKAGES)


__all__ = [
    "APIError",
    "AioComputeError",
    "AuthenticationError",
    "ClientClosedError",
    "ConfigError",
    "ConflictError",
    "DecodedValue",
    "ETEngineClient",
    "FanOutResult",
    "Handle",
    "Hardware",
    "InsecureTransportWarning",
    "JSONStreamDecoder",
    "JobSpec",
    "LakeSailClient",
    "LaunchParameters",
    "NotFoundError",
    "Outcome",
    "OutcomeUnknown",
    "Page",
    "Paginator",
    "PollCadence",
    "PollEvent",
    "PoolLimits",
    "ProtocolError",
    "QiskitRuntimeClient",
    "RateGovernor",
    "RateLimitError",
    "RequestView",
    "ResponseView",
    "ResumePolicy",
    "RetryPolicy",
    "ServerError",
    "SessionConfig",
    "StreamDecodeError",
    "Timeouts",
    "TransitionEvent",
    "TransportError",
    "UnreachableState",
    "UsageLimitExceeded",
    "WaitError",
    "WaitResult",
    "WaitTimeout",
    "WaitToken",
    "WorkbenchClient",
    "__version__",
    "fan_out",
    "fan_out_iter",
]
