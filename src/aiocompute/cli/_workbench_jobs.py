"""``aiocompute workbench jobs ...`` and ``audited-jobs ...``: launch, follow, read, wait for
and stop Workbench jobs."""

from __future__ import annotations

import argparse
import shlex
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import Any

import anyio
from attrs import frozen
from rich.text import Text

from .._core.reconcile import OWNER_LABEL, tag
from .._exceptions import AioComputeError, WaitError, WaitTimeout
from ..workbench._states import JOB_STATES
from ..workbench.client import AuditedJobsResource, JobsResource, WorkbenchClient
from ..workbench.models import (
    Job,
    JobSpec,
    OutputChunk,
)
from ._app import EXIT_OK, CommandTree, UsageError
from ._common import (
    dedupe,
    exit_for,
    keeps_running,
    positive_seconds,
    shown,
    timeout_option,
    user_input,
)
from ._output import Output, state_style
from ._owned import Owned, owner_of, owner_option, reap, reap_options
from ._workbench_base import (
    JOB_TIMEOUT,
    OUTPUT_QUIET,
    OUTPUT_READ_FOR,
    command_line,
    connect,
    job_state,
    jobs_table,
    wait_ids,
    wait_many,
)

__all__ = ["AUDITED", "JOBS", "register_jobs"]


# --------------------------------------------------------------------------- jobs and audited jobs


@frozen
class _Kind:
    """Jobs or audited jobs: the same commands over ``wb.jobs`` or ``wb.audited_jobs``."""

    group: str  # the command group: "jobs" or "audited-jobs"
    what: str  # "job" or "audited job"
    audited: bool

    def of(self, wb: WorkbenchClient) -> JobsResource | AuditedJobsResource:
        return wb.audited_jobs if self.audited else wb.jobs


JOBS = _Kind("jobs", "job", audited=False)
AUDITED = _Kind("audited-jobs", "audited job", audited=True)


def _env_pairs(values: Sequence[str] | None) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in values or ():
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--env expects NAME=VALUE, got {item!r}")
        env[name] = value
    return env


def _stop_note(args: argparse.Namespace, kind: _Kind, job_id: str) -> str:
    return keeps_running(kind.what, [job_id], command_line(args, kind.group, "stop", job_id))


def _job_summary(job: Job, what: str = "job") -> Text:
    exit_code = "-" if job.exit_code is None else str(job.exit_code)
    style = "red" if job.failed else state_style(job.state)
    return Text.assemble(
        f"{what} {job.id} ({job.name or '-'}): ",
        (job.state, style),
        f", exit code {exit_code}",
    )


def _chunk_data(chunk: OutputChunk) -> dict[str, Any]:
    return {
        "type": "output",
        "job_id": chunk.job_id,
        "output_type": chunk.output_type,
        "output": chunk.output,
    }


async def _stream(resource: JobsResource | AuditedJobsResource, job_id: str, out: Output) -> None:
    """Print a job's output as it comes, until the job ends. Human mode: stdout lines on
    stdout, stderr lines on stderr (in red on a terminal). JSON mode: one object per chunk,
    on its own line, flushed as soon as it arrives (NDJSON)."""
    if out.json_mode:
        async for chunk in resource.output(job_id):
            out.emit_line(_chunk_data(chunk))
        return
    async for line in resource.lines(job_id):
        is_err = line.output_type == "stderr"
        out.out_line(line.text, stderr=is_err, style="red" if is_err else None)


