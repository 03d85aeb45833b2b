"""``wb.jobs`` and ``wb.audited_jobs``: launch, read, stream the output of, stop and wait
for Workbench jobs and audited jobs."""

from __future__ import annotations

from collections.abc import (
    AsyncGenerator,
    Awaitable,
    Callable,
    Collection,
    Sequence,
)
from functools import partial
from typing import Any, TypeVar

import attrs

from .._core.observability import api_call
from .._core.pagination import Paginator
from .._core.polling import Poller
from .._core.protocol_kit import Request
from .._core.reconcile import (
    TOKEN_LABEL,
    Plan,
    create_once,
    labelled_tags,
    new_token,
    tag,
    tag_value,
)
from .._core.resources import WaitableResource, each_id
from .._core.streaming import ResumePolicy, resumable_items
from .._exceptions import NotFoundError
from . import _protocol as P
from ._base import WorkbenchBase
from ._states import JOB_STATES
from .models import (
    AuditedJob,
    AuditedJobDetails,
    Job,
    JobOutput,
    JobSpec,
    OutputChunk,
    OutputLine,
)

__all__ = ["AuditedJobsResource", "JobsResource"]

#: A job or an audited job.
J = TypeVar("J", bound=Job)


def _filter_names(value: str | Collection[str] | None, argument: str) -> frozenset[str] | None:
    """A filter argument (one name or several) as a set; statuses compare ignoring case."""
    if value is None:
        return None
    names = [value] if isinstance(value, str) else list(value)
    if not names or not all(isinstance(n, str) and n.strip() for n in names):
        raise ValueError(f"{argument} must be a name or a non-empty collection of names")
    if argument == "statuses":
        return frozenset(n.strip().casefold() for n in names)
    return frozenset(names)


def _job_failure(job: Job) -> str | None:
    """A finished job with a non-zero exit code failed, though its status says Finished."""
    if job.state == "Finished" and job.exit_code not in (None, 0):
        detail = f": {job.status_message}" if job.status_message else ""
        return f"job {job.id} finished with exit code {job.exit_code}{detail}"
    return None


# Where a finished audited job's output comes from: all of it, both streams, in one chunk.
_WHOLE_OUTPUT_SOURCE = "audit_details_store"


def _replay_channel(chunk: OutputChunk) -> str | None:
    """The channel a resumed stream counts a chunk's characters in (None: every channel,
    for an audited job's whole output, which may follow live chunks after a reconnect)."""
    if chunk.output_source == _WHOLE_OUTPUT_SOURCE:
        return None
    return chunk.output_type


