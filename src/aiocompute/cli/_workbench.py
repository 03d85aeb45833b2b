"""``aiocompute workbench ...``: Posit Workbench sessions and jobs from the command line.

The address comes from ``--server`` or ``$WORKBENCH_SERVER``, the token from ``--token`` or
(preferably) ``$WORKBENCH_API_KEY``; inside a Workbench session the session's RPC cookie is
used when no token is set, as the SDK does.
"""

from __future__ import annotations

import argparse
import enum
import os
import shlex
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import Any

import anyio
from attrs import frozen
from rich.text import Text

from .._core.fanout import fan_out
from .._core.reconcile import OWNER_LABEL, tag
from .._core.resources import WaitableResource
from .._core.states import StateTable
from .._exceptions import AioComputeError, WaitError, WaitTimeout
from ..workbench._states import JOB_STATES, SESSION_STATES
from ..workbench.client import AuditedJobsResource, JobsResource, WorkbenchClient
from ..workbench.models import (
    Job,
    JobSpec,
    LaunchedSession,
    LaunchParameters,
    OutputChunk,
    Session,
)
from ._app import EXIT_OK, CommandTree, UsageError
from ._common import (
    at_least_one,
    connection_option,
    dedupe,
    exit_for,
    given,
    keeps_running,
    missing_secret,
    new_client,
    positive_seconds,
    secret_option,
    shown,
    target_state,
    timeout_option,
    user_input,
    wait_and_show,
)
from ._output import Output, state_style
from ._owned import Owned, owner_of, owner_option, reap, reap_options

__all__ = ["connect", "register", "session_state"]

_SESSION_TIMEOUT = 600.0
_JOB_TIMEOUT = 3600.0
_LAUNCH_CONCURRENCY = 16
#: ``jobs output`` of a running job: how long to read its stream at most (--read-for), and
#: the quiet moment after which the replay of what it wrote so far is taken as over.
_OUTPUT_READ_FOR = 2.0
_OUTPUT_QUIET = 0.5
_SERVER_ENV = "WORKBENCH_SERVER"
#: Read by the SDK's client (which also falls back to a session's RPC cookie), not here.
_TOKEN_ENV = "WORKBENCH_API_KEY"


# --------------------------------------------------------------------------- configuration


def _connection_options(parser: argparse.ArgumentParser) -> None:
    connection_option(
        parser,
        "--server",
        metavar="URL",
        help=f"Workbench address, e.g. https://workbench.example.com (default: ${_SERVER_ENV})",
    )
    secret_option(parser, "--token", metavar="TOKEN", what="API token", env=_TOKEN_ENV)
    connection_option(
        parser,
        "--act-as",
        metavar="USER",
        help="work for this user: read, wait for and tail their sessions and jobs (admin "
        "token), launch for them (super-admin token)",
    )


def connect(args: argparse.Namespace) -> WorkbenchClient:
    """A client from ``--server`` / ``--token``, else ``$WORKBENCH_SERVER`` /
    ``$WORKBENCH_API_KEY``, acting for ``--act-as`` if given; :class:`UsageError` (exit 2)
    naming what is missing."""
    server = _server(args)
    if not server:
        raise UsageError(f"no Workbench server address: set {_SERVER_ENV} (or pass --server URL)")
    token = given(args, "token", "--token", instead=_TOKEN_ENV)
    # The client reads $WORKBENCH_API_KEY itself; its ConfigError means no token at all.
    # Worded so that redact() finds nothing that looks like "token: <value>" in it.
    missing = missing_secret("Workbench API token", _TOKEN_ENV, "--token")
    act_as = getattr(args, "act_as", None)
    if act_as is not None and not act_as.strip():
        raise UsageError("--act-as needs a user name")
    with new_client("invalid Workbench server address", missing=missing):
        return WorkbenchClient(server, token=token, act_as=act_as)