async def _follow_to_the_end(
    args: argparse.Namespace,
    out: Output,
    wb: WorkbenchClient,
    kind: _Kind,
    job: Job | None,
    job_id: str,
    *,
    tail: bool,
) -> tuple[Job | None, AioComputeError | None]:
    """Tail (``tail``) or wait for a job until it ends, within ``args.timeout``; returns its
    last record and the error that ended the wait (None if it finished with exit code 0)."""
    resource = kind.of(wb)
    started = time.monotonic()
    final: Job | None = job
    error: AioComputeError | None = None
    try:
        with anyio.fail_after(args.timeout):
            if tail:
                with user_input():  # an empty id is refused before any request
                    await _stream(resource, job_id, out)
            remaining = max(0.1, args.timeout - (time.monotonic() - started))
            if tail or out.json_mode:
                final = await resource.wait(job_id, timeout=remaining)
            else:
                entries, _ = await wait_many(
                    out,
                    resource,
                    [(job_id, (job.name or "") if job is not None else "")],
                    table=JOB_STATES,
                    target="Finished",
                    wait_timeout=remaining,
                    state_of=job_state,
                    key="job",
                    title=f"waiting for the {kind.what} to finish",
                )
                final = entries[0]["job"] or job
                waited = entries[0]["error"]
                if isinstance(waited, AioComputeError):
                    error = waited
                elif waited is not None:
                    raise waited
    except TimeoutError:
        error = WaitTimeout(f"{kind.what} {job_id} did not finish within {args.timeout:g} s")
    except WaitError as exc:
        error = exc
        if isinstance(exc.last, Job):
            final = exc.last
    return final, error


def _end_of(
    out: Output,
    kind: _Kind,
    final: Job | None,
    error: AioComputeError | None,
    *,
    summary: bool,
) -> int:
    """Report how a tailed or waited-for job ended (the last NDJSON line in JSON mode)."""
    out.emit_line(
        {
            "type": "end",
            "job": final,
            "state": None if final is None else final.state,
            "exit_code": None if final is None else final.exit_code,
            "error": error,
        }
    )
    if summary and final is not None and final.is_terminal:
        out.info(_job_summary(final, kind.what))
    if error is not None:
        out.problem(f"{type(error).__name__}: {error}")
    return exit_for([error])


async def _jobs_launch(args: argparse.Namespace, out: Output, kind: _Kind = JOBS) -> int:
    job_args = list(args.job_args)
    if job_args[:1] == ["--"]:  # some Python versions keep the separator
        job_args = job_args[1:]
    with user_input():
        spec = JobSpec(
            name=args.name,
            cluster=args.cluster,
            exe=args.exe,
            command=args.command,
            args=job_args,
            environment=_env_pairs(args.env) or None,
            container_image=args.image,
        )
    async with connect(args) as wb:
        with user_input():
            job: Job = await kind.of(wb).launch(spec)
        if not (args.wait or args.tail):
            out.emit({"job": job})
            out.info(_job_summary(job, kind.what))
            return EXIT_OK
        if args.tail and out.json_mode:
            out.emit_line({"type": "launched", "job": job})
        elif out.json_mode:
            pass  # --wait --json: one document at the end
        else:
            where = job.cluster or args.cluster
            out.info(f"launched {kind.what} {job.id} ({job.name or '-'}) on {where}")
        with out.keeps_running(_stop_note(args, kind, job.id)):
            final, error = await _follow_to_the_end(
                args, out, wb, kind, job, job.id, tail=args.tail
            )
    if args.tail:
        return _end_of(out, kind, final, error, summary=True)
    # --wait: the progress table said how it ended (and the reason on stderr).
    out.emit({"job": final, "error": error})
    if out.json_mode and error is not None:
        out.problem(f"{type(error).__name__}: {error}")
    return exit_for([error])


async def _jobs_tail(args: argparse.Namespace, out: Output, kind: _Kind = JOBS) -> int:
    async with connect(args) as wb:
        with out.keeps_running(_stop_note(args, kind, args.job_id)):
            final, error = await _follow_to_the_end(
                args, out, wb, kind, None, args.job_id, tail=True
            )
    # The job's own output goes to stdout: say how it ended only if it failed (on stderr).
    return _end_of(out, kind, final, error, summary=False)


