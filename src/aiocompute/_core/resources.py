"""What every API client and resource shares: lifetime, and the waiting methods.

:class:`BaseClient` owns one :class:`~aiocompute._core.transport.Transport` and the pollers
of its resources, and closes them together. :class:`WaitableResource` gives a resource
``wait`` / ``wait_all`` / ``as_completed`` / ``watch`` / ``wait_token`` / ``resume_wait``
on top of its :class:`~aiocompute._core.polling.Poller`, with the API's defaults for the
target state and the deadline. API packages subclass both; the sync twins are generated
from the subclasses.
"""

from __future__ import annotations

import copy as _copy
from collections.abc import (
    AsyncGenerator,
    Awaitable,
    Callable,
    Collection,
    Iterable,
    Mapping,
    Sequence,
)
from contextlib import aclosing
from types import TracebackType
from typing import Any, Generic, TypeVar

from .config import check_str
from .fanout import fan_out
from .governor import Governor, RateGovernor
from .http_config import Timeouts
from .network import ConnectionOptions
from .observability import api_call, observe_transitions, record_transition
from .polling import Poller
from .reconcile import Claims, default_owner
from .retries import RetryPolicy
from .transport import Transport
from .wait_types import OnCancel, PollEvent, TransitionEvent, Until, WaitResult, WaitToken

__all__ = ["BaseClient", "WaitableResource", "client_transport", "each_id"]

#: How many per-id calls (stops, closes, deletes of several ids) are in flight at once.
EACH_ID_CONCURRENCY = 8

R = TypeVar("R")
Self = TypeVar("Self", bound="BaseClient")


def client_transport(
    base_url: str,
    *,
    governor: Governor | None,
    connection: ConnectionOptions,
    client: str,
    **options: Any,
) -> Transport:
    """The :class:`Transport` of one client: every API client builds its own here, so each
    gets a :class:`~aiocompute.RateGovernor` of its own (unlimited until the first 429)
    unless the caller gave one to share. ``connection`` holds the connection options the
    client's constructor took (checked here: ``client`` names the class in errors);
    ``options`` go to :class:`Transport` as they are."""
    unknown = sorted(set(connection) - set(ConnectionOptions.__annotations__))
    if unknown:
        raise TypeError(f"{client}() got an unexpected keyword argument {unknown[0]!r}")
    return Transport(
        base_url,
        governor=governor if governor is not None else RateGovernor(),
        **connection,
        **options,
    )