def _server(args: argparse.Namespace) -> str:
    """``--server``, else ``$WORKBENCH_SERVER``, without a trailing slash ("" if neither)."""
    server = getattr(args, "server", None) or os.environ.get(_SERVER_ENV, "")
    return str(server).strip().rstrip("/")


def _command(args: argparse.Namespace, *words: str) -> str:
    """The command line that does ``words`` with the same server and user as this one (the
    token is never repeated: it comes from the environment or is typed again)."""
    line = ["aiocompute", "workbench"]
    for option, attr in (("--server", "server"), ("--act-as", "act_as")):
        value = getattr(args, attr, None)
        if value:
            line += [option, str(value)]
    return shlex.join([*line, *words])


def _url(args: argparse.Namespace, path: str | None) -> str:
    """A session's address in a browser: the server's address and the session's path."""
    if not path:
        return "-"
    return path if "://" in path else _server(args) + path


# --------------------------------------------------------------------------- shared helpers


def session_state(session: Session | None) -> str | None:
    """A session's ``activity_state`` as a plain string (None if unknown)."""
    if session is None or session.activity_state is None:
        return None
    state = session.activity_state
    return str(state.value) if isinstance(state, enum.Enum) else str(state)


def _job_state(job: Job | None) -> str | None:
    return None if job is None else job.state


async def _wait_many(
    out: Output,
    resource: WaitableResource[Any],
    items: Sequence[tuple[str, str]],
    *,
    table: StateTable,
    target: str,
    wait_timeout: float,
    state_of: Callable[[Any], str | None],
    key: str,
    title: str,
) -> tuple[list[dict[str, Any]], list[BaseException]]:
    """Wait for every id with live progress; print the summary; return JSON entries, errors."""
    waited = await wait_and_show(
        out,
        resource,
        items,
        table=table,
        until=target,
        timeout=wait_timeout,
        state_of=state_of,
        title=title,
    )
    entries = [
        {
            "id": w.id,
            "name": w.label or _name_of(w.resource),
            "state": w.state,
            key: w.resource,
            "error": w.error,
        }
        for w in waited
    ]
    return entries, [w.error for w in waited if w.error is not None]


def _name_of(resource: Session | Job | None) -> str:
    return (resource.name or "") if resource is not None else ""


# --------------------------------------------------------------------------- workbench version


async def _server_version(args: argparse.Namespace, out: Output) -> int:
    async with connect(args) as wb:
        version = await wb.version()
    number = ".".join(str(n) for n in version.number)
    out.emit({"version": number, "server": version})
    table = out.table("FIELD", "VALUE", title="Workbench server")
    table.add_row("version", number)
    table.add_row("release", version.release_name or "-")
    table.add_row("build", f"{version.build_number or '-'} ({version.build_type or '-'})")
    table.add_row("features", ", ".join(version.features) or "-")
    out.print(table)
    return EXIT_OK


# --------------------------------------------------------------------------- sessions


