"""The async ET Engine client: ``ETEngineClient`` with its ``batches`` and ``jobs`` resources.

Every call builds its request in ``_protocol`` (validated, no I/O), sends it through the
shared transport (reads retried, creates and deletes only if they never left) and reads the
answer in ``_protocol``. Waiting on batches goes through one
:class:`~aiocompute._core.polling.Poller` that reads one batch per request (the API has no
bulk status read), at most ``poll_concurrency`` at a time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio
import attrs

from .._core.auth import StaticAuth
from .._core.checks import count
from .._core.config import renamed_argument, resolve_setting
from .._core.governor import Governor
from .._core.handles import DEFAULT_CLEANUP_TIMEOUT, Handle, scoped
from .._core.http_config import DEFAULT_LIMITS, DEFAULT_TIMEOUTS, PoolLimits, Timeouts
from .._core.network import ConnectionOptions, Unpack
from .._core.observability import api_call
from .._core.pagination import Paginator
from .._core.polling import Poller, per_id_fetcher
from .._core.protocol_kit import Request
from .._core.reconcile import Plan, create_once
from .._core.resources import BaseClient, WaitableResource, client_transport, each_id
from .._core.responses import Response
from .._core.retries import DEFAULT_RETRY, RetryPolicy
from .._core.wait_group import check_timeout
from .._core.wait_types import PollCadence, Until
from .._exceptions import NotFoundError, ProtocolError, ServerError, WaitTimeout
from . import _protocol as P
from ._states import BATCH_STATES
from .models import Batch, BatchJob, BatchStatus, Hardware, SubmittedBatch

__all__ = ["DEFAULT_URL", "BatchesResource", "ETEngineClient", "JobsResource"]

#: The ET Engine API.
DEFAULT_URL = "https://api.exploretech.ai/v1"
#: How long ``jobs.list(batch_id, expect=...)`` waits, by default, for every job to be listed.
DEFAULT_EXPECT_TIMEOUT = 60.0


def _progress(status: BatchStatus) -> str:
    return (
        f"{status.done} of {status.total} jobs finished, "
        f"{status.succeeded} succeeded, {status.failed} failed"
    )


class ETEngineClient(BaseClient):
    """Async client for ET Engine batches and their jobs.

    ``api_key`` (default ``$ET_ENGINE_API_KEY``) is sent raw, ``Authorization: <key>``, as
    the vendor's client does. ``base_url`` (formerly ``url``, still accepted with a
    :class:`DeprecationWarning`) is the API base (default ``$ET_ENGINE_URL``, else
    ``https://api.exploretech.ai/v1``).

    ``timeouts``, ``retry`` (reads are retried on 429, 502, 503 and 504; creating and
    deleting batches only when the request never left) and ``limits`` configure the
    transport; ``governor`` paces every request (default: a
    :class:`~aiocompute.RateGovernor` of its own, unlimited until the first 429);
    ``cadence`` sets how often waits poll,
    ``poll_concurrency`` how many batches are read at once while waiting; ``strict=True``
    rejects answers with unknown fields.

    ``owner`` (default ``user@host``) labels what the client creates, where the API has a
    field for it; ``reconcile=False`` turns off the reconciliation of creates that fail
    ambiguously (see "Launching safely" in the docs; each create also takes ``reconcile=``).

    Use it as ``async with ETEngineClient(...) as et:`` or call :meth:`aclose`.
    """

    batches: BatchesResource
    jobs: JobsResource

    # The first part of the name of every span of this API (see _core.observability).
    _api_name = "etengine"

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        url: str | None = None,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        retry: RetryPolicy = DEFAULT_RETRY,
        limits: PoolLimits = DEFAULT_LIMITS,
        governor: Governor | None = None,
        cadence: PollCadence | None = None,
        poll_concurrency: int = 8,
        strict: bool = False,
        owner: str | None = None,
        reconcile: bool = True,
        **connection: Unpack[ConnectionOptions],
    ) -> None:
        count(poll_concurrency, "poll_concurrency", minimum=1)
        key = resolve_setting(
            api_key, ["ET_ENGINE_API_KEY"], what="ET Engine API key", argument="api_key"
        )
        assert key is not None  # required: resolve_setting raised ConfigError otherwise
        # base_url is the name in every client; url= still works, with a DeprecationWarning.
        url = renamed_argument(
            base_url, url, new_name="base_url", old_name="url", where="ETEngineClient"
        )
        base = resolve_setting(
            url, ["ET_ENGINE_URL"], what="ET Engine API URL", argument="base_url", required=False
        )
        super().__init__(
            client_transport(
                (base or DEFAULT_URL).rstrip("/"),
                # The key goes raw, with no scheme: what the vendor's client sends.
                auth=StaticAuth({"Authorization": key.strip()}),
                timeouts=timeouts,
                retry=retry,
                limits=limits,
                error_parser=P.error_parser,
                connection=connection,
                client="ETEngineClient",
                credential_hint="the api_key argument or $ET_ENGINE_API_KEY",
                governor=governor,
            ),
            owner=owner,
            reconcile=reconcile,
        )
        self._strict = strict
        self._cadence = cadence
        self._poll_concurrency = poll_concurrency
        self._make_resources()

    def _make_resources(self) -> None:
        self.batches = BatchesResource(self)
        self.jobs = JobsResource(self)

    def _send(self, request: Request) -> Awaitable[Response]:
        """Send one request; the transport's :class:`Response`, to await."""
        # The transport's coroutine itself: a coroutine of our own would only pass it on.
        return self._transport.send(request)


class BatchesResource(WaitableResource[BatchStatus]):
    """``et.batches``: create, list, read the status of, delete and wait for batches.

    :meth:`wait` waits for ``"succeeded"`` by default and decides on
    :attr:`BatchStatus.state`, derived from the status counts: a batch whose jobs have all
    finished with at least one failure is ``"failed"``, so waiting for ``"succeeded"``
    raises :class:`~aiocompute.UnreachableState`. A batch cannot be cancelled (deleting it
    leaves its jobs running), so ``on_cancel="cancel"`` is refused.
    """

    _default_until = "succeeded"
    _default_timeout = 3600.0
    _resource_name = "batches"

    def __init__(self, client: ETEngineClient) -> None:
        self._client = client
        # Jobs per batch: immutable, learnt at create or from the listing, so that a batch
        # whose jobs are not all registered yet is not taken as finished.
        self._n_jobs: dict[str, int | None] = {}
        self._listing_lock: anyio.Lock | None = None
        self._waiter = client._poller(
            Poller(
                BATCH_STATES,
                per_id_fetcher(self.status, client._poll_concurrency),
                state_of=P.batch_state,
                detail_of=_progress,
                cadence=client._cadence,
            )
        )

    @api_call("create")
    async def create(
        self,
        tool_id: str,
        *,
        fixed_args: Mapping[str, Any] | None = None,
        variable_args: Sequence[Mapping[str, Any]] | None = None,
        hardware: Hardware | None = None,
        reconcile: bool | None = None,
    ) -> SubmittedBatch:
        """Run tool ``tool_id`` as a batch: one job per ``variable_args`` entry (or one job),
        each also given ``fixed_args``, on ``hardware`` (default 1 CPU, 256 MB).

        Returns the new batch's id as the server gave it (None if it answered an empty
        body). ET Engine has no field to carry a client token, so a create that fails after
        it may have reached the server is reconciled by fingerprint: the batches listed
        before it are compared with those after, and a single new batch of this tool with
        as many jobs (and none of this client's other creates) is taken as this one; none,
        after a cut or a gateway's 5xx, sends it again; else
        :class:`~aiocompute.OutcomeUnknown` names the candidates. Reconciling costs a
        listing before the create, shared by the creates that start together
        (``reconcile=False``, or the client's, turns it off); another process creating the
        same batch at the same moment cannot be told apart.
        """
        request = P.create_batch(
            tool_id, fixed_args=fixed_args, variable_args=variable_args, hardware=hardware
        )
        n_jobs = P.n_jobs_of(request)

        async def send() -> SubmittedBatch:
            response = await self._client._send(request)
            return P.parse_created_batch(response.body, tool_id=tool_id, n_jobs=n_jobs)

        claims, kind = self._client._claims, ("etengine.batch", tool_id, n_jobs)

        async def plan() -> Plan[SubmittedBatch]:
            async def ids() -> list[str]:
                return [b.batch_id for b in await self.list()]

            before = await claims.baseline("etengine.batches", ids)

            async def find() -> list[SubmittedBatch]:
                mine = claims.claimed(kind)
                return [
                    SubmittedBatch(b.batch_id, tool_id, n_jobs)
                    for b in await self.list()
                    if b.batch_id not in before
                    and b.batch_id not in mine
                    and b.tool == tool_id
                    and b.n_jobs in (None, n_jobs)
                ]

            return Plan(
                find,
                id_of=lambda b: b.batch_id or "",
                lookup=f"et.batches.list(), a batch of tool {tool_id} with {n_jobs} jobs "
                "that was not there before",
            )

        created = await create_once(
            send,
            plan if self._client._reconciles(reconcile) else None,
            what="ET Engine batch create",
            claims=claims,
            kind=kind,
        )
        if created.batch_id is not None:
            self._n_jobs[created.batch_id] = created.n_jobs
        return created

    def list(self) -> Paginator[Batch]:
        """Every batch of the user: a :class:`~aiocompute.Paginator` like every ``list``
        (``await`` it for a list, or ``async for``); one request."""
        return Paginator.single(self._list_fetch, what="ET Engine batches")

    @api_call("list")
    async def _list_fetch(self) -> Sequence[Batch]:
        # The request of list(), traced under the name users call.
        response = await self._client._send(P.list_batches())
        batches = P.parse_batches(response.json(), strict=self._client._strict)
        for batch in batches:
            if batch.n_jobs is not None:
                self._n_jobs[batch.batch_id] = batch.n_jobs
        return batches

    @api_call("status")
    async def status(self, batch_id: str) -> BatchStatus:
        """The status counts of a batch and its derived :attr:`~BatchStatus.state`.

        ``n_jobs`` is filled from what this client learnt at create or from the listing
        (read once if needed). The service answers an unknown batch id with a bare 500
        "Unknown error occurred"; when the batch is then not in the listing either, that
        is raised as :class:`~aiocompute.NotFoundError` (else as the
        :class:`~aiocompute.ServerError` it was), so waits on a deleted batch end at once.
        """
        try:
            response = await self._client._send(P.get_batch_status(batch_id))
        except ServerError as exc:
            if exc.status == 500 and not await self._listed(batch_id):
                raise _not_found("batch", batch_id, exc) from None
            raise
        status = P.parse_batch_status(
            response.json(), batch_id=batch_id, strict=self._client._strict
        )
        if status.n_jobs is None:
            n_jobs = await self._known_n_jobs(batch_id)
            if n_jobs is not None:
                status = _with_n_jobs(status, n_jobs)
        return status

    def created(
        self,
        tool_id: str,
        *,
        fixed_args: Mapping[str, Any] | None = None,
        variable_args: Sequence[Mapping[str, Any]] | None = None,
        hardware: Hardware | None = None,
        until: Until[BatchStatus] | None = None,
        timeout: float | None = None,
        on_exit: str = "wait",
        cleanup_timeout: float = DEFAULT_CLEANUP_TIMEOUT,
    ) -> AbstractAsyncContextManager[Handle[BatchStatus]]:
        """Run a batch for the length of an ``async with`` block.

        ``async with et.batches.created("tool-sim", variable_args=runs) as b:`` creates it
        (as :meth:`create`), waits until ``until`` if given (None by default), and yields a
        :class:`~aiocompute.Handle` over its :class:`BatchStatus`. On any exit ``on_exit``
        runs, shielded and bounded by ``cleanup_timeout``: ``"wait"`` (default: until every
        job has finished), ``"delete"`` (its records; the API cannot cancel running jobs)
        or ``"leave"``.
        """

        async def launch() -> str:
            submitted = await self.create(
                tool_id, fixed_args=fixed_args, variable_args=variable_args, hardware=hardware
            )
            if submitted.batch_id is None:
                raise ProtocolError(
                    "the server accepted the batch but gave no id: it cannot be followed"
                )
            return submitted.batch_id

        async def finish(batch_id: str) -> None:
            await self.wait(batch_id, ("succeeded", "failed"), timeout=cleanup_timeout)

        return scoped(
            launch,
            waits=self,
            get=self.status,
            until=until,
            timeout=timeout,
            on_exit=on_exit,
            actions={"wait": finish, "delete": self.delete},
            cleanup_timeout=cleanup_timeout,
        )

    @api_call("delete")
    async def delete(self, batch_id: str | Sequence[str]) -> None:
        """Delete a batch's records, or each of several. Running jobs are NOT cancelled (the
        API has no way to). Not retried once sent. Several ids: each is tried; failures
        raise one ``ExceptionGroup``."""

        async def delete_one(one: str) -> None:
            await self._client._send(P.delete_batch(one))
            self._n_jobs.pop(one, None)

        await each_id(batch_id, delete_one, argument="batch_id")

    @api_call("delete_all")
    async def delete_all(self) -> None:
        """Delete every batch and job record of the user; running jobs keep running."""
        await self._client._send(P.delete_all_batches())
        self._n_jobs.clear()

    async def _listed(self, batch_id: str) -> bool:
        try:
            batches = await self.list()
        except Exception:
            return True  # cannot tell: keep the original error
        return any(b.batch_id == batch_id for b in batches)

    async def _known_n_jobs(self, batch_id: str) -> int | None:
        if batch_id in self._n_jobs:
            return self._n_jobs[batch_id]
        if self._listing_lock is None:
            self._listing_lock = anyio.Lock()
        async with self._listing_lock:  # many waits share one listing
            if batch_id not in self._n_jobs:
                await self.list()
                # Not listed: don't list again on every poll of this batch.
                self._n_jobs.setdefault(batch_id, None)
        return self._n_jobs[batch_id]


def _with_n_jobs(status: BatchStatus, n_jobs: int) -> BatchStatus:
    # evolve passes raw along: the answer as sent is kept.
    return attrs.evolve(status, n_jobs=n_jobs)


def _not_found(what: str, ident: str, error: ServerError) -> NotFoundError:
    return NotFoundError(
        f"{what} not found: {ident} (the service answered {error.message!r} and does not list it)",
        status=error.status,
        method=error.method,
        url=error.url,
    )


class JobsResource:
    """``et.jobs``: the jobs of a batch. (There is no log endpoint.)"""

    _resource_name = "jobs"

    def __init__(self, client: ETEngineClient) -> None:
        self._client = client

    def list(
        self,
        batch_id: str,
        *,
        expect: int | bool | None = None,
        timeout: float = DEFAULT_EXPECT_TIMEOUT,
    ) -> Paginator[BatchJob]:
        """The jobs of a batch with their tool, log id and arguments: a
        :class:`~aiocompute.Paginator` like every ``list`` (``await`` it for a list).

        Right after :meth:`BatchesResource.create` the service has not registered every
        job yet, and lists only those it has (10 batches of 50 jobs have been listed as 485
        jobs): the listing is partial, with no sign of it. ``expect=n`` reads it again until
        it shows at least ``n`` jobs (``expect=True``: the batch's ``n_jobs``, as known from
        the create or the batch listing), polling at the client's cadence within
        ``timeout`` seconds; then :class:`~aiocompute.WaitTimeout`, whose ``last`` is the
        partial list.
        """
        P.list_jobs(batch_id)  # checked now, not at the first await
        if expect is not None and not isinstance(expect, bool):
            count(expect, "expect")
        seconds = check_timeout(timeout)

        async def fetch() -> Sequence[BatchJob]:
            if expect is None or expect is False:
                return await self._list_fetch(batch_id)
            wanted = (
                await self._client.batches._known_n_jobs(batch_id) if expect is True else expect
            )
            return await self._until_listed(batch_id, wanted, seconds)

        return Paginator.single(fetch, what=f"ET Engine jobs of batch {batch_id}")

    @api_call("list")
    async def _list_fetch(self, batch_id: str) -> Sequence[BatchJob]:
        # One request of list(), traced under the name users call.
        response = await self._client._send(P.list_jobs(batch_id))
        return P.parse_jobs(response.json(), strict=self._client._strict)

    async def _until_listed(
        self, batch_id: str, wanted: int | None, seconds: float
    ) -> Sequence[BatchJob]:
        """Read the jobs of ``batch_id`` until at least ``wanted`` are listed (None: the
        batch's size is unknown, so one read), within ``seconds``."""
        cadence = self._client._cadence or PollCadence()
        started = anyio.current_time()
        deadline = started + seconds
        interval = cadence.initial
        reads = 0
        while True:
            jobs = await self._list_fetch(batch_id)
            reads += 1
            if wanted is None or len(jobs) >= wanted:
                return jobs
            now = anyio.current_time()
            if now + interval > deadline:
                raise WaitTimeout(
                    f"batch {batch_id}: {len(jobs)} of {wanted} jobs listed after "
                    f"{now - started:.1f} s (the service registers a new batch's jobs over "
                    f"a few seconds; raise timeout=, or list without expect=)",
                    last=jobs,
                    attempts=reads,
                    elapsed=now - started,
                )
            await anyio.sleep(interval)
            interval = min(interval * cadence.factor, cadence.max)

    @api_call("get")
    async def get(self, batch_id: str, job_id: str) -> BatchJob:
        """One job with its status, reason, hardware, arguments and times.

        Like ``batches.status``, a bare 500 for a job the batch does not list is raised as
        :class:`~aiocompute.NotFoundError`.
        """
        try:
            response = await self._client._send(P.get_job(batch_id, job_id))
        except ServerError as exc:
            if exc.status == 500 and not await self._listed(batch_id, job_id):
                raise _not_found("job", job_id, exc) from None
            raise
        return P.parse_job(response.json(), strict=self._client._strict)

    async def _listed(self, batch_id: str, job_id: str) -> bool:
        try:
            jobs = await self.list(batch_id)
        except ServerError as exc:
            # An unknown batch answers 500 too: then the job surely does not exist.
            return exc.status != 500 or await self._client.batches._listed(batch_id)
        except Exception:
            return True  # cannot tell: keep the original error
        return any(j.job_id == job_id for j in jobs)