async def _read_output(
    resource: JobsResource | AuditedJobsResource, job: Job, read_for: float
) -> tuple[list[OutputChunk], bool]:
    """The output a job has written so far, and whether that is all of it.

    An ended job's stream closes after its last chunk. A running job's stays open (the
    server sends chunks as they come): it is read for ``read_for`` seconds at most, less
    once it is quiet for a moment (the server replays what was written at once)."""
    chunks: list[OutputChunk] = []
    stream: AsyncGenerator[OutputChunk, None] = resource.output(job.id, follow=False)
    quiet_after = min(OUTPUT_QUIET, read_for)
    try:
        if job.is_terminal:
            chunks.extend([chunk async for chunk in stream])
            return chunks, True
        with anyio.move_on_after(read_for):
            while True:
                with anyio.move_on_after(quiet_after) as quiet:
                    chunks.append(await stream.__anext__())
                if quiet.cancelled_caught:
                    break
        return chunks, False
    except StopAsyncIteration:  # the job ended meanwhile: that was all of it
        return chunks, True
    finally:
        await stream.aclose()


async def _jobs_output(args: argparse.Namespace, out: Output, kind: _Kind = JOBS) -> int:
    async with connect(args) as wb:
        resource = kind.of(wb)
        with user_input():
            job = await resource.get(args.job_id)
        chunks, complete = await _read_output(resource, job, args.read_for)
    stdout = "".join(c.output for c in chunks if c.output_type != "stderr")
    stderr = "".join(c.output for c in chunks if c.output_type == "stderr")
    out.emit(
        {
            "job_id": job.id,
            "state": job.state,
            "complete": complete,
            "stdout": stdout,
            "stderr": stderr,
        }
    )
    if not out.json_mode:
        for chunk in chunks:
            out.raw(chunk.output, stderr=chunk.output_type == "stderr")
    if not complete:
        out.warn(
            f"{kind.what} {job.id} is still {job.state}: this is its output so far; follow "
            f"it with: {command_line(args, kind.group, 'tail', job.id)}"
        )
    return EXIT_OK


def _job_table(out: Output, job: Job, what: str) -> None:
    style = "red" if job.failed else state_style(job.state)
    table = out.table("FIELD", "VALUE", title=f"{what} {job.id}")
    table.add_row("status", Text(job.state, style=style))
    table.add_row("message", shown(job.status_message))
    table.add_row("exit code", shown(job.exit_code))
    table.add_row("name", shown(job.name))
    table.add_row("user", shown(job.user))
    table.add_row("cluster", shown(job.cluster))
    table.add_row("host", shown(job.host))
    table.add_row("program", shown(job.exe or job.command))
    table.add_row("arguments", shlex.join(job.args) if job.args else "-")
    table.add_row("image", shown(job.container_image))
    table.add_row("submitted", shown(job.submission_time))
    table.add_row("ended", shown(job.terminated_time))
    out.print(table)


async def _jobs_get(args: argparse.Namespace, out: Output, kind: _Kind = JOBS) -> int:
    async with connect(args) as wb:
        with user_input():
            job = await kind.of(wb).get(args.job_id)
    out.emit({"job": job, "state": job.state})
    _job_table(out, job, kind.what)
    return EXIT_OK


async def _jobs_list(args: argparse.Namespace, out: Output) -> int:
    mine = [tag(OWNER_LABEL, owner_of(args))] if args.mine else None
    async with connect(args) as wb:
        jobs = await wb.jobs.list(tags=mine)
    out.emit({"jobs": jobs})
    if not jobs:
        out.info("no jobs")
        return EXIT_OK
    out.print(jobs_table(out, jobs))
    return EXIT_OK


async def _jobs_reap(args: argparse.Namespace, out: Output) -> int:
    async with connect(args) as wb:
        jobs = await wb.jobs.list(tags=[tag(OWNER_LABEL, owner_of(args))])
        found = [Owned(j.id, j.name or "", j.submission_time) for j in jobs if not j.is_terminal]
        return await reap(args, out, found, wb.jobs.stop, what="job", verb="stop")


async def _jobs_wait(args: argparse.Namespace, out: Output, kind: _Kind = JOBS) -> int:
    ids = dedupe(args.ids)
    return await wait_ids(
        args,
        out,
        kind.of,
        table=JOB_STATES,
        state_of=job_state,
        key="job",
        what=kind.what,
        stop_note=keeps_running(kind.what, ids, command_line(args, kind.group, "stop", *ids)),
    )