async def _sessions_launch(args: argparse.Namespace, out: Output) -> int:
    count: int = args.count
    names = [args.name] if count == 1 else [f"{args.name}-{i}" for i in range(1, count + 1)]
    server = _server(args)
    async with connect(args) as wb:

        async def launch(name: str) -> LaunchedSession:
            params = LaunchParameters(name=name, cluster=args.cluster, container_image=args.image)
            return await wb.sessions.launch(args.ide, name=name, launch_parameters=params)

        result = await fan_out(launch, names, concurrency=min(count, _LAUNCH_CONCURRENCY))
        launched: list[tuple[str, LaunchedSession]] = []
        entries: dict[str, dict[str, Any]] = {}
        errors: list[BaseException] = []
        for outcome in result.outcomes:
            name = outcome.item
            entry: dict[str, Any] = {"name": name, "id": None, "url": None, "error": None}
            if outcome.error is not None:
                entry["error"] = outcome.error
                errors.append(outcome.error)
                out.problem(
                    f"could not launch {name}: {type(outcome.error).__name__}: {outcome.error}"
                )
            else:
                session = outcome.unwrap()
                launched.append((name, session))
                entry.update(id=session.id, url=server + (session.url or ""))
            entries[name] = entry

        if launched and args.wait:
            items = [(s.id, name) for name, s in launched]
            ids = [s.id for _, s in launched]
            note = keeps_running("session", ids, _command(args, "sessions", "stop", *ids))
            with out.keeps_running(note):
                waited, wait_errors = await _wait_many(
                    out,
                    wb.sessions,
                    items,
                    table=SESSION_STATES,
                    target="running",
                    wait_timeout=args.timeout,
                    state_of=session_state,
                    key="session",
                    title=f"waiting for {len(items)} session(s) to be running",
                )
            errors.extend(wait_errors)
            for (name, _), done in zip(launched, waited, strict=True):
                entries[name].update(state=done["state"], session=done["session"])
                if done["error"] is not None:
                    entries[name]["error"] = done["error"]
            running = [(n, s) for n, s in launched if entries[n].get("state") == "running"]
            if running:
                table = out.table("ID", "NAME", "URL", title=f"{len(running)} session(s) running")
                for name, session in running:
                    table.add_row(session.id, name, entries[name]["url"])
                out.print(table)
        elif launched:
            table = out.table("ID", "NAME", "URL", title=f"launched {len(launched)} session(s)")
            for name, session in launched:
                table.add_row(session.id, name, entries[name]["url"])
            out.print(table)
    out.emit({"sessions": list(entries.values())})
    return exit_for(errors)


async def _sessions_list(args: argparse.Namespace, out: Output) -> int:
    async with connect(args) as wb:
        with user_input():
            sessions = await wb.sessions.list(user=args.user)
    out.emit({"sessions": sessions})
    if not sessions:
        out.info("no live sessions")
        return EXIT_OK
    table = out.table("ID", "NAME", "IDE", "STATE", "CLUSTER", "CREATED")
    for s in sessions:
        state = session_state(s)
        cluster = s.launch_parameters.cluster if s.launch_parameters else None
        table.add_row(
            s.id,
            s.name or s.label or "-",
            s.workbench or "-",
            Text(state or "-", style=state_style(state)),
            cluster or "-",
            s.created.isoformat(timespec="seconds") if s.created else "-",
        )
    out.print(table)
    return EXIT_OK


async def _wait_ids(
    args: argparse.Namespace,
    out: Output,
    resource: Callable[[WorkbenchClient], WaitableResource[Any]],
    *,
    table: StateTable,
    state_of: Callable[[Any], str | None],
    key: str,
    what: str,
    stop_note: str,
) -> int:
    """``sessions wait`` / ``jobs wait``: every ``args.ids`` until ``args.until``; the
    document is ``{<key>s: [entry per id]}``. ``stop_note`` is said if Ctrl-C stops it."""
    target = target_state(table, args.until, key)
    ids = dedupe(args.ids)
    async with connect(args) as wb:
        with out.keeps_running(stop_note):
            entries, errors = await _wait_many(
                out,
                resource(wb),
                [(one, "") for one in ids],
                table=table,
                target=target,
                wait_timeout=args.timeout,
                state_of=state_of,
                key=key,
                title=f"waiting for {len(ids)} {what}(s) to be {target}",
            )
    out.emit({f"{key}s": entries})
    return exit_for(errors)


async def _sessions_wait(args: argparse.Namespace, out: Output) -> int:
    ids = dedupe(args.ids)
    return await _wait_ids(
        args,
        out,
        lambda wb: wb.sessions,
        table=SESSION_STATES,
        state_of=session_state,
        key="session",
        what="session",
        stop_note=keeps_running("session", ids, _command(args, "sessions", "stop", *ids)),
    )