class BaseClient:
    """Lifetime shared by the API clients: ``async with`` or ``await client.aclose()``.

    The HTTP session is opened lazily on the first call, so a client can be built outside
    any event loop; closing it ends waits in progress and releases every connection.
    """

    def __init__(
        self, transport: Transport, *, owner: str | None = None, reconcile: bool = True
    ) -> None:
        self._transport = transport
        self._pollers: list[Poller[Any]] = []
        if owner is not None and not check_str(owner, "owner").strip():
            raise ValueError("owner must be a non-empty label, e.g. 'ana@laptop'")
        if not isinstance(reconcile, bool):
            raise TypeError(f"reconcile must be True or False, got {type(reconcile).__name__}")
        self._owner = owner.strip() if owner is not None else default_owner()
        self._reconcile = reconcile
        self._claims = Claims()

    @property
    def owner(self) -> str:
        """The owner label this client puts on what it creates, where the API has a field
        for it (``owner=``, default ``user@host``): ``list --mine`` and ``reap`` find them."""
        return self._owner

    def _reconciles(self, reconcile: bool | None) -> bool:
        """Whether a create reconciles: the call's ``reconcile=``, else the client's."""
        if reconcile is None:
            return self._reconcile
        if not isinstance(reconcile, bool):
            raise TypeError(f"reconcile must be True, False or None, got {reconcile!r}")
        return reconcile

    def _make_resources(self) -> None:
        """Create the resources (``self.sessions`` ...), bound to this client. Called by the
        subclass's ``__init__`` and again for each :meth:`with_options` copy."""

    def with_options(
        self: Self,
        *,
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Self:
        """A light copy of this client with other timeouts, retry policy or extra headers,
        for some calls: ``await client.with_options(timeouts=Timeouts(total=5)).version()``.

        The copy shares the connection pool, the credentials and the rate governor; its
        waits are its own. Closing the copy leaves the original open; closing the original
        closes the connections of both.
        """
        clone = _copy.copy(self)
        clone._transport = self._transport.with_options(
            timeouts=timeouts, retry=retry, headers=headers
        )
        clone._pollers = []
        clone._make_resources()
        return clone

    def _poller(self, poller: Poller[R]) -> Poller[R]:
        """Register a poller so that :meth:`aclose` closes it."""
        self._pollers.append(poller)
        return poller

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` was called."""
        return self._transport.closed

    async def aclose(self) -> None:
        """Close the client: end waits in progress, close every connection. Idempotent."""
        for poller in self._pollers:
            await poller.aclose()
        await self._transport.aclose()

    async def __aenter__(self: Self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._transport.base_url!r})"


def _id_list(ids: Iterable[str], method: str) -> list[str]:
    # A bare string is iterable too: wait_all("abc") would wait for "a", "b" and "c".
    if isinstance(ids, (str, bytes)):
        raise TypeError(
            f"{method}() takes a collection of ids, not one {type(ids).__name__}: "
            f"use {method}([{ids!r}])"
        )
    return list(ids)


def one_or_many(ids: str | Iterable[str], argument: str) -> list[str]:
    """``ids`` as a list: one id (a string) or a collection of them. Each id is checked by
    the request that carries it (the API's own path-id rules)."""
    if isinstance(ids, bytes):
        raise TypeError(f"{argument} must be an id (str) or a collection of ids, got bytes")
    id_list = [ids] if isinstance(ids, str) else list(ids)
    if not id_list:
        raise ValueError(f"{argument}: give one id or a non-empty collection of ids")
    return id_list


async def each_id(
    ids: str | Iterable[str], call: Callable[[str], Awaitable[object]], *, argument: str
) -> None:
    """Run ``call(id)`` for one id or each of many (a few at a time): stop / close / delete
    take one id or many alike, for APIs whose request names one.

    One id raises its error as it is. With several, every id is tried, and failures raise
    one ``ExceptionGroup`` naming the failing positions (``except* NotFoundError`` catches
    one kind); ids that succeeded stay done.
    """
    id_list = one_or_many(ids, argument)
    if len(id_list) == 1:
        await call(id_list[0])
        return
    result = await fan_out(call, id_list, concurrency=EACH_ID_CONCURRENCY)
    result.values()  # raises the ExceptionGroup, if any failed


class WaitableResource(Generic[R]):
    """Waiting methods for a resource with a state machine.

    Subclasses set ``_waiter`` (their :class:`Poller`), ``_default_until``,
    ``_default_timeout`` and ``_resource_name`` (their attribute on the client, which names
    their spans: ``sessions``). ``until`` is a state name (in any case), a collection of
    names, ``"done"`` (any terminal state, however it was reached) or a predicate;
    ``timeout`` is the deadline in seconds (always finite).
    """

    _waiter: Poller[R]
    _default_until: str | Collection[str]
    _default_timeout: float
    _resource_name: str

    def _until(self, until: Until[R] | None) -> Until[R]:
        return self._default_until if until is None else until

    def _timeout(self, timeout: float | None) -> float:
        return self._default_timeout if timeout is None else timeout

    def _leaving(self, ids: Sequence[str]) -> Collection[str]:
        """States these ids are expected to leave soon (a wait polls through them instead
        of giving up): e.g. ``suspended`` right after this client asked to resume."""
        return ()

    @api_call("wait")
    async def wait(
        self,
        id: str,
        until: Until[R] | None = None,
        *,
        timeout: float | None = None,
        on_transition: Callable[[TransitionEvent[R]], object] | None = None,
        on_poll: Callable[[PollEvent[R]], object] | None = None,
        on_cancel: OnCancel = "detach",
    ) -> R:
        """Wait until ``id`` reaches ``until``; return it in that state.

        Raises :class:`~aiocompute.WaitTimeout` when ``timeout`` passes first, and
        :class:`~aiocompute.UnreachableState` at once when a state is reached from which the
        target can never come. ``until="done"`` returns the resource in whichever terminal
        state it ended (a job that failed included: look at its state or exit code).
        ``on_transition`` / ``on_poll`` are called (sync or async) on each change / read.
        ``on_cancel="cancel"`` stops the remote resource if the wait times out or is
        cancelled (``"detach"``, the default, leaves it running).
        """
        return await self._waiter.wait(
            id,
            self._until(until),
            timeout=self._timeout(timeout),
            on_transition=observe_transitions(on_transition),
            on_poll=on_poll,
            on_cancel=on_cancel,
            leaving=self._leaving([id]),
        )

    @api_call("wait_all")
    async def wait_all(
        self,
        ids: Iterable[str],
        until: Until[R] | None = None,
        *,
        timeout: float | None = None,
        return_exceptions: bool = False,
        on_transition: Callable[[TransitionEvent[R]], object] | None = None,
        on_cancel: OnCancel = "detach",
    ) -> list[Any]:
        """Wait for every id under one deadline; results in the order of ``ids``.

        All ids are polled together (one request per tick where the API allows). Without
        ``return_exceptions`` the first failure is raised; with it, each id's error takes
        its place in the list.
        """
        ids = _id_list(ids, "wait_all")
        results: list[Any] = await self._waiter.wait_all(
            ids,
            self._until(until),
            timeout=self._timeout(timeout),
            return_exceptions=return_exceptions,  # type: ignore[call-overload]
            on_transition=observe_transitions(on_transition),
            on_cancel=on_cancel,
            leaving=self._leaving(ids),
        )
        return results

    @api_call("as_completed")
    async def as_completed(
        self,
        ids: Iterable[str],
        until: Until[R] | None = None,
        *,
        timeout: float | None = None,
    ) -> AsyncGenerator[WaitResult[R], None]:
        """Yield a :class:`~aiocompute.WaitResult` per id as each finishes (reaches the
        target, fails, or times out); ``result.unwrap()`` returns the resource or raises."""
        # aclosing: leaving this generator early must end the poller's wait at once (and
        # unregister its ids), not whenever the garbage collector finds the inner one.
        ids = _id_list(ids, "as_completed")
        results = self._waiter.as_completed(
            ids,
            self._until(until),
            timeout=self._timeout(timeout),
            on_transition=observe_transitions(None),
            leaving=self._leaving(ids),
        )
        async with aclosing(results):
            async for result in results:
                yield result

    @api_call("watch")
    async def watch(
        self,
        ids: Iterable[str],
        until: str | Collection[str] | None = None,
        *,
        timeout: float | None = None,
    ) -> AsyncGenerator[TransitionEvent[R], None]:
        """Yield every change of state of ``ids`` until each has settled (terminal or
        resumable) or reached ``until`` (default: the resource's usual target, e.g.
        ``"running"`` for sessions, a state it may otherwise stay in for ever)."""
        target = self._default_until if until is None else until
        ids = _id_list(ids, "watch")
        events = self._waiter.watch(ids, timeout=self._timeout(timeout), until=target)
        async with aclosing(events):
            async for event in events:
                record_transition(event)
                yield event

    def wait_token(
        self,
        ids: Iterable[str],
        until: str | Collection[str] | None = None,
        *,
        timeout: float | None = None,
    ) -> WaitToken:
        """A JSON-serialisable token (``.to_json()``) with the ids, target and deadline, so
        that another process can continue the wait with :meth:`resume_wait`."""
        target = self._default_until if until is None else until
        return self._waiter.token(
            _id_list(ids, "wait_token"), target, timeout=self._timeout(timeout)
        )

    @api_call("resume_wait")
    async def resume_wait(self, token: WaitToken | str) -> list[R]:
        """Continue a wait described by a token (or its JSON) until its original deadline."""
        if isinstance(token, str):
            token = WaitToken.from_json(token)
        return await self._waiter.resume(token, on_transition=observe_transitions(None))