async def _jobs_stop(args: argparse.Namespace, out: Output, kind: _Kind = JOBS) -> int:
    ids = dedupe(args.ids)
    async with connect(args) as wb:
        with user_input():
            for one in ids:
                await kind.of(wb).stop(one, force=args.force)
    out.emit({"stopped": ids, "force": args.force})
    how = "kill" if args.force else "stop"
    out.info(f"{how} requested for {len(ids)} {kind.what}(s): {', '.join(ids)}")
    return EXIT_OK


async def _audited_details(args: argparse.Namespace, out: Output) -> int:
    async with connect(args) as wb:
        with user_input():
            details = await wb.audited_jobs.details(args.job_id)
    out.emit({"audited_job_id": args.job_id, "details": details})
    script = details.script_output
    table = out.table("FIELD", "VALUE", title=f"audited job {args.job_id}")
    table.add_row("script checksum", shown(script.checksum if script else None))
    for data in script.user_defined_data if script else ():
        table.add_row("user data", shown(data.file_name))
    environment = details.environment
    table.add_row("environment", shown(environment.summary if environment else None))
    out.print(table)
    return EXIT_OK


# --------------------------------------------------------------------------- the tree


def _bind(handler: Callable[..., Any], kind: _Kind) -> Callable[[argparse.Namespace, Output], Any]:
    async def run(args: argparse.Namespace, out: Output) -> int:
        code: int = await handler(args, out, kind)
        return code

    return run


