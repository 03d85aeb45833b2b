"""``q.jobs``: Qiskit Runtime jobs (primitive runs): run, read, list, cancel, delete, read
results, logs and metrics, and wait.

Requests are built in ``_protocol`` and sent through the client's ``_send`` (IAM token,
one retry with a fresh token after a 401). Results are read as a stream through the one
incremental decoder: memory is bounded by ``max_bytes`` (a larger body is refused as soon
as it passes the limit, not after it was read whole), a body that is not JSON fails on its
first bytes, and a long download is bound by the stall timeout, not the total timeout.

Waits go through one :class:`~aiocompute._core.polling.Poller`. The API has no bulk read by
id, but a list filtered by session shows every job of that session: when two or more
watched jobs belong to the same session, one list page reads them all; the others (and any
job the page left out) are read one request each, ``poll_concurrency`` at a time.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar

from .._core.checks import count
from .._core.handles import InFlight
from .._core.jsonstream import JSONStreamDecoder
from .._core.observability import api_call
from .._core.pagination import Page, Paginator
from .._core.polling import Poller, per_id_fetcher
from .._core.protocol_kit import Request
from .._core.reconcile import TOKEN_LABEL, Plan, create_once, labelled_tags, new_token, tag
from .._core.resources import WaitableResource
from .._core.responses import ByteStream, Response
from .._core.transport import Transport
from .._core.wait_types import PollCadence
from .._exceptions import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    ProtocolError,
    StreamDecodeError,
    TransportError,
    UsageLimitExceeded,
    naming_the_missing,
)
from . import _protocol as P
from ._auth import IAMAuth
from ._states import JOB_STATES
from .models import Job, JobList, JobMetrics

R = TypeVar("R")


class _Client(Protocol):
    """What the resource uses of :class:`~aiocompute.qiskit.QiskitRuntimeClient` (typed
    here so that this module need not import the client, which imports it)."""

    _auth: IAMAuth
    _transport: Transport
    _strict: bool
    _cadence: PollCadence | None
    _poll_concurrency: int
    _submissions: InFlight

    @property
    def owner(self) -> str: ...

    def _reconciles(self, reconcile: bool | None) -> bool: ...

    async def _send(self, request: Request) -> Response: ...

    def _poller(self, poller: Poller[R]) -> Poller[R]: ...


__all__ = ["DEFAULT_MAX_RESULT_BYTES", "JobsResource"]

#: The largest result :meth:`JobsResource.results` reads unless told otherwise (bytes of JSON).
DEFAULT_MAX_RESULT_BYTES = 512 * 1024 * 1024

# How many job -> session pairs the resource remembers for its bulk polls (oldest dropped).
_REMEMBERED_SESSIONS = 4096
# Reads of a result body that broke halfway: the whole body is read again, this many times.
_RESULT_READS = 3


def usage_limit_error(exc: ConflictError) -> UsageLimitExceeded:
    """A 409 from ``POST /v1/jobs`` as :class:`UsageLimitExceeded`, saying what it means."""
    return UsageLimitExceeded(
        "job not created: the instance usage limit was exceeded "
        f"(Qiskit Runtime answers 409 when usage exceeds the instance limit): {exc.message}",
        status=exc.status,
        code=exc.code,
        body=exc.body,
        method=exc.method,
        url=exc.url,
        retry_after=exc.retry_after,
        request_id=exc.request_id,
        headers=exc.headers,
    )


class JobsResource(WaitableResource[Job]):
    """``q.jobs``: run primitives and follow their jobs.

    :meth:`wait` waits for ``"completed"`` by default; a job that fails or is cancelled
    ends the wait with :class:`~aiocompute.UnreachableState`, whose message quotes
    ``state.reason``; ``until="done"`` accepts any end.
    ``on_cancel="cancel"`` cancels the job when a wait times out or is cancelled.
    """

    _default_until = "completed"
    _default_timeout = 3600.0
    _resource_name = "jobs"

    def __init__(self, client: _Client) -> None:
        self._client = client
        # job id -> session id, learned from runs and reads, for the bulk polls.
        self._sessions_of: OrderedDict[str, str] = OrderedDict()
        self._read_each = per_id_fetcher(self.get, client._poll_concurrency)
        self._waiter = client._poller(
            Poller(
                JOB_STATES,
                self._fetch_many,
                state_of=P.job_state,
                detail_of=lambda job: job.reason or None,
                cancel_remote=self.cancel,
                cadence=client._cadence,
                # Per-id reads cost a request each: no riders.
                top_up=False,
            )
        )

    # -- sending ------------------------------------------------------------------------

    async def _send(self, request: Request, job_id: str | None = None) -> Response:
        """Send through the client; a 404 names the job."""
        missing: NotFoundError | None = None
        try:
            return await self._client._send(request)
        except NotFoundError as exc:
            if job_id is None:
                raise
            missing = exc
        raise naming_the_missing(missing, "job", job_id)

    @contextlib.asynccontextmanager
    async def _stream(self, request: Request, job_id: str) -> AsyncIterator[ByteStream]:
        """Open a streamed answer with a valid IAM token (once more after a 401)."""
        auth = self._client._auth
        transport = self._client._transport
        missing: NotFoundError | None = None
        async with contextlib.AsyncExitStack() as stack:
            for attempt in (1, 2):
                token = await auth.ensure()
                opening = transport.stream(
                    request.method,
                    request.path,
                    params=request.params or None,
                    idempotent=request.idempotent,
                )
                try:
                    stream = await stack.enter_async_context(opening)
                except AuthenticationError as exc:
                    if exc.status != 401 or attempt == 2:
                        raise
                    auth.invalidate(token)  # revoked or expired early: one fresh token
                    continue
                except NotFoundError as exc:
                    missing = exc
                    break
                yield stream
                return
        assert missing is not None
        raise naming_the_missing(missing, "job", job_id)

    def _remember(self, job: Job) -> None:
        if job.session_id is None:
            return
        self._sessions_of[job.id] = job.session_id
        self._sessions_of.move_to_end(job.id)
        while len(self._sessions_of) > _REMEMBERED_SESSIONS:
            self._sessions_of.popitem(last=False)

    # -- create -------------------------------------------------------------------------

    @api_call("run")
    async def run(
        self,
        program_id: str,
        backend: str,
        *,
        params: Mapping[str, Any],
        session_id: str | None = None,
        tags: Sequence[str] = (),
        private: bool = False,
        log_level: str | None = None,
        max_execution_time: int | None = None,
        calibration_id: str | None = None,
        runtime: str | None = None,
        reconcile: bool | None = None,
    ) -> Job:
        """Run a primitive: ``program_id`` ``"sampler"`` or ``"estimator"`` on ``backend``
        with ``params`` (the primitive's input as plain JSON, e.g. ``{"pubs": [...],
        "version": 2}``). Returns the new job (use :meth:`wait`, then :meth:`results`).

        ``session_id`` runs it in a session or batch; ``tags`` label it (``list(tags=...)``
        finds it again); ``private=True`` keeps its params from later reads and lets its
        results be read once; ``log_level`` is debug, info, warning, error or critical;
        ``max_execution_time`` caps its quantum seconds (sent as ``cost``).

        A create: never blindly repeated once the request may have reached the server (a
        second job would run and be billed). It is tagged ``aiocompute-owner:<owner>`` and
        ``aiocompute-token:<hex>``; if the answer is lost, the job is looked up by that tag:
        found, it is returned; surely absent, it is sent again; else
        :class:`~aiocompute.OutcomeUnknown` (``reconcile``: default the client's setting).
        Job creation is rate-limited (5 a minute per user, as documented): a 429 is waited
        out per its ``Retry-After`` like every create, within the retry policy. A 409 means
        the instance's usage limit is reached: :class:`~aiocompute.UsageLimitExceeded`.
        """
        reconciling = self._client._reconciles(reconcile)
        token, labelled = labelled_tags(
            tags, token=new_token() if reconciling else None, owner=self._client.owner
        )
        request = P.run_job(
            program_id,
            backend,
            params=params,
            session_id=session_id,
            tags=labelled,
            private=private,
            log_level=log_level,
            max_execution_time=max_execution_time,
            calibration_id=calibration_id,
            runtime=runtime,
        )
        # A session handle leaving its block waits for this submission before it stops
        # the session taking jobs (see QiskitRuntimeClient.sessions.opened).
        tracking = (
            self._client._submissions.track(session_id)
            if session_id is not None
            else contextlib.nullcontext()
        )

        async def send() -> Job:
            refused: ConflictError | None = None
            try:
                response = await self._client._send(request)
            except ConflictError as exc:
                refused = exc
            if refused is not None:
                raise usage_limit_error(refused)
            return P.parse_job_created(
                response.json(),
                program_id=program_id,
                tags=labelled,
                session_id=session_id,
                private=private,
                strict=self._client._strict,
            )

        async def plan() -> Plan[Job]:
            mark = tag(TOKEN_LABEL, token or "")

            async def find() -> list[Job]:
                return await self.list(tags=[mark], session_id=session_id)

            return Plan(
                find, id_of=lambda j: j.id, lookup=f"q.jobs.list(tags=[{mark!r}])", token=token
            )

        with tracking:
            job = await create_once(send, plan if reconciling else None, what="Qiskit job run")
        self._remember(job)
        return job

    # -- reads --------------------------------------------------------------------------

    @api_call("get")
    async def get(self, job_id: str, *, include_params: bool = False) -> Job:
        """One job; :class:`~aiocompute.NotFoundError` if there is none. Its ``params`` are
        left out unless ``include_params`` (a private job never returns them)."""
        response = await self._send(P.get_job(job_id, include_params=include_params), job_id)
        job = P.parse_job(response.json(), strict=self._client._strict)
        self._remember(job)
        return job

    @api_call("get_many")
    async def get_many(self, job_ids: Sequence[str]) -> dict[str, Job]:
        """Read several jobs at once: jobs of one session share a list request, the others
        are read one request each (``poll_concurrency`` at a time). Ids that do not exist
        are left out."""
        if isinstance(job_ids, (str, bytes)):
            raise TypeError(f"get_many() takes a list of ids, not one string: use [{job_ids!r}]")
        return await self._fetch_many(list(dict.fromkeys(job_ids)))

    async def _fetch_many(self, ids: Sequence[str]) -> dict[str, Job]:
        found: dict[str, Job] = {}
        by_session: dict[str, list[str]] = {}
        for one in ids:
            session = self._sessions_of.get(one)
            if session is not None:
                by_session.setdefault(session, []).append(one)
        for session, members in by_session.items():
            if len(members) < 2:
                continue  # a list page costs what a read costs: read it by id
            request = P.list_jobs(session_id=session, limit=P.MAX_JOBS_PAGE)
            page = await self._client_page(request)
            wanted = set(members)
            found.update((job.id, job) for job in page.jobs if job.id in wanted)
        # Jobs of no known session, and any the session's newest page left out.
        rest = [one for one in ids if one not in found]
        if rest:
            found.update(await self._read_each(rest))
        return found

    async def _client_page(self, request: Request) -> JobList:
        response = await self._send(request)
        page = P.parse_job_list(response.json(), strict=self._client._strict)
        for job in page.jobs:
            self._remember(job)
        return page

    def list(
        self,
        *,
        pending: bool | None = None,
        program: str | None = None,
        backend: str | None = None,
        session_id: str | None = None,
        tags: Sequence[str] = (),
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
        descending: bool = True,
        include_params: bool = False,
        limit: int | None = None,
        max_items: int | None = None,
    ) -> Paginator[Job]:
        """Jobs of the instance, newest first (``descending=False``: oldest first), across
        pages: ``await q.jobs.list()`` gives a list, ``async for job in q.jobs.list()``
        reads a page at a time and stops reading when the loop stops.

        Filters: ``pending`` (True: queued or running; False: ended), ``program``,
        ``backend``, ``session_id``, ``tags`` (a job must carry every tag given),
        ``created_after`` / ``created_before`` (datetimes, naive ones taken as UTC, or
        ISO-8601 strings). ``limit`` is the page size (up to 200, the default);
        ``max_items`` stops after that many jobs. Pages are read by offset: a job created
        while the listing runs can push one already listed onto the next page, so a job
        seen twice is yielded once. Arguments are checked here, before any request.
        """
        filters: dict[str, Any] = {
            "pending": pending,
            "program": program,
            "backend": backend,
            "session_id": session_id,
            "tags": tags,
            "created_after": created_after,
            "created_before": created_before,
            "descending": descending,
            "include_params": include_params,
            "limit": limit,
        }
        first = P.list_jobs(**filters)
        # Ids yielded so far in this pass (two passes over one paginator at the same time
        # would share it: iterate one at a time, or call list() twice).
        seen: set[str] = set()

        async def fetch(marker: str | None) -> Page[Job]:
            if marker is None:
                seen.clear()  # each await / iteration starts again from the first page
                request = first
            else:
                request = P.list_jobs(**filters, offset=int(marker))
            page = await self._list_fetch(request)
            fresh = [job for job in page.jobs if job.id not in seen]
            seen.update(job.id for job in fresh)
            following = page.next_offset
            return Page(fresh, None if following is None else str(following))

        return Paginator(fetch, what="Qiskit jobs", max_items=max_items)

    @api_call("list")
    async def _list_fetch(self, request: Request) -> JobList:
        # One page for list(): each is a request, traced under the name users call.
        return await self._client_page(request)

    @api_call("list_page")
    async def list_page(
        self,
        *,
        pending: bool | None = None,
        program: str | None = None,
        backend: str | None = None,
        session_id: str | None = None,
        tags: Sequence[str] = (),
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
        descending: bool = True,
        include_params: bool = False,
        limit: int | None = None,
        offset: int | None = None,
    ) -> JobList:
        """One page of jobs (filters as :meth:`list`), with ``count`` (how many match in
        all) and :attr:`~aiocompute.qiskit.JobList.next_offset`."""
        request = P.list_jobs(
            pending=pending,
            program=program,
            backend=backend,
            session_id=session_id,
            tags=tags,
            created_after=created_after,
            created_before=created_before,
            descending=descending,
            include_params=include_params,
            limit=limit,
            offset=offset,
        )
        return await self._client_page(request)

    # -- stop and remove -----------------------------------------------------------------

    @api_call("cancel")
    async def cancel(self, job_id: str) -> None:
        """Cancel a queued or running job (answers 204). Not retried once sent; a job that
        already ended is refused by the service (an :class:`~aiocompute.APIError`)."""
        await self._send(P.cancel_job(job_id), job_id)

    @api_call("delete")
    async def delete(self, job_id: str) -> None:
        """Delete a job and its results (answers 204). Not retried once sent."""
        await self._send(P.delete_job(job_id), job_id)
        self._sessions_of.pop(job_id, None)

    @api_call("update_tags")
    async def update_tags(self, job_id: str, tags: Sequence[str]) -> None:
        """Replace the job's tags (answers 204)."""
        await self._send(P.update_job_tags(job_id, tags), job_id)

    # -- outputs ------------------------------------------------------------------------

    @api_call("results")
    async def results(
        self,
        job_id: str,
        *,
        raw: bool = False,
        max_bytes: int = DEFAULT_MAX_RESULT_BYTES,
    ) -> Any:
        """The job's result: the primitive's result as parsed JSON, or with ``raw=True`` the
        body's bytes exactly as sent.

        The body (many megabytes for a large sampler run) is read as a stream and fed to
        the incremental decoder as it arrives: ``max_bytes`` bounds the memory (a larger
        body raises :class:`~aiocompute.StreamDecodeError` / ProtocolError as soon as it
        passes the limit), and a body that is not JSON fails on its first bytes. At its
        peak a parsed read holds about 3.4 times the body (its bytes, their text and the
        parsed value).
        The value keeps the service's encoding (``{"__type__": "PrimitiveResult",
        "__value__": {...}}``, arrays as base64 ``.npy``), which ``qiskit-ibm-runtime``'s
        ``RuntimeDecoder`` turns into Qiskit objects. A body that breaks off halfway is
        read again from the start (up to 3 reads). To write a result to a file without
        holding it, use :meth:`iter_results`.

        A failed job's "result" is its error text, not JSON: that raises ProtocolError
        (read it with ``raw=True``). A private job's result can be read once.
        """
        if not isinstance(raw, bool):
            raise TypeError(f"raw must be True or False, got {raw!r}")
        count(max_bytes, "max_bytes", minimum=1)
        request = P.job_results(job_id)
        for read in range(1, _RESULT_READS + 1):
            try:
                if raw:
                    return await self._read_bytes(request, job_id, max_bytes)
                return await self._read_json(request, job_id, max_bytes)
            except (TransportError, StreamDecodeError) as exc:
                cut = (
                    exc.truncated if isinstance(exc, StreamDecodeError) else exc.retryable
                ) and read < _RESULT_READS
                if not cut:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _read_bytes(self, request: Request, job_id: str, limit: int) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async with self._stream(request, job_id) as stream:
            async for chunk in stream:
                size += len(chunk)
                if size > limit:
                    raise ProtocolError(
                        f"the result of job {job_id!r} is larger than max_bytes={limit}",
                        method=stream.method,
                        url=stream.url,
                    )
                chunks.append(chunk)
        return b"".join(chunks)

    async def _read_json(self, request: Request, job_id: str, limit: int) -> Any:
        decoder = JSONStreamDecoder(max_value_bytes=limit)
        values: list[Any] = []
        async with self._stream(request, job_id) as stream:
            async for chunk in stream:
                values.extend(value.value for value in decoder.feed(chunk))
            values.extend(value.value for value in decoder.close())
            if len(values) != 1:
                raise ProtocolError(
                    f"the result of job {job_id!r} is not one JSON value (found {len(values)})",
                    status=stream.status,
                    method=stream.method,
                    url=stream.url,
                )
        return values[0]

    @api_call("iter_results")
    async def iter_results(self, job_id: str) -> AsyncGenerator[bytes, None]:
        """The job's result as raw byte chunks as they arrive: write a large result to a
        file without holding it (``async for chunk in q.jobs.iter_results(id): f.write(chunk)``).
        Not resumed if the connection breaks halfway (the caller has the bytes so far)."""
        request = P.job_results(job_id)
        async with self._stream(request, job_id) as stream:
            async for chunk in stream:
                yield chunk

    @api_call("logs")
    async def logs(self, job_id: str) -> str:
        """The job's log (plain text; complete once the job has finished)."""
        response = await self._send(P.job_logs(job_id), job_id)
        return response.text

    @api_call("metrics")
    async def metrics(self, job_id: str) -> JobMetrics:
        """The job's timestamps, usage (quantum seconds), and while it waits its queue
        position and estimated start and completion times."""
        response = await self._send(P.job_metrics(job_id), job_id)
        return P.parse_job_metrics(response.json(), strict=self._client._strict)