class _JobsBase(WaitableResource[Job]):
    """What jobs and audited jobs share: reading state, waiting, and streaming output."""

    _default_until = "Finished"
    _default_timeout = 3600.0
    _audited = False
    _what = "job"

    # The RPCs that differ between jobs and audited jobs.
    def _stop_request(self, job_id: str) -> Request:
        return P.stop_job(job_id)

    def _output_request(self, job_id: str, user: str | None) -> Request:
        return P.get_job_output(job_id, user=user)

    def __init__(self, client: WorkbenchBase) -> None:
        self._client = client
        self._waiter = client._poller(
            Poller(
                JOB_STATES,
                self._fetch_many,
                state_of=P.job_state,
                detail_of=lambda j: j.status_message or None,
                failed=_job_failure,
                on_missing=self._ended,
                cancel_remote=self._cancel,
                cadence=client._cadence,
                kind=f"workbench.{self._what.replace(' ', '_')}",
            )
        )

    async def _cancel(self, job_id: str) -> None:
        await self._client._send(self._stop_request(job_id))

    @api_call("get")
    async def get(self, job_id: str) -> Job:
        """A job's current record (live first, then the recent history).

        Workbench has no ``get_job``: jobs are read through ``get_session`` with
        ``include_jobs``. :class:`~aiocompute.NotFoundError` if it is in neither.
        """
        found = await self._fetch_many([job_id])
        if job_id not in found:
            found = await self._ended([job_id])
        if job_id not in found:
            raise NotFoundError(f"{self._what} not found: {job_id}", status=200)
        return found[job_id]

    def list(
        self,
        *,
        statuses: str | Collection[str] | None = None,
        tags: str | Collection[str] | None = None,
    ) -> Paginator[Job]:
        """The user's jobs and audited jobs the server still reports (live and recent).

        A :class:`~aiocompute.Paginator` like every ``list``: ``await`` it for a list,
        or ``async for`` over it. ``statuses`` keeps jobs in one of these states (any
        case: ``"running"`` is ``Running``); ``tags`` keeps jobs that carry every one of
        these tags. Workbench has no server-side filter: both are applied to the answer.
        """
        wanted = _filter_names(statuses, "statuses")
        needed = _filter_names(tags, "tags")

        async def fetch() -> Sequence[Job]:
            jobs = await self._list_fetch()
            if wanted is not None:
                jobs = [j for j in jobs if j.state.casefold() in wanted]
            if needed is not None:
                jobs = [j for j in jobs if needed <= set(j.tags)]
            return jobs

        return Paginator.single(fetch, what=f"Workbench {self._what}s")

    @api_call("list")
    async def _list_fetch(self) -> Sequence[Job]:
        # The request of list(), traced under the name users call.
        listing = await self._client._listing(
            fields=["id"], include_jobs=True, include_all_jobs=True
        )
        return listing.jobs

    @api_call("output")
    async def output(
        self,
        job_id: str,
        *,
        user: str | None = None,
        stall_timeout: float | None = None,
        resume: ResumePolicy | None = None,
        follow: bool = True,
    ) -> AsyncGenerator[OutputChunk, None]:
        """Yield the job's output chunks live, each as soon as its last byte arrives.

        The stream is not cut by the client's total timeout; ``stall_timeout`` (default
        ``Timeouts.stall``) ends it if no byte comes for that long. If the connection
        drops, or ends while the job still runs (``follow``), it is reopened within
        ``resume`` and the replayed output is skipped, so no chunk is lost or repeated.
        An error object in the stream raises the matching :class:`~aiocompute.APIError`
        after the chunks before it. Leaving the loop closes the connection at once.
        """
        request = P.acting_for(self._output_request(job_id, user), self._client._act_as)
        transport = self._client._transport

        def open_stream() -> Any:
            return transport.stream(
                request.method,
                request.path,
                json=request.body,
                idempotent=request.idempotent,
                stall_timeout=stall_timeout,
            )

        async def still_running() -> bool:
            # Read as the stream's owner (``user``), or an admin's follow would never find
            # the job. A job gone from the live listing has ended.
            listing = await self._client._listing(
                user=user, fields=["id"], include_jobs=True, include_all_jobs=True
            )
            job = listing.job(job_id)
            return job is not None and not job.is_terminal

        items = resumable_items(
            open_stream,
            parse=partial(
                P.parse_stream_object,
                audited=self._audited,
                strict=self._client._strict,
                method=P.rpc_method(request),
            ),
            channel=_replay_channel,
            text=lambda c: c.output,
            with_text=lambda c, t: attrs.evolve(c, output=t),
            still_running=still_running if follow else None,
            resume=resume if resume is not None else ResumePolicy(),
            what=f"{self._what} {job_id} output",
        )
        try:
            async for chunk in items:
                yield chunk
        finally:
            await items.aclose()

    @api_call("lines")
    async def lines(
        self,
        job_id: str,
        *,
        user: str | None = None,
        stall_timeout: float | None = None,
        resume: ResumePolicy | None = None,
    ) -> AsyncGenerator[OutputLine, None]:
        """Yield the job's output line by line, stdout and stderr kept apart.

        A line split across chunks is held until its end arrives; what is left when the
        stream ends comes last, without a newline.
        """
        pending: dict[str, str] = {}
        chunks = self.output(job_id, user=user, stall_timeout=stall_timeout, resume=resume)
        try:
            async for chunk in chunks:
                text = pending.pop(chunk.output_type, "") + chunk.output
                *complete, rest = text.split("\n")
                for line in complete:
                    yield OutputLine(chunk.job_id, chunk.output_type, line)
                if rest:
                    pending[chunk.output_type] = rest
        finally:
            await chunks.aclose()
        for output_type, rest in pending.items():
            yield OutputLine(job_id, output_type, rest)

    @api_call("collect")
    async def collect(
        self,
        job_id: str,
        *,
        user: str | None = None,
        stall_timeout: float | None = None,
        resume: ResumePolicy | None = None,
    ) -> JobOutput:
        """Read the whole output (until the stream ends) into a :class:`JobOutput`."""
        chunks = [
            chunk
            async for chunk in self.output(
                job_id, user=user, stall_timeout=stall_timeout, resume=resume
            )
        ]
        return JobOutput.from_chunks(job_id, chunks)

    async def _launch_once(
        self,
        spec: JobSpec,
        launch: Callable[[JobSpec], Awaitable[J]],
        convert: Callable[[Job], J],
        reconcile: bool | None,
    ) -> J:
        """Launch ``spec`` tagged with the owner label and, when reconciling, a client token
        (``aiocompute-token:<hex>``), by which an ambiguous failure is looked up."""
        reconciling = self._client._reconciles(reconcile)
        token, tags = labelled_tags(
            spec.tags, token=new_token() if reconciling else None, owner=self._client.owner
        )
        labelled = attrs.evolve(spec, tags=tags)

        async def plan() -> Plan[J]:
            async def find() -> list[J]:
                # Live jobs first; one that already ended is in the recent history.
                listing = await self._client._listing(
                    user=spec.user, fields=["id"], include_jobs=True, include_all_jobs=True
                )
                jobs = [j for j in listing.jobs if tag_value(j.tags, TOKEN_LABEL) == token]
                if not jobs:
                    ended = await self._client._recent_history(include_jobs=True)
                    jobs = [j for j in ended.jobs if tag_value(j.tags, TOKEN_LABEL) == token]
                return [convert(j) for j in {j.id: j for j in jobs}.values()]

            return Plan(
                find,
                id_of=lambda j: j.id,
                lookup=f"wb.{self._resource_name}.list(), the {self._what} tagged "
                f"{tag(TOKEN_LABEL, token or '')}",
                token=token,
            )

        return await create_once(
            lambda: launch(labelled),
            plan if reconciling else None,
            what=f"Workbench {self._what} launch",
        )

    # Poller plumbing.

    async def _fetch_many(self, ids: Sequence[str]) -> dict[str, Job]:
        listing = await self._client._listing(
            fields=["id"], include_jobs=True, include_all_jobs=True
        )
        wanted = set(ids)
        return {j.id: j for j in listing.jobs if j.id in wanted}

    async def _ended(self, ids: Sequence[str]) -> dict[str, Job]:
        # Jobs that left the live listing: look in the recent history.
        wanted = set(ids)
        listing = await self._client._recent_history(include_jobs=True)
        found: dict[str, Job] = {j.id: j for j in listing.jobs if j.id in wanted}
        for s in listing.sessions:
            if s.job is not None and s.job.id in wanted:
                found.setdefault(s.job.id, s.job)
        return found


