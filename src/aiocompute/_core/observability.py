"""Logging and tracing: the ``aiocompute`` logger tree, ``AIOCOMPUTE_LOG``, and spans.

Logging. Every logger of the package is a child of ``aiocompute``, named by concern:
``aiocompute.transport`` (one line per HTTP try: method, redacted URL, status, time),
``aiocompute.retries``, ``aiocompute.stream``, ``aiocompute.polling``, ``aiocompute.auth``,
``aiocompute.handles``.
The library adds no handler unless ``AIOCOMPUTE_LOG`` is set (``debug``, ``info``,
``warning`` or ``error``): then :func:`configure_logging`, run by ``import aiocompute``,
puts one stderr handler on the ``aiocompute`` logger (never on the root logger).

Tracing. With ``opentelemetry-api`` installed (``pip install 'aiocompute[otel]'``), each
public API call is a span named ``<api>.<resource>.<method>`` (``workbench.sessions.launch``)
or ``<api>.<method>`` for a client-level call (``workbench.version``). Methods are marked
with :func:`api_call` where they are defined; the call's record lives in a context variable
while the call runs, so that the transport (:func:`record_response`, :func:`retry_recorder`),
the stream resumer and the waits (:func:`record_event`, :func:`observe_transitions`) can
report into the span without being handed it. Without opentelemetry, :func:`api_call`
returns the method itself, and the ``record_*`` functions find no call and return.

What a span carries: the API's name, the id the call names, the status of the last HTTP
answer, the number of retries, events (``retry``, ``wait.transition``, ``stream.reconnect``)
and, on failure, the error's type and its already-redacted text. Never a header, a body, a
credential or the text of an exception that is not one of the SDK's own.
"""

from __future__ import annotations

import contextvars
import functools
import importlib.util
import inspect
import logging
import os
import warnings
from collections.abc import AsyncGenerator, Callable, Mapping
from contextlib import aclosing
from typing import TYPE_CHECKING, Any, TypeVar, cast

from .._exceptions import AioComputeError, redact

if TYPE_CHECKING:
    from .wait_types import TransitionEvent

__all__ = [
    "LOG_ENV",
    "api_call",
    "configure_logging",
    "observe_transitions",
    "record_event",
    "record_response",
    "record_retry",
    "record_transition",
    "retry_recorder",
]

F = TypeVar("F", bound=Callable[..., Any])

# --------------------------------------------------------------------------- logging

#: The environment variable that turns the package's logging on without code.
LOG_ENV = "AIOCOMPUTE_LOG"

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
# The name of the handler AIOCOMPUTE_LOG adds, so that a second import finds it.
_HANDLER_NAME = "aiocompute.AIOCOMPUTE_LOG"
_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def configure_logging(environ: Mapping[str, str] | None = None) -> logging.Handler | None:
    """Apply ``AIOCOMPUTE_LOG``: one stderr handler on the ``aiocompute`` logger, at that level.

    Does nothing when the variable is unset or empty; warns (once per call, no exception)
    when it holds something else than ``debug``, ``info``, ``warning`` or ``error`` (any
    case). Idempotent: a handler added before (by an earlier import) is kept and returned,
    not doubled. The root logger is never touched. Returns the handler, or None.
    """
    value = (os.environ if environ is None else environ).get(LOG_ENV, "").strip()
    if not value:
        return None
    level = _LEVELS.get(value.lower())
    if level is None:
        warnings.warn(
            f"{LOG_ENV}={value[:40]!r} is not a log level; use one of "
            f"{', '.join(_LEVELS)} (any case). Logging stays off.",
            RuntimeWarning,
            stacklevel=2,
        )
        return None
    logger = logging.getLogger("aiocompute")
    logger.setLevel(level)
    for existing in logger.handlers:
        if existing.name == _HANDLER_NAME:
            existing.setLevel(level)
            return existing
    handler = logging.StreamHandler()  # sys.stderr
    handler.set_name(_HANDLER_NAME)
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter(_FORMAT))
    logger.addHandler(handler)
    return handler


# --------------------------------------------------------------------------- tracing


def _otel_installed() -> bool:
    try:
        return importlib.util.find_spec("opentelemetry.trace") is not None
    except (ImportError, ValueError):  # a parent hidden (sys.modules[...] = None) or broken
        return False


# Decided once, when the clients are defined: without opentelemetry, api_call changes nothing.
_OTEL_INSTALLED = _otel_installed()