def _session_table(args: argparse.Namespace, out: Output, session: Session, title: str) -> None:
    state = session_state(session)
    params = session.launch_parameters
    table = out.table("FIELD", "VALUE", title=title)
    table.add_row("state", Text(state or "-", style=state_style(state)))
    table.add_row("detail", shown(session.status_detail))
    table.add_row("name", shown(session.name or session.label))
    table.add_row("ide", shown(session.workbench))
    table.add_row("user", shown(session.username))
    table.add_row("url", _url(args, session.url))
    table.add_row("cluster", shown(params.cluster if params else None))
    table.add_row("image", shown(params.container_image if params else None))
    table.add_row("created", shown(session.created))
    table.add_row("last used", shown(session.last_used))
    out.print(table)


async def _sessions_get(args: argparse.Namespace, out: Output) -> int:
    async with connect(args) as wb:
        with user_input():
            session = await wb.sessions.get(args.id, user=args.user)
    out.emit({"session": session, "url": None if not session.url else _url(args, session.url)})
    _session_table(args, out, session, f"session {session.id}")
    return EXIT_OK


async def _sessions_history(args: argparse.Namespace, out: Output) -> int:
    async with connect(args) as wb:
        with user_input():
            listing = await wb.sessions.history(
                args.begin,
                args.end,
                include_jobs=args.jobs,
                include_all_users=args.all_users,
            )
    out.emit({"sessions": listing.sessions, "jobs": listing.jobs})
    if not listing.sessions:
        out.info("no ended sessions in that time")
    else:
        table = out.table("ID", "NAME", "IDE", "USER", "STATE", "CREATED")
        for s in listing.sessions:
            # The history carries no state: every session in it has ended.
            state = session_state(s) or "ended"
            table.add_row(
                s.id,
                s.name or s.label or "-",
                s.workbench or "-",
                s.username or "-",
                Text(state or "-", style=state_style(state)),
                shown(s.created),
            )
        out.print(table)
    if args.jobs and listing.jobs:
        out.print(_jobs_table(out, listing.jobs, title="their jobs"))
    return EXIT_OK


async def _sessions_resume(args: argparse.Namespace, out: Output) -> int:
    async with connect(args) as wb:
        with user_input():
            resumed = await wb.sessions.resume(args.id)
        entry: dict[str, Any] = {
            "id": resumed.id,
            "url": None if not resumed.url else _url(args, resumed.url),
            "state": None,
            "session": None,
            "error": None,
        }
        errors: list[BaseException] = []
        if args.wait:
            stop = _command(args, "sessions", "stop", resumed.id)
            with out.keeps_running(keeps_running("session", [resumed.id], stop)):
                waited, errors = await _wait_many(
                    out,
                    wb.sessions,
                    [(resumed.id, "")],
                    table=SESSION_STATES,
                    target="running",
                    wait_timeout=args.timeout,
                    state_of=session_state,
                    key="session",
                    title="waiting for the session to be running",
                )
            entry.update(state=waited[0]["state"], session=waited[0]["session"])
            entry["error"] = waited[0]["error"]
    out.emit(entry)
    if entry["error"] is None:
        out.info(f"session {resumed.id} resumed: {_url(args, resumed.url)}")
    return exit_for(errors)


async def _sessions_stop(args: argparse.Namespace, out: Output) -> int:
    ids = dedupe(args.ids)
    async with connect(args) as wb:
        with user_input():
            await wb.sessions.stop(ids, force=args.force, suspend=args.suspend)
    how = "force quit" if args.force else "suspend" if args.suspend else "stop"
    out.emit({"stopped": ids, "force": args.force, "suspend": args.suspend})
    out.info(f"{how} requested for {len(ids)} session(s): {', '.join(ids)}")
    return EXIT_OK


# --------------------------------------------------------------------------- jobs and audited jobs


@frozen
class _Kind:
    """Jobs or audited jobs: the same commands over ``wb.jobs`` or ``wb.audited_jobs``."""

    group: str  # the command group: "jobs" or "audited-jobs"
    what: str  # "job" or "audited job"
    audited: bool

    def of(self, wb: WorkbenchClient) -> JobsResource | AuditedJobsResource:
        return wb.audited_jobs if self.audited else wb.jobs


