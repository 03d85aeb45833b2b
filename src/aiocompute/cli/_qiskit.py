"""``aiocompute qiskit ...``: Qiskit Runtime sessions and jobs (IBM Quantum Platform) from the
command line.

The IBM Cloud API key comes from ``--token`` or (preferably) ``$QISKIT_IBM_TOKEN``, the instance
CRN from ``--instance`` or ``$QISKIT_IBM_INSTANCE``, the API base from ``--url`` or
``$AIOCOMPUTE_QISKIT_BASE_URL`` (default: the CRN's region on the platform of
``$QISKIT_IBM_URL``, as the SDK's client resolves it) and the IAM token endpoint from
``--iam-url`` or ``$QISKIT_IBM_IAM_URL`` (default: IBM Cloud IAM).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
from rich.text import Text

from .._core.reconcile import OWNER_LABEL, tag
from ..qiskit._protocol import LOG_LEVELS
from ..qiskit._states import JOB_STATES, SESSION_STATES
from ..qiskit.client import DEFAULT_URL, QiskitRuntimeClient
from ..qiskit.models import Job, Session, SessionMode
from ._app import EXIT_OK, CommandTree, UsageError
from ._common import (
    at_least_one,
    command_line,
    connection_option,
    dedupe,
    exit_for,
    for_each,
    given,
    keeps_running,
    new_client,
    report_each,
    secret,
    secret_option,
    setting,
    shown,
    target_state,
    timeout_option,
    user_input,
    wait_and_show,
    waited_data,
)
from ._output import Output, state_style
from ._owned import Owned, owner_of, owner_option, reap, reap_options

__all__ = ["connect", "register"]

_SESSION_TIMEOUT = 1800.0
_JOB_TIMEOUT = 3600.0

#: Where the settings come from when no option gives them (the SDK's client reads the same
#: variables: the command reads the first three itself to name the option in its errors).
TOKEN_ENV = "QISKIT_IBM_TOKEN"
INSTANCE_ENV = "QISKIT_IBM_INSTANCE"
URL_ENV = "AIOCOMPUTE_QISKIT_BASE_URL"
IAM_URL_ENV = "QISKIT_IBM_IAM_URL"


# --------------------------------------------------------------------------- configuration


def _connection_options(parser: argparse.ArgumentParser) -> None:
    connection_option(
        parser,
        "--url",
        metavar="URL",
        help=f"API base (default: ${URL_ENV}, else the CRN's region, such as {DEFAULT_URL})",
    )
    connection_option(
        parser,
        "--iam-url",
        metavar="URL",
        help=f"IBM Cloud IAM token endpoint (default: ${IAM_URL_ENV}, else IBM Cloud's)",
    )
    connection_option(
        parser,
        "--instance",
        metavar="CRN",
        help=f"instance CRN, sent as Service-CRN (default: ${INSTANCE_ENV})",
    )
    secret_option(parser, "--token", metavar="API_KEY", what="IBM Cloud API key", env=TOKEN_ENV)


def connect(args: argparse.Namespace) -> QiskitRuntimeClient:
    """A client from the options, else the environment; :class:`UsageError` (exit 2) naming
    what is missing."""
    token = secret(args, "token", TOKEN_ENV, "--token", what="IBM Cloud API key")
    instance = setting(args, "instance", INSTANCE_ENV, "--instance")
    if instance is None:
        raise UsageError(
            f"the Qiskit Runtime instance CRN is missing; set {INSTANCE_ENV} (or pass --instance)"
        )
    url = setting(args, "url", URL_ENV, "--url")
    # Without --iam-url the client reads $QISKIT_IBM_IAM_URL itself (else IBM Cloud's).
    iam_url = given(args, "iam_url", "--iam-url", instead=IAM_URL_ENV)
    # A ConfigError is not expected (every required setting was checked above).
    with new_client("invalid Qiskit Runtime setting"):
        return QiskitRuntimeClient(token=token, instance=instance, base_url=url, iam_url=iam_url)


# --------------------------------------------------------------------------- commands


def _state(session: Session | None) -> str | None:
    return None if session is None else session.effective_state


def _session_table(out: Output, session: Session) -> None:
    table = out.table("FIELD", "VALUE", title=f"session {session.id}")
    state = session.effective_state
    table.add_row("state", Text(state, style=state_style(state)))
    if state != session.state_name:
        table.add_row("reported state", session.state_name)
    table.add_row("backend", shown(session.backend_name))
    table.add_row("mode", shown(session.mode))
    table.add_row("accepting jobs", shown(session.accepting_jobs))
    table.add_row("reason", shown(session.state_reason))
    table.add_row("started", shown(session.started_at))
    table.add_row("activated", shown(session.activated_at))
    table.add_row("closed", shown(session.closed_at))
    table.add_row("max ttl", shown(session.max_ttl))
    table.add_row("usage seconds", shown(session.elapsed_time))
    out.print(table)


def _close_note(args: argparse.Namespace, ids: Sequence[str]) -> str:
    return keeps_running(
        "session", ids, command_line(args, "qiskit", "sessions", "close", *ids), verb="close"
    )


def _cancel_note(args: argparse.Namespace, ids: Sequence[str]) -> str:
    return keeps_running(
        "job", ids, command_line(args, "qiskit", "jobs", "cancel", *ids), verb="cancel"
    )


async def _sessions_create(args: argparse.Namespace, out: Output) -> int:
    async with connect(args) as q:
        with user_input():
            session = await q.sessions.create(args.backend, mode=args.mode, max_ttl=args.max_ttl)
        if not args.wait:
            out.emit({"session": session, "state": session.effective_state, "error": None})
            out.info(
                Text.assemble(
                    f"session {session.id} created on {args.backend} ({args.mode}): ",
                    (session.effective_state, state_style(session.effective_state)),
                )
            )
            return EXIT_OK
        out.info(f"session {session.id} created on {args.backend} ({args.mode})")
        with out.keeps_running(_close_note(args, [session.id])):
            waited = await wait_and_show(
                out,
                q.sessions,
                [(session.id, args.backend)],
                table=SESSION_STATES,
                until="active",
                timeout=args.timeout,
                state_of=_state,
                title="waiting for the session to be active",
            )
    entry = waited[0]
    out.emit({"session": entry.resource or session, "state": entry.state, "error": entry.error})
    return exit_for([entry.error])


async def _sessions_get(args: argparse.Namespace, out: Output) -> int:
    async with connect(args) as q:
        with user_input():
            session = await q.sessions.get(args.id)
    out.emit({"session": session})
    _session_table(out, session)
    return EXIT_OK


async def _sessions_close(args: argparse.Namespace, out: Output) -> int:
    ids = dedupe(args.ids)
    async with connect(args) as q:
        done, failed = await for_each(out, ids, q.sessions.close, what="close")
    return report_each(out, "closed", done, failed, "closed {n} session(s): {ids}")


async def _sessions_drain(args: argparse.Namespace, out: Output) -> int:
    ids = dedupe(args.ids)
    async with connect(args) as q:

        async def drain(one: str) -> None:
            await q.sessions.update(one, accepting_jobs=False)

        done, failed = await for_each(out, ids, drain, what="drain")
    said = (
        "{n} session(s) no longer accept jobs and will close once their queued jobs have run: {ids}"
    )
    return report_each(out, "drained", done, failed, said)


async def _sessions_wait(args: argparse.Namespace, out: Output) -> int:
    target = target_state(SESSION_STATES, args.until, "session")
    ids = dedupe(args.ids)
    async with connect(args) as q:
        with out.keeps_running(_close_note(args, ids)):
            waited = await wait_and_show(
                out,
                q.sessions,
                [(one, "") for one in ids],
                table=SESSION_STATES,
                until=target,
                timeout=args.timeout,
                state_of=_state,
                title=f"waiting for {len(ids)} session(s) to be {target}",
            )
    out.emit({"sessions": [waited_data(w, "session") for w in waited]})
    return exit_for([w.error for w in waited])


# --------------------------------------------------------------------------- jobs


def _job_state(job: Job | None) -> str | None:
    return None if job is None else job.status_name


def _params(value: str) -> dict[str, Any]:
    """``--params``: a JSON object, inline or ``@file`` (read when the command runs, so
    that parsing the command line touches no file)."""
    text = value
    if value.startswith("@"):
        try:
            text = Path(value[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"--params: cannot read {value[1:]!r}: {exc.strerror}") from None
    try:
        parsed = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"--params is not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise UsageError("--params must be a JSON object")
    return parsed


def _job_table(out: Output, job: Job) -> None:
    table = out.table("FIELD", "VALUE", title=f"job {job.id}")
    state = job.status_name
    table.add_row("status", Text(state, style=state_style(state.lower())))
    table.add_row("reason", shown(job.reason))
    table.add_row("program", shown(job.program_id))
    table.add_row("backend", shown(job.backend))
    table.add_row("session", shown(job.session_id))
    table.add_row("tags", ", ".join(job.tags) or "-")
    table.add_row("private", shown(job.private))
    table.add_row("created", shown(job.created))
    usage = (job.usage or {}).get("quantum_seconds")
    table.add_row("quantum seconds", shown(usage))
    out.print(table)


async def _jobs_run(args: argparse.Namespace, out: Output) -> int:
    params = _params(args.params)
    async with connect(args) as q:
        with user_input():
            job = await q.jobs.run(
                args.program,
                args.backend,
                params=params,
                session_id=args.session,
                tags=args.tag or (),
                private=args.private,
                log_level=args.log_level,
                max_execution_time=args.max_execution_time,
            )
        said = f"job {job.id} submitted: {args.program} on {job.backend or args.backend}"
        if not args.wait:
            out.emit({"job": job, "state": None, "error": None})
            out.info(said)
            return EXIT_OK
        out.info(said)
        with out.keeps_running(_cancel_note(args, [job.id])):
            waited = await wait_and_show(
                out,
                q.jobs,
                [(job.id, args.program)],
                table=JOB_STATES,
                until="completed",
                timeout=args.timeout,
                state_of=_job_state,
                title="waiting for the job to complete",
            )
    entry = waited[0]
    out.emit({"job": entry.resource or job, "state": entry.state, "error": entry.error})
    return exit_for([entry.error])


async def _jobs_get(args: argparse.Namespace, out: Output) -> int:
    async with connect(args) as q:
        with user_input():
            job = await q.jobs.get(args.id, include_params=args.params)
    out.emit({"job": job})
    _job_table(out, job)
    if args.params and job.params is not None:
        out.info(json.dumps(job.params, indent=2))
    return EXIT_OK


async def _jobs_reap(args: argparse.Namespace, out: Output) -> int:
    async with connect(args) as q:
        jobs = await q.jobs.list(pending=True, tags=[tag(OWNER_LABEL, owner_of(args))])
        found = [
            Owned(j.id, j.program_id or "", j.created if isinstance(j.created, datetime) else None)
            for j in jobs
        ]
        return await reap(args, out, found, q.jobs.cancel, what="job", verb="cancel")


async def _jobs_list(args: argparse.Namespace, out: Output) -> int:
    mine = [tag(OWNER_LABEL, owner_of(args))] if args.mine else []
    async with connect(args) as q:
        with user_input():
            jobs = await q.jobs.list(
                pending=args.pending,
                program=args.program,
                backend=args.backend,
                session_id=args.session,
                tags=[*(args.tag or ()), *mine],
                created_after=args.created_after,
                created_before=args.created_before,
                descending=not args.oldest_first,
                max_items=args.limit,
            )
    out.emit({"jobs": jobs})
    if not jobs:
        out.info("no jobs match")
        return EXIT_OK
    table = out.table("JOB", "STATUS", "PROGRAM", "BACKEND", "SESSION", "CREATED", "TAGS")
    for job in jobs:
        state = job.status_name
        table.add_row(
            job.id,
            Text(state, style=state_style(state.lower())),
            shown(job.program_id),
            shown(job.backend),
            shown(job.session_id),
            shown(job.created),
            ", ".join(job.tags) or "-",
        )
    out.print(table)
    return EXIT_OK


async def _jobs_wait(args: argparse.Namespace, out: Output) -> int:
    target = target_state(JOB_STATES, args.until, "job")
    ids = dedupe(args.ids)
    async with connect(args) as q:
        with out.keeps_running(_cancel_note(args, ids)):
            waited = await wait_and_show(
                out,
                q.jobs,
                [(one, "") for one in ids],
                table=JOB_STATES,
                until=target,
                timeout=args.timeout,
                state_of=_job_state,
                title=f"waiting for {len(ids)} job(s) to be {target}",
            )
    out.emit({"jobs": [waited_data(w, "job") for w in waited]})
    return exit_for([w.error for w in waited])


async def _jobs_results(args: argparse.Namespace, out: Output) -> int:
    async with connect(args) as q:
        if args.output is not None:
            # Streamed to the file as it arrives (a large result is never held in memory),
            # through FILE.part: a read that fails halfway leaves no FILE that looks whole.
            partial = args.output.with_name(args.output.name + ".part")
            size = 0
            try:
                async with await anyio.open_file(partial, "wb") as f:
                    with user_input():
                        async for chunk in q.jobs.iter_results(args.id):
                            await f.write(chunk)
                            size += len(chunk)
                partial.replace(args.output)
            finally:
                partial.unlink(missing_ok=True)
            out.emit({"job_id": args.id, "output": str(args.output), "bytes": size})
            out.info(f"result of job {args.id} written to {args.output} ({size} bytes)")
            return EXIT_OK
        with user_input():
            result = await q.jobs.results(args.id)
    out.emit({"job_id": args.id, "result": result})
    if not out.json_mode:
        out.out_line(json.dumps(result, indent=2))
    return EXIT_OK


async def _jobs_logs(args: argparse.Namespace, out: Output) -> int:
    async with connect(args) as q:
        with user_input():
            text = await q.jobs.logs(args.id)
    out.emit({"job_id": args.id, "logs": text})
    if not out.json_mode:
        for line in text.splitlines():
            out.out_line(line)
    return EXIT_OK


async def _jobs_cancel(args: argparse.Namespace, out: Output) -> int:
    ids = dedupe(args.ids)
    async with connect(args) as q:
        done, failed = await for_each(out, ids, q.jobs.cancel, what="cancel")
    return report_each(out, "cancelled", done, failed, "cancelled {n} job(s): {ids}")


def _register_jobs(qiskit: CommandTree) -> None:
    jobs = qiskit.group(
        "jobs",
        help="run primitives and follow their jobs",
        description=(
            "Jobs run a primitive (sampler or estimator) on a backend. A job is Queued,\n"
            "then Running, and ends Completed, Failed (the reason says why) or Cancelled.\n"
            "Job creation is rate-limited (5 a minute per user); a refused 'run' because\n"
            "the instance's usage limit is reached exits 1 with UsageLimitExceeded."
        ),
        example="aiocompute qiskit jobs list --pending --json",
    )
    p = jobs.command(
        "run",
        help="run a primitive on a backend",
        description=(
            "Submit a job: PROGRAM (sampler or estimator) on BACKEND with --params, the\n"
            "primitive's input as a JSON object (inline or @file). With --wait, watch it\n"
            "until it completes (exit code 3 if it fails, is cancelled or times out)."
        ),
        example=[
            "aiocompute qiskit jobs run sampler ibm_brisbane --params @pubs.json --wait",
            "aiocompute qiskit jobs run estimator ibm_torino --params '{\"pubs\": []}' --tag exp-7",
        ],
        handler=_jobs_run,
    )
    p.add_argument("program", metavar="PROGRAM", help="sampler or estimator")
    p.add_argument("backend", metavar="BACKEND", help="backend name, e.g. ibm_brisbane")
    p.add_argument(
        "--params",
        default="{}",
        metavar="JSON",
        help="the primitive's input: a JSON object, or @FILE to read it from a file",
    )
    p.add_argument("--session", metavar="SESSION_ID", help="run it in this session (or batch)")
    p.add_argument("--tag", action="append", metavar="TAG", help="a tag (repeat for more)")
    p.add_argument("--private", action="store_true", help="hide its params; result read once")
    p.add_argument("--log-level", choices=LOG_LEVELS, help="the job's log level")
    p.add_argument(
        "--max-execution-time",
        type=at_least_one("seconds"),
        metavar="SECONDS",
        help="the most quantum seconds it may use",
    )
    p.add_argument("--wait", action="store_true", help="wait until the job completes")
    timeout_option(p, _JOB_TIMEOUT, "if it has not completed by then")

    p = jobs.command(
        "get",
        help="show a job",
        description="Show a job: its status (and why it failed), program, backend and usage.",
        example="aiocompute qiskit jobs get d0a1b2c3d4e5f6g7h8i9",
        handler=_jobs_get,
    )
    p.add_argument("id", metavar="ID", help="job id")
    p.add_argument("--params", action="store_true", help="also show the job's params")

    p = jobs.command(
        "list",
        help="list jobs, newest first",
        description=(
            "List the instance's jobs, newest first, with filters. Tags match when a job\n"
            "carries every --tag given."
        ),
        example=[
            "aiocompute qiskit jobs list --pending",
            "aiocompute qiskit jobs list --session 9e1a7b3c --tag exp-7 --limit 20 --json",
        ],
        handler=_jobs_list,
    )
    state = p.add_mutually_exclusive_group()
    state.add_argument(
        "--pending", dest="pending", action="store_const", const=True, help="queued or running"
    )
    state.add_argument(
        "--done", dest="pending", action="store_const", const=False, help="ended jobs only"
    )
    p.add_argument("--program", metavar="PROGRAM", help="sampler or estimator")
    p.add_argument("--backend", metavar="BACKEND", help="backend name")
    p.add_argument("--session", metavar="SESSION_ID", help="jobs of this session")
    p.add_argument("--tag", action="append", metavar="TAG", help="a tag (repeat for more)")
    p.add_argument("--created-after", metavar="ISO_TIME", help="e.g. 2025-05-01T00:00:00Z")
    p.add_argument("--created-before", metavar="ISO_TIME", help="e.g. 2025-06-01T00:00:00Z")
    p.add_argument("--oldest-first", action="store_true", help="oldest first")
    p.add_argument(
        "--limit",
        type=at_least_one("jobs"),
        default=100,
        metavar="N",
        help="show at most N jobs (default 100)",
    )
    p.add_argument("--mine", action="store_true", help="only those run by aiocompute for --owner")
    owner_option(p)

    p = jobs.command(
        "reap",
        help="cancel jobs a dead process left queued or running",
        description=(
            "Cancel the queued or running jobs that aiocompute ran for --owner (their tags\n"
            "say so) longer ago than --older-than; asks first (--yes: don't)."
        ),
        example="aiocompute qiskit jobs reap --older-than 2h --dry-run",
        handler=_jobs_reap,
    )
    reap_options(p, "2h")

    p = jobs.command(
        "wait",
        help="wait until jobs reach a state",
        description=(
            "Wait until every job reaches a state (default completed), showing progress.\n"
            "Exit code 3 if one times out or can no longer get there (failed, cancelled)."
        ),
        example="aiocompute qiskit jobs wait d0a1b2c3d4e5f6g7h8i9 --timeout 600",
        handler=_jobs_wait,
    )
    p.add_argument("ids", nargs="+", metavar="ID", help="job ids")
    p.add_argument(
        "--until",
        default="completed",
        metavar="STATE",
        help="queued, running, completed, failed or cancelled (default completed)",
    )
    timeout_option(p, _JOB_TIMEOUT, "if a job is not there by then")

    p = jobs.command(
        "results",
        help="print or save a completed job's result",
        description=(
            "Print a completed job's result (the primitive's result as JSON), or with\n"
            "--output write the bytes to a file as they arrive (for large results)."
        ),
        example=[
            "aiocompute qiskit jobs results d0a1b2c3d4e5f6g7h8i9 --output result.json",
            "aiocompute qiskit jobs results d0a1b2c3d4e5f6g7h8i9 --json",
        ],
        handler=_jobs_results,
    )
    p.add_argument("id", metavar="ID", help="job id")
    p.add_argument("--output", type=Path, metavar="FILE", help="write the result to FILE")

    p = jobs.command(
        "logs",
        help="print a job's log",
        description="Print a job's log (complete once the job has finished).",
        example="aiocompute qiskit jobs logs d0a1b2c3d4e5f6g7h8i9",
        handler=_jobs_logs,
    )
    p.add_argument("id", metavar="ID", help="job id")

    p = jobs.command(
        "cancel",
        help="cancel queued or running jobs",
        description="Cancel jobs that are queued or running (an ended job cannot be cancelled).",
        example="aiocompute qiskit jobs cancel d0a1b2c3d4e5f6g7h8i9",
        handler=_jobs_cancel,
    )
    p.add_argument("ids", nargs="+", metavar="ID", help="job ids")


# --------------------------------------------------------------------------- the tree


def register(tree: CommandTree) -> None:
    """Add ``aiocompute qiskit ...`` to the command tree."""
    qiskit = tree.group(
        "qiskit",
        help="Qiskit Runtime: sessions, and jobs that run primitives",
        description=(
            "Qiskit Runtime sessions and jobs on IBM Quantum Platform.\n\n"
            f"The IBM Cloud API key comes from ${TOKEN_ENV} (or --token, which other\n"
            f"users can see), the instance CRN from ${INSTANCE_ENV} (or --instance); the\n"
            f"API base from --url or ${URL_ENV}, the IAM endpoint from --iam-url or\n"
            f"${IAM_URL_ENV} (both default to IBM Cloud's)."
        ),
        example="aiocompute qiskit sessions create ibm_brisbane --wait",
        options=[_connection_options],
    )
    sessions = qiskit.group(
        "sessions",
        help="create, read, drain, close and wait for sessions",
        description=(
            "Sessions give a series of jobs priority on one backend. A session is open\n"
            "until its backend picks it up, active while it has priority, inactive between\n"
            "jobs, and closed at the end."
        ),
        example="aiocompute qiskit sessions get 9e1a7b3c-2d4f-4e8a-b6c1-0f5d3a2e7c91 --json",
    )
    p = sessions.command(
        "create",
        help="open a session on a backend",
        description=(
            "Open a session on a backend. With --wait, watch it until it is active\n"
            "(exit code 3 if it times out or closes first)."
        ),
        example=[
            "aiocompute qiskit sessions create ibm_brisbane --wait",
            "aiocompute qiskit sessions create ibm_torino --mode dedicated --max-ttl 3600",
        ],
        handler=_sessions_create,
    )
    p.add_argument("backend", metavar="BACKEND", help="backend name, e.g. ibm_brisbane")
    p.add_argument(
        "--mode",
        choices=[m.value for m in SessionMode],
        default=SessionMode.BATCH.value,
        help="batch (jobs queued together, the default) or dedicated",
    )
    p.add_argument(
        "--max-ttl",
        type=at_least_one("seconds"),
        default=None,
        metavar="SECONDS",
        help="the longest the session may live (default: not sent, so the server's, 8 h on "
        "IBM Quantum)",
    )
    p.add_argument("--wait", action="store_true", help="wait until the session is active")
    timeout_option(p, _SESSION_TIMEOUT, "if it is not active by then")

    p = sessions.command(
        "get",
        help="show a session",
        description="Show a session: its state, backend, mode and times.",
        example="aiocompute qiskit sessions get 9e1a7b3c-2d4f-4e8a-b6c1-0f5d3a2e7c91",
        handler=_sessions_get,
    )
    p.add_argument("id", metavar="ID", help="session id")

    p = sessions.command(
        "close",
        help="close sessions now",
        description=(
            "Close sessions at once: jobs that are not running yet will not run.\n"
            "(To let queued jobs finish first, use drain.)"
        ),
        example="aiocompute qiskit sessions close 9e1a7b3c-2d4f-4e8a-b6c1-0f5d3a2e7c91",
        handler=_sessions_close,
    )
    p.add_argument("ids", nargs="+", metavar="ID", help="session ids")

    p = sessions.command(
        "drain",
        help="stop sessions accepting jobs (they close once drained)",
        description=(
            "Tell sessions to accept no new jobs: queued jobs still run, then each\n"
            "session closes. Wait for that with: wait ID --until closed."
        ),
        example="aiocompute qiskit sessions drain 9e1a7b3c-2d4f-4e8a-b6c1-0f5d3a2e7c91",
        handler=_sessions_drain,
    )
    p.add_argument("ids", nargs="+", metavar="ID", help="session ids")

    p = sessions.command(
        "wait",
        help="wait until sessions reach a state",
        description=(
            "Wait until every session reaches a state (default active), showing progress.\n"
            "Exit code 3 if one times out or can no longer get there (e.g. it closed)."
        ),
        example="aiocompute qiskit sessions wait 9e1a7b3c-2d4f-4e8a-b6c1-0f5d3a2e7c91 --timeout 60",
        handler=_sessions_wait,
    )
    p.add_argument("ids", nargs="+", metavar="ID", help="session ids")
    p.add_argument(
        "--until",
        default="active",
        metavar="STATE",
        help="open, active, inactive, pending_inactive, pending_closed or closed (default active)",
    )
    timeout_option(p, _SESSION_TIMEOUT, "if a session is not there by then")

    _register_jobs(qiskit)