class _Tracing:
    """The few opentelemetry names this module uses, imported on the first API call."""

    def __init__(self) -> None:
        from opentelemetry import context, trace

        from .._version import __version__

        # A ProxyTracer until an SDK's provider is set: it follows the provider set later.
        self.tracer = trace.get_tracer("aiocompute", __version__)
        self.attach = context.attach
        self.detach = context.detach
        self.in_context = trace.set_span_in_context
        self.status = trace.Status
        self.error = trace.StatusCode.ERROR


_tracing: _Tracing | None = None
_tracing_failed = False


def _get_tracing() -> _Tracing | None:
    global _tracing, _tracing_failed
    if _tracing is None and not _tracing_failed:
        try:
            _tracing = _Tracing()
        except ImportError:  # found at definition time, but not importable after all
            _tracing_failed = True
    return _tracing


class _Call:
    """What the transport, the waits and the streams report about the API call running."""

    __slots__ = ("retries", "span", "status")

    def __init__(self, span: Any) -> None:
        self.span = span
        self.status: int | None = None
        self.retries = 0


_current: contextvars.ContextVar[_Call | None] = contextvars.ContextVar(
    "aiocompute_api_call", default=None
)


def _is_id_name(name: str) -> bool:
    return name in ("id", "ids") or name.endswith(("_id", "_ids"))


def _id_parameter(fn: Callable[..., Any]) -> str | None:
    """The first parameter after ``self`` when it names a resource (``session_id``...)."""
    code = getattr(fn, "__code__", None)
    if code is None or code.co_argcount < 2:
        return None
    name = code.co_varnames[1]
    return name if _is_id_name(name) else None


def _span_names(obj: Any, method: str) -> tuple[str, str]:
    # Resources carry their attribute name on the client; clients carry the API's name.
    resource = getattr(obj, "_resource_name", None)
    if resource is None:
        api: str = obj._api_name
        return api, f"{api}.{method}"
    api = obj._client._api_name
    return api, f"{api}.{resource}.{method}"


def _start(
    tracing: _Tracing, obj: Any, method: str, id_param: str | None, args: Any, kwargs: Any
) -> Any:
    api, name = _span_names(obj, method)
    attributes: dict[str, Any] = {"aiocompute.api": api}
    if id_param is not None:
        ident = args[0] if args else kwargs.get(id_param)
        if isinstance(ident, str):  # one id; a list of them is left out
            attributes["aiocompute.resource_id"] = ident
    return tracing.tracer.start_span(name, attributes=attributes)


def _fail(tracing: _Tracing, call: _Call, exc: BaseException) -> None:
    if isinstance(exc, GeneratorExit):
        return  # the caller left a stream early: not a failure
    error_type = type(exc).__name__
    call.span.set_attribute("error.type", error_type)
    if isinstance(exc, AioComputeError):
        # The SDK's errors are redacted already; redact again in case a server echoed one.
        message = redact(str(exc))
        call.span.add_event(
            "exception", {"exception.type": error_type, "exception.message": message}
        )
    else:
        # Other errors' text (aiohttp's, a user callback's) is not ours to vouch for.
        message = error_type
    call.span.set_status(tracing.status(tracing.error, message))


def _finish(call: _Call) -> None:
    span = call.span
    if call.status is not None:
        span.set_attribute("http.response.status_code", call.status)
    span.set_attribute("aiocompute.retry_count", call.retries)
    span.end()


def _traced_coroutine(fn: F, method: str, id_param: str | None) -> F:
    async def traced(self: Any, *args: Any, **kwargs: Any) -> Any:
        tracing = _get_tracing()
        if tracing is None:
            return await fn(self, *args, **kwargs)
        span = _start(tracing, self, method, id_param, args, kwargs)
        if not span.get_span_context().is_valid:  # no SDK configured: nothing to record
            return await fn(self, *args, **kwargs)
        call = _Call(span)
        token = _current.set(call)
        # Current while the call runs, so that the calls it makes are its children.
        context_token = tracing.attach(tracing.in_context(span))
        try:
            return await fn(self, *args, **kwargs)
        except BaseException as exc:
            _fail(tracing, call, exc)
            raise
        finally:
            tracing.detach(context_token)
            _current.reset(token)
            _finish(call)

    return cast(F, traced)


