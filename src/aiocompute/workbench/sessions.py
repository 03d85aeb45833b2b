"""``wb.sessions``: launch, list, read, resume, stop and wait for Workbench sessions."""

from __future__ import annotations

import math
from collections.abc import (
    Awaitable,
    Callable,
    Collection,
    Generator,
    Mapping,
    Sequence,
)
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any

import anyio
import attrs

from .._core.handles import DEFAULT_CLEANUP_TIMEOUT, Handle, scoped
from .._core.observability import api_call
from .._core.pagination import Page, Paginator
from .._core.polling import Poller
from .._core.reconcile import (
    Plan,
    create_once,
)
from .._core.resources import WaitableResource
from .._core.wait_types import Until
from .._exceptions import NotFoundError
from . import _protocol as P
from ._base import WorkbenchBase
from ._states import SESSION_STATES
from .models import (
    EnvironmentVariable,
    LaunchedSession,
    LaunchParameters,
    ListedSessions,
    Session,
    SessionHook,
    SessionListing,
)

__all__ = ["SessionsResource"]

# For how long after resume() a wait polls through a session's old "suspended" state.
_RESUME_GRACE = 120.0
_RESUMABLE = frozenset(SESSION_STATES.resumable)


class SessionsResource(WaitableResource[Session]):
    """``wb.sessions``: launch, list, read, resume, stop and wait for sessions."""

    _default_until = "running"
    _default_timeout = 600.0
    _resource_name = "sessions"
    # The session fields a poll reads: all that state_of and detail_of look at.
    _poll_fields = ("activity_state", "status_detail")

    def __init__(self, client: WorkbenchBase) -> None:
        self._client = client
        self._resumed: dict[str, float] = {}
        self._waiter = client._poller(
            Poller(
                SESSION_STATES,
                self._fetch_many,
                state_of=P.session_state,
                detail_of=lambda s: s.status_detail or None,
                on_missing=self._ended,
                cancel_remote=self._cancel,
                cadence=client._cadence,
                settle=self._fetch_full,
            )
        )

    @api_call("launch")
    async def launch(
        self,
        workbench: str,
        *,
        name: str | None = None,
        launch_parameters: LaunchParameters | Mapping[str, Any] | None = None,
        username: str | None = None,
        open_file: str | None = None,
        working_directory: str | None = None,
        start_hooks: SessionHook | str | Sequence[SessionHook | str] | None = None,
        stop_hooks: SessionHook | str | Sequence[SessionHook | str] | None = None,
        environment: Mapping[str, str] | Sequence[EnvironmentVariable] | None = None,
        reconcile: bool | None = None,
    ) -> LaunchedSession:
        """Launch a session of IDE ``workbench`` (``"RStudio"``, ``"VS Code"``, ...).

        The name is given once: ``launch("VS Code", name="etl")`` names the session and its
        ``launch_parameters``, whose ``name`` defaults to the session's (else the IDE's)
        and ``cluster`` to ``"Local"`` (they are checked before sending). Returns at once;
        use :meth:`wait` to know when it is running.

        A launched session carries nothing of the caller's back (the environment is not
        shown), so a launch that fails after it may have reached the server is reconciled
        by fingerprint: the user's sessions listed before it are compared with those
        after, and a single new session of this IDE and name (and none of this client's
        other launches) is taken as this one; none, after a cut or a gateway's 5xx, sends
        it again; else :class:`~aiocompute.OutcomeUnknown` names the candidates.
        Reconciling costs a listing before the launch, shared by the launches that start
        together (``reconcile=False``, or the client's, turns it off).
        """
        request = P.launch_session(
            workbench,
            name=name,
            username=username,
            open_file=open_file,
            working_directory=working_directory,
            launch_parameters=launch_parameters,
            start_hooks=start_hooks,
            stop_hooks=stop_hooks,
            environment=environment,
        )

        async def send() -> LaunchedSession:
            result = await self._client._send(request)
            return P.parse_launched_session(result, strict=self._client._strict)

        user = username or self._client._act_as
        claims, kind = self._client._claims, ("workbench.session", user, workbench, name)

        async def plan() -> Plan[LaunchedSession]:
            kw = P.kwparams_of(request)
            launch_name = (kw.get("launch_parameters") or {}).get("name")

            async def ids() -> list[str]:
                return [s.id for s in (await self._client._listing(user=user)).sessions]

            before = await claims.baseline(("workbench.sessions", user), ids)

            def alike(s: Session) -> bool:
                launched_as = s.launch_parameters.name if s.launch_parameters else None
                return (
                    s.workbench in (None, workbench)
                    and (name is None or name in (s.name, s.label, s.display_name))
                    and (launch_name is None or launched_as in (None, launch_name))
                )

            async def find() -> list[LaunchedSession]:
                mine = claims.claimed(kind)
                listing = await self._client._listing(user=user)
                return [
                    LaunchedSession(s.id, s.url, s.project_id)
                    for s in listing.sessions
                    if s.id not in before and s.id not in mine and alike(s)
                ]

            return Plan(
                find,
                id_of=lambda s: s.id,
                lookup=f"wb.sessions.list(), a {workbench} session named {name or launch_name} "
                "that was not there before",
            )

        return await create_once(
            send,
            plan if self._client._reconciles(reconcile) else None,
            what="Workbench session launch",
            claims=claims,
            kind=kind,
        )

    def launched(
        self,
        workbench: str,
        *,
        name: str | None = None,
        launch_parameters: LaunchParameters | Mapping[str, Any] | None = None,
        username: str | None = None,
        open_file: str | None = None,
        working_directory: str | None = None,
        start_hooks: SessionHook | str | Sequence[SessionHook | str] | None = None,
        stop_hooks: SessionHook | str | Sequence[SessionHook | str] | None = None,
        environment: Mapping[str, str] | Sequence[EnvironmentVariable] | None = None,
        until: Until[Session] | None = "running",
        timeout: float | None = None,
        on_exit: str = "stop",
        cleanup_timeout: float = DEFAULT_CLEANUP_TIMEOUT,
    ) -> AbstractAsyncContextManager[Handle[Session]]:
        """Launch a session for the length of an ``async with`` block.

        ``async with wb.sessions.launched("VS Code", launch_parameters=lp) as s:`` launches
        (as :meth:`launch`), waits until ``until`` (default ``"running"``; None: no wait)
        within ``timeout``, and yields a :class:`~aiocompute.Handle` (``s.id``,
        ``s.resource``, ``s.refresh()``, ``s.wait()``, ``s.stop()``). On any exit, errors
        and cancellation included, it runs ``on_exit``: ``"stop"`` (default), ``"suspend"``
        (save the session's state), ``"kill"`` or ``"leave"``, shielded and bounded by
        ``cleanup_timeout`` seconds.
        """

        async def launch() -> str:
            launched = await self.launch(
                workbench,
                name=name,
                launch_parameters=launch_parameters,
                username=username,
                open_file=open_file,
                working_directory=working_directory,
                start_hooks=start_hooks,
                stop_hooks=stop_hooks,
                environment=environment,
            )
            return launched.id

        async def stop(session_id: str) -> None:
            await self.stop(session_id)

        async def suspend(session_id: str) -> None:
            await self.stop(session_id, suspend=True)

        async def kill(session_id: str) -> None:
            await self.stop(session_id, force=True)

        return scoped(
            launch,
            waits=self,
            get=self.get,
            until=until,
            timeout=timeout,
            on_exit=on_exit,
            actions={"stop": stop, "suspend": suspend, "kill": kill},
            cleanup_timeout=cleanup_timeout,
        )

    def list(
        self,
        ids: Sequence[str] | None = None,
        *,
        user: str | None = None,
        fields: Sequence[str] | None = None,
        include_jobs: bool = False,
    ) -> Paginator[Session]:
        """Live sessions (all of ``user``'s, or the given ``ids``), and their jobs if asked.

        Like every ``list``, a :class:`~aiocompute.Paginator`: ``async for s in
        wb.sessions.list()``, or ``await`` it for a :class:`ListedSessions`, a list of the
        sessions that also has the listing's ``.jobs`` (and ``.sessions``, ``.session(id)``,
        ``.job(id)``, as :class:`SessionListing` had). One request (Workbench does not page).
        ``fields`` limits what the server sends for each session.
        """
        # Checked now, not at the first await: bad arguments fail where they were given.
        P.get_session(ids, user=user, fields=fields, include_jobs=include_jobs)

        async def fetch() -> SessionListing:
            return await self._list_fetch(ids, user, fields, include_jobs)

        return _SessionsPaginator(fetch)

    @api_call("list")
    async def _list_fetch(
        self,
        ids: Sequence[str] | None,
        user: str | None,
        fields: Sequence[str] | None,
        include_jobs: bool,
    ) -> SessionListing:
        # The request of list(), traced under the name users call.
        return await self._client._listing(ids, user=user, fields=fields, include_jobs=include_jobs)

    @api_call("get")
    async def get(self, session_id: str, *, user: str | None = None) -> Session:
        """One live session; :class:`~aiocompute.NotFoundError` if there is none."""
        listing = await self._client._listing([session_id], user=user)
        found = listing.session(session_id)
        if found is None:
            raise NotFoundError(f"session not found: {session_id}", status=200)
        return found

    @api_call("history")
    async def history(
        self,
        begin: datetime | str | None = None,
        end: datetime | str | None = None,
        *,
        include_jobs: bool = False,
        include_all_users: bool = False,
    ) -> SessionListing:
        """Sessions that ended between ``begin`` and ``end`` (either may be None)."""
        return await self._client._history(
            begin, end, include_jobs=include_jobs, include_all_users=include_all_users
        )

    @api_call("resume")
    async def resume(
        self,
        session_id: str,
        *,
        username: str | None = None,
        launch_parameters: LaunchParameters | Mapping[str, Any] | None = None,
    ) -> LaunchedSession:
        """Resume a suspended session; then :meth:`wait` for it to be running again."""
        request = P.resume_session(
            session_id, username=username, launch_parameters=launch_parameters
        )
        result = await self._client._send(request)
        self._resumed[session_id] = anyio.current_time()
        return P.parse_launched_session(result, strict=self._client._strict)

    def _leaving(self, ids: Sequence[str]) -> Collection[str]:
        # Right after resume() the server may still report "suspended" for a moment: a
        # wait must poll through it rather than call it unreachable.
        now = anyio.current_time()
        if any(now - self._resumed.get(i, -math.inf) < _RESUME_GRACE for i in ids):
            return _RESUMABLE
        return ()

    @api_call("stop")
    async def stop(
        self, session_ids: str | Sequence[str], *, force: bool = False, suspend: bool = False
    ) -> None:
        """Stop one session or several (one request); ``force`` kills them, ``suspend``
        saves their state (RStudio)."""
        await self._client._send(P.stop_session(session_ids, force_quit=force, suspend=suspend))

    # Poller plumbing.

    async def _fetch_many(self, ids: Sequence[str]) -> dict[str, Session]:
        # Polls ask only for what decides a wait ("id" is always sent): with 1,000 waits,
        # full polls spent most of each tick on JSON and models nobody looked at. Sessions
        # reaching a wait's target get a full read through ``_fetch_full`` (the poller's
        # ``settle``); watch() events, hooks, and ``last`` of a failed or timed-out wait
        # may carry these light sessions.
        listing = await self._client._listing(ids, fields=self._poll_fields)
        return {s.id: s for s in listing.sessions}

    async def _fetch_full(self, ids: Sequence[str]) -> dict[str, Session]:
        listing = await self._client._listing(ids)
        return {s.id: s for s in listing.sessions}

    async def _ended(self, ids: Sequence[str]) -> dict[str, Session]:
        # Ended sessions leave get_session for the history, where they carry no state.
        wanted = set(ids)
        listing = await self._client._recent_history(include_jobs=False)
        return {
            s.id: attrs.evolve(s, activity_state=s.activity_state or "ended")
            for s in listing.sessions
            if s.id in wanted
        }

    async def _cancel(self, session_id: str) -> None:
        await self.stop([session_id])


class _SessionsPaginator(Paginator[Session]):
    """``wb.sessions.list()``: one page; awaited, a :class:`ListedSessions` (a list that
    keeps the listing's jobs)."""

    def __init__(self, fetch_listing: Callable[[], Awaitable[SessionListing]]) -> None:
        self._fetch_listing = fetch_listing

        async def fetch(marker: str | None) -> Page[Session]:
            return Page((await fetch_listing()).sessions)

        super().__init__(fetch, what="Workbench sessions")

    async def _collect(self) -> ListedSessions:
        return ListedSessions(await self._fetch_listing())

    def __await__(self) -> Generator[Any, None, ListedSessions]:
        return self._collect().__await__()