def register_jobs(wb: CommandTree, kind: _Kind) -> None:
    """The commands of ``jobs`` or ``audited-jobs`` (the same, over either resource)."""
    prog = f"aiocompute workbench {kind.group}"
    if kind.audited:
        jobs = wb.group(
            kind.group,
            help="launch, read, tail, wait for and stop audited jobs",
            description=(
                "Audited jobs: jobs whose script, environment and output the server keeps\n"
                "for audit. The same commands as 'jobs', plus 'details'."
            ),
            example=f"{prog} launch --name audit --exe Rscript --tail -- report.R",
        )
    else:
        jobs = wb.group(
            kind.group,
            help="launch, list, read, tail, wait for and stop jobs",
            description="Launcher jobs: batch work whose output streams back live.",
            example=f"{prog} launch --name fit --exe Rscript --tail -- fit.R",
        )
    p = jobs.command(
        "launch",
        help=f"launch {'an audited job' if kind.audited else 'a job'} (and optionally follow it)",
        description=(
            "Launch a job running --exe (a program) or --command (a shell command); the\n"
            "job's own arguments go after '--'. --tail prints its output live until it\n"
            "ends; --wait waits for it to finish. Exit code 3 if the job fails. With\n"
            "--tail --json: one JSON object per line (launched, each output chunk, end)."
        ),
        example=f"{prog} launch --name fit --exe Rscript --tail -- fit.R",
        handler=_bind(_jobs_launch, kind),
    )
    p.add_argument("--name", required=True, help="job name")
    p.add_argument("--cluster", default="Local", help="compute environment (default Local)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--exe", help="program to run")
    what.add_argument("--command", help="shell command to run")
    p.add_argument(
        "--env", action="append", metavar="NAME=VALUE", help="environment variable (repeatable)"
    )
    p.add_argument("--image", help="container image (clusters that run containers)")
    p.add_argument("--wait", action="store_true", help="wait until the job finishes")
    p.add_argument("--tail", action="store_true", help="print the job's output live")
    timeout_option(p, JOB_TIMEOUT, "if the job has not finished by then")
    p.add_argument("job_args", nargs="*", metavar="ARG", help="the job's arguments (after --)")

    p = jobs.command(
        "get",
        help=f"show {'an audited job' if kind.audited else 'a job'}",
        description="Show a job: its status, exit code, where and what it runs, its times.",
        example=f"{prog} get 8d3c0f2b9a1e4d57 --json",
        handler=_bind(_jobs_get, kind),
    )
    p.add_argument("job_id", metavar="JOB_ID", help="job id")

    p = jobs.command(
        "output",
        help="print the output a job has written so far (no follow)",
        description=(
            "Print a job's output once and return: all of it for a job that has ended;\n"
            "for one still running, what it has written so far (what the server sends\n"
            "within --read-for seconds, less once it is quiet), with a note on stderr.\n"
            "stdout on stdout, stderr on stderr. Use 'tail' to follow a running job."
        ),
        example=f"{prog} output 8d3c0f2b9a1e4d57 >fit.log",
        handler=_bind(_jobs_output, kind),
    )
    p.add_argument("job_id", metavar="JOB_ID", help="job id")
    p.add_argument(
        "--read-for",
        type=positive_seconds,
        default=OUTPUT_READ_FOR,
        metavar="SECONDS",
        help="for a running job: read its output for this long at most, less once it is "
        f"quiet (default {OUTPUT_READ_FOR:g})",
    )

    p = jobs.command(
        "tail",
        help="follow a job's live output until it ends",
        description=(
            "Print a job's output as it is produced, until the job ends: stdout lines on\n"
            "stdout, stderr lines on stderr (in red on a terminal). Exit code 3 if the\n"
            "job failed (or was killed, or exited non-zero). With --json: one JSON object\n"
            "per line, each chunk as it arrives, then an 'end' object."
        ),
        example=f"{prog} tail 8d3c0f2b9a1e4d57 2>errors.log",
        handler=_bind(_jobs_tail, kind),
    )
    p.add_argument("job_id", metavar="JOB_ID", help="job id")
    timeout_option(p, JOB_TIMEOUT, "if the job has not finished by then")

    if not kind.audited:
        p = jobs.command(
            "list",
            help="list your jobs",
            description="List the jobs the server still reports (live and recent).",
            example=f"{prog} list --mine --json",
            handler=_jobs_list,
        )
        p.add_argument(
            "--mine", action="store_true", help="only those launched by aiocompute for --owner"
        )
        owner_option(p)

        p = jobs.command(
            "reap",
            help="stop jobs a dead process left running",
            description=(
                "Stop the live jobs that aiocompute launched for --owner (their tags say\n"
                "so) longer ago than --older-than; asks first (--yes: don't)."
            ),
            example=f"{prog} reap --older-than 2h --dry-run",
            handler=_jobs_reap,
        )
        reap_options(p, "2h")

    p = jobs.command(
        "wait",
        help="wait until jobs finish",
        description=(
            "Wait until every job reaches a status (default Finished), showing progress.\n"
            "Exit code 3 if one times out or fails (a non-zero exit code counts as failing)."
        ),
        example=f"{prog} wait 8d3c0f2b9a1e4d57 --timeout 600",
        handler=_bind(_jobs_wait, kind),
    )
    p.add_argument("ids", nargs="+", metavar="JOB_ID", help="job ids")
    p.add_argument("--until", default="Finished", metavar="STATUS", help="default Finished")
    timeout_option(p, JOB_TIMEOUT, "if a job has not finished by then")

    p = jobs.command(
        "stop",
        help="stop jobs",
        description="Ask the server to stop jobs (--force: kill them at once).",
        example=f"{prog} stop 8d3c0f2b9a1e4d57 --force",
        handler=_bind(_jobs_stop, kind),
    )
    p.add_argument("ids", nargs="+", metavar="JOB_ID", help="job ids")
    p.add_argument("--force", action="store_true", help="kill instead of terminate")

    if kind.audited:
        p = jobs.command(
            "details",
            help="show the audit details of a completed audited job",
            description="Show what the server kept for audit: script checksum, environment.",
            example=f"{prog} details 8d3c0f2b9a1e4d57 --json",
            handler=_audited_details,
        )
        p.add_argument("job_id", metavar="JOB_ID", help="audited job id")