def _traced_generator(fn: F, method: str, id_param: str | None) -> F:
    # The span is current only during each step (each __anext__), never across a yield:
    # the consumer's code between items runs in its own context, and a context attached
    # in one task is never detached in another.
    async def traced(self: Any, *args: Any, **kwargs: Any) -> AsyncGenerator[Any, None]:
        tracing = _get_tracing()
        items: AsyncGenerator[Any, None] = fn(self, *args, **kwargs)
        if tracing is None:
            async with aclosing(items):
                async for item in items:
                    yield item
            return
        call = _Call(_start(tracing, self, method, id_param, args, kwargs))
        try:
            while True:
                token = _current.set(call)
                context_token = tracing.attach(tracing.in_context(call.span))
                try:
                    item = await items.__anext__()
                except StopAsyncIteration:
                    break
                finally:
                    tracing.detach(context_token)
                    _current.reset(token)
                yield item
        except BaseException as exc:
            _fail(tracing, call, exc)
            raise
        finally:
            token = _current.set(call)
            context_token = tracing.attach(tracing.in_context(call.span))
            try:
                await items.aclose()
            finally:
                tracing.detach(context_token)
                _current.reset(token)
                _finish(call)

    return cast(F, traced)


def api_call(method: str) -> Callable[[F], F]:
    """Mark a public API method (``async def`` or async generator) for tracing.

    ``method`` is the method's name as users call it (``"launch"``); the span is named
    ``<api>.<resource>.<method>`` from the client's ``_api_name`` and, for a resource, its
    ``_resource_name`` (``workbench.sessions.launch``), or ``<api>.<method>`` on a client.
    When the first parameter after ``self`` names an id (``id``, ``session_id``...), a
    single id passed there becomes ``aiocompute.resource_id``.

    Without opentelemetry installed, the method is returned unchanged. The wrapper keeps
    the method's name, docstring and signature (``functools.wraps``), so the sync twins
    are generated from it as from the method itself.
    """

    def decorate(fn: F) -> F:
        if not _OTEL_INSTALLED:
            return fn
        id_param = _id_parameter(fn)
        if inspect.isasyncgenfunction(fn):
            traced = _traced_generator(fn, method, id_param)
        elif inspect.iscoroutinefunction(fn):
            traced = _traced_coroutine(fn, method, id_param)
        else:
            raise TypeError(f"api_call: {fn.__qualname__} is neither async def nor async generator")
        return cast(F, functools.wraps(fn)(traced))

    return decorate


# --------------------------------------------------------------------------- reporting


def record_response(status: int | None) -> None:
    """Report one HTTP try's outcome to the current API call: its status, or None for a
    try that got no answer (a transport error). The span keeps the last status seen."""
    call = _current.get()
    if call is not None and status is not None:
        call.status = status


def record_retry(attempt: int, error: BaseException, delay: float) -> None:
    """Report a retry to the current API call (the retry driver's ``on_retry`` signature):
    counted in ``aiocompute.retry_count`` and added as a ``retry`` event."""
    call = _current.get()
    if call is None:
        return
    call.retries += 1
    call.span.add_event(
        "retry", {"attempt": attempt, "delay": delay, "error.type": type(error).__name__}
    )


OnRetry = Callable[[int, BaseException, float], None]


def retry_recorder(on_retry: OnRetry | None) -> OnRetry:
    """The ``on_retry`` to give the retry driver: :func:`record_retry`, then ``on_retry``."""
    if on_retry is None:
        return record_retry
    hook = on_retry

    def both(attempt: int, error: BaseException, delay: float) -> None:
        record_retry(attempt, error, delay)
        hook(attempt, error, delay)

    return both


def record_event(name: str, attributes: Mapping[str, str | int | float]) -> None:
    """Add an event to the current API call's span (nothing without one)."""
    call = _current.get()
    if call is not None:
        call.span.add_event(name, dict(attributes))


def _transition_attributes(event: TransitionEvent[Any]) -> dict[str, str]:
    attributes = {"id": event.id, "to": event.new_state}
    if event.old_state is not None:  # None for the first state a wait sees
        attributes["from"] = event.old_state
    return attributes


def record_transition(event: TransitionEvent[Any]) -> None:
    """Add a ``wait.transition`` event (id, from, to) to the current API call's span."""
    call = _current.get()
    if call is not None:
        call.span.add_event("wait.transition", _transition_attributes(event))


def observe_transitions(
    hook: Callable[[TransitionEvent[Any]], object] | None,
) -> Callable[[TransitionEvent[Any]], object] | None:
    """An ``on_transition`` hook for a wait that records each transition in the current
    API call's span, then calls ``hook`` (returning what it returns, which the poller
    awaits if it is awaitable). ``hook`` itself when no call is being traced."""
    call = _current.get()
    if call is None:
        return hook

    def on_transition(event: TransitionEvent[Any]) -> object:
        # The call captured now: the poller may run hooks from whichever wait drives it.
        call.span.add_event("wait.transition", _transition_attributes(event))
        return None if hook is None else hook(event)

    return on_transition