_JOBS = _Kind("jobs", "job", audited=False)
_AUDITED = _Kind("audited-jobs", "audited job", audited=True)


def _env_pairs(values: Sequence[str] | None) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in values or ():
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--env expects NAME=VALUE, got {item!r}")
        env[name] = value
    return env


def _stop_note(args: argparse.Namespace, kind: _Kind, job_id: str) -> str:
    return keeps_running(kind.what, [job_id], _command(args, kind.group, "stop", job_id))


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
                entries, _ = await _wait_many(
                    out,
                    resource,
                    [(job_id, (job.name or "") if job is not None else "")],
                    table=JOB_STATES,
                    target="Finished",
                    wait_timeout=remaining,
                    state_of=_job_state,
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


async def _jobs_launch(args: argparse.Namespace, out: Output, kind: _Kind = _JOBS) -> int:
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


async def _jobs_tail(args: argparse.Namespace, out: Output, kind: _Kind = _JOBS) -> int:
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
    quiet_after = min(_OUTPUT_QUIET, read_for)
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


async def _jobs_output(args: argparse.Namespace, out: Output, kind: _Kind = _JOBS) -> int:
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
            f"it with: {_command(args, kind.group, 'tail', job.id)}"
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


async def _jobs_get(args: argparse.Namespace, out: Output, kind: _Kind = _JOBS) -> int:
    async with connect(args) as wb:
        with user_input():
            job = await kind.of(wb).get(args.job_id)
    out.emit({"job": job, "state": job.state})
    _job_table(out, job, kind.what)
    return EXIT_OK


def _jobs_table(out: Output, jobs: Sequence[Job], *, title: str | None = None) -> Any:
    table = out.table("ID", "NAME", "STATUS", "EXIT", "CLUSTER", "SUBMITTED", title=title)
    for job in jobs:
        table.add_row(
            job.id,
            job.name or "-",
            Text(job.state, style="red" if job.failed else state_style(job.state)),
            "-" if job.exit_code is None else str(job.exit_code),
            job.cluster or "-",
            job.submission_time.isoformat(timespec="seconds") if job.submission_time else "-",
        )
    return table


async def _jobs_list(args: argparse.Namespace, out: Output) -> int:
    mine = [tag(OWNER_LABEL, owner_of(args))] if args.mine else None
    async with connect(args) as wb:
        jobs = await wb.jobs.list(tags=mine)
    out.emit({"jobs": jobs})
    if not jobs:
        out.info("no jobs")
        return EXIT_OK
    out.print(_jobs_table(out, jobs))
    return EXIT_OK


async def _jobs_reap(args: argparse.Namespace, out: Output) -> int:
    async with connect(args) as wb:
        jobs = await wb.jobs.list(tags=[tag(OWNER_LABEL, owner_of(args))])
        found = [Owned(j.id, j.name or "", j.submission_time) for j in jobs if not j.is_terminal]
        return await reap(args, out, found, wb.jobs.stop, what="job", verb="stop")


async def _jobs_wait(args: argparse.Namespace, out: Output, kind: _Kind = _JOBS) -> int:
    ids = dedupe(args.ids)
    return await _wait_ids(
        args,
        out,
        kind.of,
        table=JOB_STATES,
        state_of=_job_state,
        key="job",
        what=kind.what,
        stop_note=keeps_running(kind.what, ids, _command(args, kind.group, "stop", *ids)),
    )


async def _jobs_stop(args: argparse.Namespace, out: Output, kind: _Kind = _JOBS) -> int:
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


# --------------------------------------------------------------------------- users and clusters


async def _users(args: argparse.Namespace, out: Output) -> int:
    async with connect(args) as wb:
        users = await wb.users()
    out.emit({"users": users})
    if not users:
        out.info("no users")
        return EXIT_OK
    table = out.table("USERNAME", "STATUS", "ADMIN", "SUPER ADMIN", "LAST SIGN-IN")
    for user in users:
        table.add_row(
            user.username,
            shown(user.status),
            shown(user.is_admin),
            shown(user.is_super_admin),
            shown(user.last_sign_in),
        )
    out.print(table)
    return EXIT_OK


async def _compute_envs(args: argparse.Namespace, out: Output) -> int:
    async with connect(args) as wb:
        with user_input():
            envs = await wb.compute_envs(user=args.user)
    out.emit({"compute_envs": envs})
    table = out.table("CLUSTER", "TYPE", "CONTAINERS", "QUEUES", "IMAGES", "IDES")
    for env in envs.clusters:
        ides = [
            name
            for name, support in env.workbenches.items()
            if support.supports_interactive_sessions is not False
        ]
        table.add_row(
            env.name,
            shown(env.type),
            shown(env.supports_containers),
            ", ".join(env.queues) or "-",
            ", ".join(env.images) or "-",
            ", ".join(ides) or "-",
        )
    out.print(table)
    return EXIT_OK


# --------------------------------------------------------------------------- the tree


def _bind(handler: Callable[..., Any], kind: _Kind) -> Callable[[argparse.Namespace, Output], Any]:
    async def run(args: argparse.Namespace, out: Output) -> int:
        code: int = await handler(args, out, kind)
        return code

    return run


def _register_jobs(wb: CommandTree, kind: _Kind) -> None:
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
    timeout_option(p, _JOB_TIMEOUT, "if the job has not finished by then")
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
        default=_OUTPUT_READ_FOR,
        metavar="SECONDS",
        help="for a running job: read its output for this long at most, less once it is "
        f"quiet (default {_OUTPUT_READ_FOR:g})",
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
    timeout_option(p, _JOB_TIMEOUT, "if the job has not finished by then")

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
    timeout_option(p, _JOB_TIMEOUT, "if a job has not finished by then")

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


def register(tree: CommandTree) -> None:
    """Add ``aiocompute workbench ...`` to the command tree."""
    wb = tree.group(
        "workbench",
        help="Posit Workbench: launch and wait for sessions, run and tail jobs",
        description=(
            "Posit Workbench sessions and jobs.\n\n"
            "The server address comes from --server or $WORKBENCH_SERVER, the API token\n"
            "from $WORKBENCH_API_KEY (or --token, which other users can see)."
        ),
        example="WORKBENCH_SERVER=https://wb.example.com aiocompute workbench sessions list",
        options=[_connection_options],
    )
    wb.command(
        "version",
        help="show the server's version and features",
        description="Show the Workbench server's version and its enabled features.",
        example="aiocompute workbench version --json",
        handler=_server_version,
    )
    wb.command(
        "users",
        help="list the server's users (admin token)",
        description="List every user registered on the server (admin or super-admin token).",
        example="aiocompute workbench users --json",
        handler=_users,
    )
    p = wb.command(
        "compute-envs",
        help="list the clusters and IDEs you can launch on",
        description=(
            "List the compute environments (clusters) the server offers: their type,\n"
            "queues, container images and the IDEs they run."
        ),
        example="aiocompute workbench compute-envs --json",
        handler=_compute_envs,
    )
    p.add_argument("--user", help="what this user may use (admin token needed)")

    sessions = wb.group(
        "sessions",
        help="launch, list, read, wait for, resume and stop sessions",
        description="Interactive IDE sessions (RStudio, VS Code, JupyterLab, Positron...).",
        example="aiocompute workbench sessions launch 'VS Code' --name etl --wait",
    )
    p = sessions.command(
        "launch",
        help="launch one or many sessions",
        description=(
            "Launch a session of an IDE; --count N launches N of them concurrently\n"
            "(named NAME-1 ... NAME-N). With --wait, watch them until they are running.\n"
            "Prints each session's URL."
        ),
        example=[
            "aiocompute workbench sessions launch 'VS Code' --name etl --cluster Local --wait",
            "aiocompute workbench sessions launch RStudio --name class --count 20 --wait",
        ],
        handler=_sessions_launch,
    )
    p.add_argument("ide", metavar="IDE", help="RStudio, 'VS Code', JupyterLab, Positron...")
    p.add_argument("--name", required=True, help="session name (prefix with --count)")
    p.add_argument("--cluster", default="Local", help="compute environment (default Local)")
    p.add_argument("--image", help="container image (clusters that run containers)")
    p.add_argument("--count", type=at_least_one(), default=1, help="how many to launch (default 1)")
    p.add_argument("--wait", action="store_true", help="wait until they are running")
    timeout_option(p, _SESSION_TIMEOUT, "if a session is not running by then")

    p = sessions.command(
        "list",
        help="list live sessions",
        description="List live sessions (yours, or --user's with an admin token).",
        example="aiocompute workbench sessions list --json",
        handler=_sessions_list,
    )
    p.add_argument("--user", help="whose sessions (admin token needed for others)")

    p = sessions.command(
        "get",
        help="show a live session (with its URL)",
        description="Show a live session: its state, IDE, cluster, times and URL.",
        example="aiocompute workbench sessions get 3f2a9c1e",
        handler=_sessions_get,
    )
    p.add_argument("id", metavar="ID", help="session id")
    p.add_argument("--user", help="whose session (admin token needed for others)")

    p = sessions.command(
        "history",
        help="list sessions that have ended",
        description=(
            "List the sessions that ended between --begin and --end (ISO-8601 dates or\n"
            "times, UTC unless they say; either may be left out)."
        ),
        example="aiocompute workbench sessions history --begin 2025-07-01 --jobs",
        handler=_sessions_history,
    )
    p.add_argument("--begin", metavar="WHEN", help="ended at or after (e.g. 2025-07-01)")
    p.add_argument("--end", metavar="WHEN", help="ended at or before")
    p.add_argument("--jobs", action="store_true", help="also list their jobs")
    p.add_argument("--all-users", action="store_true", help="every user's (admin token needed)")

    p = sessions.command(
        "resume",
        help="resume a suspended session",
        description=(
            "Resume a suspended session and print its URL; --wait watches it until it\n"
            "is running again (exit code 3 if it does not get there in time)."
        ),
        example="aiocompute workbench sessions resume 3f2a9c1e --wait",
        handler=_sessions_resume,
    )
    p.add_argument("id", metavar="ID", help="session id")
    p.add_argument("--wait", action="store_true", help="wait until it is running")
    timeout_option(p, _SESSION_TIMEOUT, "if it is not running by then")

    p = sessions.command(
        "wait",
        help="wait until sessions reach a state",
        description=(
            "Wait until every session reaches a state (default running), showing progress.\n"
            "Exit code 3 if one times out or can no longer get there (e.g. it failed)."
        ),
        example="aiocompute workbench sessions wait 3f2a9c1e 77b0d2aa --timeout 120",
        handler=_sessions_wait,
    )
    p.add_argument("ids", nargs="+", metavar="ID", help="session ids")
    p.add_argument("--until", default="running", metavar="STATE", help="default running")
    timeout_option(p, _SESSION_TIMEOUT, "if a session is not there by then")

    p = sessions.command(
        "stop",
        help="stop (or suspend, or force quit) sessions",
        description="Ask the server to stop sessions; returns without waiting for them.",
        example="aiocompute workbench sessions stop 3f2a9c1e --force",
        handler=_sessions_stop,
    )
    p.add_argument("ids", nargs="+", metavar="ID", help="session ids")
    p.add_argument("--force", action="store_true", help="force quit (kill) the sessions")
    p.add_argument("--suspend", action="store_true", help="suspend instead (RStudio)")

    _register_jobs(wb, _JOBS)
    _register_jobs(wb, _AUDITED)