class JobsResource(_JobsBase):
    """``wb.jobs``: launch, read, stream output from, stop and wait for Workbench jobs.

    :meth:`wait` waits for ``Finished`` by default, and treats a ``Finished`` job with a
    non-zero exit code (like ``Failed``, ``Killed``, ``Canceled``) as
    :class:`~aiocompute.UnreachableState`.
    """

    _resource_name = "jobs"

    @api_call("launch")
    async def launch(
        self,
        spec: JobSpec,
        *,
        apply_config_settings: bool | None = None,
        reconcile: bool | None = None,
    ) -> Job:
        """Launch a job; returns it as the server recorded it (status ``Pending``).

        The job is tagged ``aiocompute-owner:<owner>`` and ``aiocompute-token:<hex>`` (a
        tag of your own with that prefix is used instead). If the launch fails after it may
        have reached the server, the job is looked up by that tag: found, it is returned;
        surely absent, the launch is sent again; else :class:`~aiocompute.OutcomeUnknown`
        (``reconcile``: default the client's setting; False raises it at once).
        """

        async def send(labelled: JobSpec) -> Job:
            request = P.launch_job(labelled, apply_config_settings=apply_config_settings)
            result = await self._client._send(request)
            return P.parse_job_launch(result, strict=self._client._strict)

        return await self._launch_once(spec, send, lambda job: job, reconcile)

    @api_call("stop")
    async def stop(self, job_id: str | Sequence[str], *, force: bool = False) -> None:
        """Stop a job, or each of several (``force``: kill -9 instead of a terminate
        signal). Several ids: each is tried; failures raise one ``ExceptionGroup``."""

        async def stop_one(one: str) -> None:
            await self._client._send(P.stop_job(one, force=force))

        await each_id(job_id, stop_one, argument="job_id")


class AuditedJobsResource(_JobsBase):
    """``wb.audited_jobs``: like :class:`JobsResource`, plus audit :meth:`details`.

    Output of a finished audited job comes as one chunk from the audit store; a live one
    streams like a job's.
    """

    _resource_name = "audited_jobs"
    _audited = True
    _what = "audited job"

    def _stop_request(self, job_id: str) -> Request:
        return P.stop_audited_job(job_id)

    def _output_request(self, job_id: str, user: str | None) -> Request:
        return P.get_audited_job_output(job_id, user=user)

    @api_call("launch")
    async def launch(
        self,
        spec: JobSpec,
        *,
        apply_config_settings: bool | None = None,
        reconcile: bool | None = None,
    ) -> AuditedJob:
        """Launch an audited job; returns it as the server recorded it.

        Tagged and reconciled as :meth:`JobsResource.launch`.
        """

        async def send(labelled: JobSpec) -> AuditedJob:
            request = P.launch_audited_job(labelled, apply_config_settings=apply_config_settings)
            result = await self._client._send(request)
            return P.parse_audited_job_launch(result, strict=self._client._strict)

        def audited(job: Job) -> AuditedJob:
            return (
                job
                if isinstance(job, AuditedJob)
                else AuditedJob(**attrs.asdict(job, recurse=False))
            )

        return await self._launch_once(spec, send, audited, reconcile)

    @api_call("details")
    async def details(self, audited_job_id: str, *, user: str | None = None) -> AuditedJobDetails:
        """The audit details of a completed audited job."""
        result = await self._client._send(P.get_audited_job_details(audited_job_id, user=user))
        return P.parse_audited_job_details(result, strict=self._client._strict)

    @api_call("stop")
    async def stop(self, audited_job_id: str | Sequence[str], *, force: bool = False) -> None:
        """Stop an audited job, or each of several (``force``: kill instead of terminate).
        Several ids: each is tried; failures raise one ``ExceptionGroup``."""

        async def stop_one(one: str) -> None:
            await self._client._send(P.stop_audited_job(one, force=force))

        await each_id(audited_job_id, stop_one, argument="audited_job_id")
