"""``aiocompute etengine ...``: ET Engine batches and their jobs from the command line.

The API key comes from ``--key`` or (preferably) ``$ET_ENGINE_API_KEY``, the API base from
``--url`` or ``$ET_ENGINE_URL`` (default: ET Engine's).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from rich.table import Table
from rich.text import Text

from .._core.fanout import fan_out
from ..etengine._states import BATCH_STATES
from ..etengine.client import DEFAULT_URL, ETEngineClient
from ..etengine.models import BatchJob, BatchStatus, Hardware
from ._app import EXIT_API, EXIT_NOT_FOUND, EXIT_OK, CommandTree, UsageError
from ._common import (
    at_least_one,
    command_line,
    connection_option,
    dedupe,
    exit_for,
    for_each,
    new_client,
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
from ._output import Output, short_reason, state_style, to_data
from ._owned import confirmed

__all__ = ["batch_counts_table", "connect", "parse_args_pairs", "register"]

KEY_ENV = "ET_ENGINE_API_KEY"
URL_ENV = "ET_ENGINE_URL"

_BATCH_TIMEOUT = 3600.0
#: Status reads in flight at once (``batches status``), unless --concurrency says.
_STATUS_CONCURRENCY = 8
_DONE = frozenset({"succeeded", "failed"})
#: Reads in flight at once for the STATE / STATUS columns of the listings.
_LIST_CONCURRENCY = 8

T = TypeVar("T")


# --------------------------------------------------------------------------- configuration


def _connection_options(parser: argparse.ArgumentParser) -> None:
    connection_option(
        parser, "--url", metavar="URL", help=f"API base (default: ${URL_ENV}, else {DEFAULT_URL})"
    )
    secret_option(parser, "--key", metavar="API_KEY", what="API key", env=KEY_ENV)


def connect(args: argparse.Namespace) -> ETEngineClient:
    """A client from ``--url`` / ``--key``, else ``$ET_ENGINE_URL`` / ``$ET_ENGINE_API_KEY``;
    :class:`UsageError` (exit 2) naming what is missing."""
    key = secret(args, "key", KEY_ENV, "--key", what="ET Engine API key")
    url = setting(args, "url", URL_ENV, "--url")
    # A ConfigError is not expected (the key was checked above).
    with new_client("invalid ET Engine API address"):
        return ETEngineClient(api_key=key, base_url=url)


# --------------------------------------------------------------------------- helpers


def _running_note(args: argparse.Namespace, ids: Sequence[str]) -> str:
    """What Ctrl-C during a wait leaves behind: the batches run on (the API cannot stop
    jobs); deleting their records is all there is."""
    which = f"batch {ids[0]} keeps" if len(ids) == 1 else f"{len(ids)} batches keep"
    delete = command_line(args, "etengine", "batches", "delete", *ids)
    return f"{which} running (ET Engine cannot stop jobs); delete the records with: {delete}"


async def _read_each(
    out: Output, ids: Sequence[str], read: Callable[[str], Awaitable[T]], what: str
) -> tuple[dict[str, T], dict[str, BaseException]]:
    """``read(id)`` for every id, a few at a time: what was read, and what could not be (each
    said on stderr)."""
    if not ids:
        return {}, {}
    result = await fan_out(read, ids, concurrency=min(_LIST_CONCURRENCY, len(ids)))
    found = {o.item: o.unwrap() for o in result.outcomes if o.ok}
    failed: dict[str, BaseException] = dict(result.errors)
    for one, error in failed.items():
        out.problem(f"could not read the {what} of {one}: {type(error).__name__}: {error}")
    return found, failed


def parse_args_pairs(values: Sequence[str] | None, option: str) -> list[tuple[str, Any]]:
    """``NAME=VALUE`` (a string) or ``NAME:=JSON`` (a number, true, a list...) pairs."""
    pairs: list[tuple[str, Any]] = []
    for item in values or ():
        name, sep, value = item.partition("=")
        if not sep or not name or name == ":":
            raise UsageError(f"{option} expects NAME=VALUE or NAME:=JSON, got {item!r}")
        if name.endswith(":"):
            name = name[:-1]
            try:
                parsed: Any = json.loads(value)
            except ValueError:
                raise UsageError(
                    f'{option} {name}:= must be followed by JSON (e.g. 3, true, "text"), '
                    f"got {value!r}"
                ) from None
            pairs.append((name, parsed))
        else:
            pairs.append((name, value))
    return pairs


def _variable_args(values: Sequence[str] | None) -> list[dict[str, Any]]:
    """One job per value: the n-th ``--var`` of each name goes to job n."""
    columns: dict[str, list[Any]] = {}
    for name, value in parse_args_pairs(values, "--var"):
        columns.setdefault(name, []).append(value)
    if not columns:
        return []
    sizes = {name: len(vals) for name, vals in columns.items()}
    if len(set(sizes.values())) > 1:
        counts = ", ".join(f"{name} {n}" for name, n in sizes.items())
        raise UsageError(
            f"every --var name needs one value per job, but the counts differ ({counts})"
        )
    n_jobs = next(iter(sizes.values()))
    return [{name: vals[i] for name, vals in columns.items()} for i in range(n_jobs)]


def _state(status: BatchStatus | None) -> str | None:
    return None if status is None else status.state


def batch_counts_table(
    out: Output,
    rows: Sequence[tuple[str, BatchStatus | None, BaseException | None]],
    *,
    title: str | None = None,
) -> Table:
    """A table of the job counts of batches: one row per ``(batch id, status, error)``.

    Unfinished jobs are summed up by phase (``running 3, pending 1``) to keep it narrow."""
    table = out.table("BATCH", "STATE", "JOBS", "SUCCEEDED", "FAILED", "UNFINISHED", title=title)
    for batch_id, status, error in rows:
        if status is None:
            reason = type(error).__name__ if error is not None else "-"
            table.add_row(batch_id, Text(reason, style="red"), "-", "-", "-", "-")
            continue
        unfinished = [(name, n) for name, n in status.counts.items() if n and name not in _DONE]
        if status.total > status.counted:
            unfinished.append(("not registered yet", status.total - status.counted))
        table.add_row(
            batch_id,
            Text(status.state, style=state_style(status.state)),
            str(status.total),
            Text(str(status.succeeded), style="green" if status.succeeded else "dim"),
            Text(str(status.failed), style="red" if status.failed else "dim"),
            ", ".join(f"{name} {n}" for name, n in unfinished) or "-",
        )
    return table


def _status_data(status: BatchStatus) -> dict[str, Any]:
    return {
        "state": status.state,
        "counts": status.counts,
        "done": status.done,
        "total": status.total,
        "n_jobs": status.n_jobs,
    }


# --------------------------------------------------------------------------- batches


async def _batches_list(args: argparse.Namespace, out: Output) -> int:
    async with connect(args) as et:
        batches = await et.batches.list()
        # The listing has no state: it comes from each batch's job counts.
        statuses, failed = await _read_each(
            out, [b.batch_id for b in batches], et.batches.status, "status"
        )
    entries = []
    for b in batches:
        status = statuses.get(b.batch_id)
        entries.append({**to_data(b), "state": None if status is None else status.state})
    out.emit({"batches": entries, "errors": failed})
    if not batches:
        out.info("no batches")
        return EXIT_OK
    table = out.table("BATCH", "TOOL", "STATE", "JOBS", "CPU", "MEMORY (MB)", "FILESYSTEMS")
    for b in batches:
        hw = b.hardware
        status = statuses.get(b.batch_id)
        error = failed.get(b.batch_id)
        state = (
            Text(status.state, style=state_style(status.state))
            if status is not None
            else Text(short_reason(error) if error is not None else "-", style="red")
        )
        table.add_row(
            b.batch_id,
            shown(b.tool),
            state,
            shown(b.n_jobs),
            shown(hw.cpu if hw else None),
            shown(hw.memory if hw else None),
            ", ".join(hw.filesystem_ids) if hw and hw.filesystem_ids else "-",
        )
    out.print(table)
    return exit_for(failed.values())


async def _batches_status(args: argparse.Namespace, out: Output) -> int:
    ids = dedupe(args.ids)
    async with connect(args) as et:
        result = await fan_out(et.batches.status, ids, concurrency=min(args.concurrency, len(ids)))
    rows: list[tuple[str, BatchStatus | None, BaseException | None]] = []
    entries: list[dict[str, Any]] = []
    for outcome in result.outcomes:
        status = outcome.value if outcome.ok else None
        rows.append((outcome.item, status, outcome.error))
        entry: dict[str, Any] = {"id": outcome.item, "error": outcome.error}
        entry.update(_status_data(status) if status is not None else {"state": None})
        entries.append(entry)
    out.emit({"batches": entries})
    out.print(batch_counts_table(out, rows))
    for batch_id, error in result.errors:
        out.problem(f"{batch_id}: {type(error).__name__}: {error}")
    return exit_for(error for _, error in result.errors)


async def _batches_wait(args: argparse.Namespace, out: Output) -> int:
    target = target_state(BATCH_STATES, args.until, "batch")
    ids = dedupe(args.ids)
    async with connect(args) as et:
        with out.keeps_running(_running_note(args, ids)):
            waited = await wait_and_show(
                out,
                et.batches,
                [(one, "") for one in ids],
                table=BATCH_STATES,
                until=target,
                timeout=args.timeout,
                state_of=_state,
                title=f"waiting for {len(ids)} batch(es) to be {target}",
            )
    entries = [waited_data(w, "status") for w in waited]
    out.emit({"batches": entries})
    return exit_for(w.error for w in waited)


_NOT_STOPPED = "(jobs still running go on: the API cannot cancel them)"


async def _batches_delete_all(args: argparse.Namespace, out: Output) -> int:
    async with connect(args) as et:
        batches = await et.batches.list()
        ids = [b.batch_id for b in batches]
        if not ids:
            out.emit({"deleted": [], "all": True})
            out.info("no batches to delete")
            return EXIT_OK
        question = (
            f"Delete the records of all {len(ids)} of your batches "
            f"({', '.join(ids[:3])}{', ...' if len(ids) > 3 else ''})? {_NOT_STOPPED}"
        )
        if not args.yes and not confirmed(question):
            out.emit({"deleted": [], "all": True})
            out.warn("nothing deleted")
            return EXIT_OK
        await et.batches.delete_all()
    out.emit({"deleted": ids, "all": True})
    out.info(f"deleted the records of all {len(ids)} batch(es) {_NOT_STOPPED}")
    return EXIT_OK


async def _batches_delete(args: argparse.Namespace, out: Output) -> int:
    if args.all:
        if args.ids:
            raise UsageError("give batch ids or --all, not both")
        return await _batches_delete_all(args, out)
    if not args.ids:
        raise UsageError("which batches? give their ids (or --all for every one)")
    ids = dedupe(args.ids)
    async with connect(args) as et:
        # The API answers a delete with 200 whether or not the batch exists: look first, so
        # that a batch that is not there is said to be missing rather than "deleted".
        listed = {b.batch_id for b in await et.batches.list()}
        missing = [one for one in ids if one not in listed]
        present = [one for one in ids if one in listed]
        done, failed = await for_each(out, present, et.batches.delete, what="delete")
    out.emit({"deleted": done, "missing": missing, "errors": failed})
    if done:
        out.info(f"deleted the records of {len(done)} batch(es): {', '.join(done)} {_NOT_STOPPED}")
    for one in missing:
        out.problem(f"batch {one} was not there: nothing to delete")
    code = exit_for(failed.values())
    if code == EXIT_OK and missing:
        return EXIT_NOT_FOUND
    return code


async def _batches_submit(args: argparse.Namespace, out: Output) -> int:
    fixed = dict(parse_args_pairs(args.arg, "--arg"))
    variable = _variable_args(args.var)
    with user_input():
        hardware = Hardware(cpu=args.cpu, memory=args.memory, filesystems=args.filesystem or ())
    async with connect(args) as et:
        with user_input():
            batch = await et.batches.create(
                args.tool_id, fixed_args=fixed, variable_args=variable, hardware=hardware
            )
        if batch.batch_id is None:
            out.emit({"batch": batch, "state": None, "error": None})
            out.problem(
                f"the batch of {batch.n_jobs} job(s) was submitted, but the server did not "
                "say its id: find it with 'aiocompute etengine batches list'"
            )
            return EXIT_API if args.wait else EXIT_OK
        if not args.wait:
            out.emit({"batch": batch, "state": None, "error": None})
            out.info(f"batch {batch.batch_id} submitted: {batch.n_jobs} job(s) of {args.tool_id}")
            return EXIT_OK
        out.info(f"batch {batch.batch_id} submitted: {batch.n_jobs} job(s) of {args.tool_id}")
        with out.keeps_running(_running_note(args, [batch.batch_id])):
            waited = await wait_and_show(
                out,
                et.batches,
                [(batch.batch_id, args.tool_id)],
                table=BATCH_STATES,
                until="succeeded",
                timeout=args.timeout,
                state_of=_state,
                title="waiting for the batch to finish",
            )
    entry = waited[0]
    status: BatchStatus | None = entry.resource
    if status is not None:
        out.print(batch_counts_table(out, [(batch.batch_id, status, entry.error)]))
    out.emit(
        {
            "batch": batch,
            "state": entry.state,
            "status": _status_data(status) if status is not None else None,
            "error": entry.error,
        }
    )
    return exit_for([entry.error])


# --------------------------------------------------------------------------- jobs


async def _jobs_list(args: argparse.Namespace, out: Output) -> int:
    async with connect(args) as et:
        with user_input():
            jobs = await et.jobs.list(args.batch_id)

        # The listing has no status: it comes from each job's own record.
        async def read(job_id: str) -> BatchJob:
            return await et.jobs.get(args.batch_id, job_id)

        details, failed = await _read_each(out, [j.job_id for j in jobs], read, "status")
    entries = []
    for job in jobs:
        detail = details.get(job.job_id)
        state = None if detail is None else detail.state
        entries.append({**to_data(job), "state": state, "reason": detail and detail.reason})
    out.emit({"batch_id": args.batch_id, "jobs": entries, "errors": failed})
    if not jobs:
        out.info(f"batch {args.batch_id} lists no jobs (yet)")
        return EXIT_OK
    table = out.table(
        "JOB", "TOOL", "STATUS", "LOG", "ARGUMENTS", title=f"jobs of batch {args.batch_id}"
    )
    for job in jobs:
        tool = job.job_tool.tool_id if job.job_tool is not None else job.tool_id
        detail = details.get(job.job_id)
        error = failed.get(job.job_id)
        status = (
            Text(detail.state, style=state_style(detail.state))
            if detail is not None
            else Text(short_reason(error) if error is not None else "-", style="red")
        )
        table.add_row(job.job_id, shown(tool), status, shown(job.log), _arguments(job))
    out.print(table)
    return exit_for(failed.values())


def _arguments(job: BatchJob) -> str:
    args = job.arguments
    if not args:
        return "-"
    return ", ".join(
        f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in args.items()
    )


async def _jobs_get(args: argparse.Namespace, out: Output) -> int:
    async with connect(args) as et:
        with user_input():
            job = await et.jobs.get(args.batch_id, args.job_id)
    out.emit({"batch_id": args.batch_id, "job": job, "state": job.state})
    table = out.table("FIELD", "VALUE", title=f"job {job.job_id}")
    table.add_row("status", Text(job.state, style=state_style(job.state)))
    table.add_row("reason", shown(job.reason))
    table.add_row("arguments", _arguments(job))
    if job.hardware is not None:
        hw = job.hardware
        table.add_row("hardware", f"{shown(hw.cpu)} CPU, {shown(hw.memory)} MB")
        table.add_row("filesystems", ", ".join(hw.filesystems) or "-")
    table.add_row("log", shown(job.log))
    table.add_row("created", shown(job.create_time))
    table.add_row("started", shown(job.start_time))
    table.add_row("stopped", shown(job.stop_time))
    out.print(table)
    return EXIT_OK


# --------------------------------------------------------------------------- the tree


def register(tree: CommandTree) -> None:
    """Add ``aiocompute etengine ...`` to the command tree."""
    etengine = tree.group(
        "etengine",
        help="ET Engine: submit, watch and query batches of jobs",
        description=(
            "ET Engine batches (a tool run once per set of arguments) and their jobs.\n\n"
            f"The API key comes from ${KEY_ENV} (or --key, which other users can see);\n"
            f"the API base from --url or ${URL_ENV} (default: ET Engine's)."
        ),
        example="aiocompute etengine batches submit tool-sim --var seed=1 --var seed=2 --wait",
        options=[_connection_options],
    )
    batches = etengine.group(
        "batches",
        help="submit, list, read, wait for and delete batches",
        description=(
            "A batch's state comes from its job counts: the furthest phase an unfinished\n"
            "job has reached, then succeeded (no job failed) or failed."
        ),
        example="aiocompute etengine batches status 5b1e0c2a-7f3d-4a9b-a1c4-2e8f6d0b9a73",
    )
    p = batches.command(
        "list",
        help="list your batches",
        description=(
            "List your batches with their state, tool, job count and hardware (the state\n"
            "is read from each batch's job counts, a few at a time)."
        ),
        example="aiocompute etengine batches list --json",
        handler=_batches_list,
    )

    p = batches.command(
        "status",
        help="show the job counts of batches (read concurrently)",
        description=(
            "Read the status of every batch, a few at a time, and show how many of its\n"
            "jobs are in each phase. Exit code 1 if a batch could not be read."
        ),
        example="aiocompute etengine batches status 5b1e0c2a-7f3d-4a9b-a1c4-2e8f6d0b9a73 --json",
        handler=_batches_status,
    )
    p.add_argument("ids", nargs="+", metavar="ID", help="batch ids")
    p.add_argument(
        "--concurrency",
        type=at_least_one(),
        default=_STATUS_CONCURRENCY,
        metavar="N",
        help=f"reads in flight at once (default {_STATUS_CONCURRENCY})",
    )

    p = batches.command(
        "wait",
        help="wait until batches finish",
        description=(
            "Wait until every batch reaches a state (default succeeded), showing progress.\n"
            "Exit code 3 if one times out or cannot get there (a job failed)."
        ),
        example=(
            "aiocompute etengine batches wait 5b1e0c2a-7f3d-4a9b-a1c4-2e8f6d0b9a73 --timeout 60"
        ),
        handler=_batches_wait,
    )
    p.add_argument("ids", nargs="+", metavar="ID", help="batch ids")
    p.add_argument(
        "--until",
        default="succeeded",
        metavar="STATE",
        help="submitted, pending, runnable, starting, running, succeeded or failed "
        "(default succeeded)",
    )
    timeout_option(p, _BATCH_TIMEOUT, "if a batch has not finished by then")

    p = batches.command(
        "delete",
        help="delete the records of batches (or of all of them)",
        description=(
            "Delete batches' records. Their running jobs are NOT stopped: the API has\n"
            "no way to cancel a job. A batch that is not there is said so, with exit\n"
            "code 4. --all deletes every batch of yours, after asking (--yes: don't ask)."
        ),
        example=[
            "aiocompute etengine batches delete 5b1e0c2a-7f3d-4a9b-a1c4-2e8f6d0b9a73",
            "aiocompute etengine batches delete --all --yes",
        ],
        handler=_batches_delete,
    )
    p.add_argument("ids", nargs="*", metavar="ID", help="batch ids")
    p.add_argument("--all", action="store_true", help="delete every batch of yours")
    p.add_argument("--yes", action="store_true", help="with --all: do not ask for confirmation")

    p = batches.command(
        "submit",
        help="run a tool as a batch of jobs",
        description=(
            "Run a tool as a batch: one job per value of the --var options (the n-th\n"
            "--var of each name goes to job n; give every name the same number of\n"
            "values), or a single job without any. --arg values go to every job.\n"
            "NAME=VALUE passes a string; NAME:=JSON a number, true/false, a list...\n"
            "With --wait, watch it until every job has finished (exit code 3 if one\n"
            "failed)."
        ),
        example=[
            "aiocompute etengine batches submit tool-sim --var seed:=1 --var seed:=2 --wait",
            "aiocompute etengine batches submit tool-hello --arg greeting=hi --cpu 2",
        ],
        handler=_batches_submit,
    )
    p.add_argument("tool_id", metavar="TOOL_ID", help="the tool to run")
    p.add_argument(
        "--var",
        action="append",
        metavar="NAME=VALUE",
        help="an argument of one job (repeatable: one job per value)",
    )
    p.add_argument("--arg", action="append", metavar="NAME=VALUE", help="an argument of every job")
    p.add_argument("--cpu", type=at_least_one(), default=1, help="CPUs per job (default 1)")
    p.add_argument("--memory", type=at_least_one(), default=256, metavar="MB", help="default 256")
    p.add_argument(
        "--filesystem", action="append", metavar="ID", help="mount a filesystem (repeatable)"
    )
    p.add_argument("--wait", action="store_true", help="wait until every job has finished")
    timeout_option(p, _BATCH_TIMEOUT, "if the batch has not finished by then")

    jobs = etengine.group(
        "jobs",
        help="list and read the jobs of a batch",
        description="The jobs of a batch: their arguments, status and times (no logs).",
        example="aiocompute etengine jobs list 5b1e0c2a-7f3d-4a9b-a1c4-2e8f6d0b9a73",
    )
    p = jobs.command(
        "list",
        help="list the jobs of a batch",
        description=(
            "List a batch's jobs with their status, tool, log id and arguments (the status\n"
            "is read from each job's record, a few at a time)."
        ),
        example="aiocompute etengine jobs list 5b1e0c2a-7f3d-4a9b-a1c4-2e8f6d0b9a73 --json",
        handler=_jobs_list,
    )
    p.add_argument("batch_id", metavar="BATCH_ID", help="batch id")

    p = jobs.command(
        "get",
        help="show one job",
        description="Show a job: its status (and why it failed), arguments, hardware and times.",
        example=(
            "aiocompute etengine jobs get 5b1e0c2a-7f3d-4a9b-a1c4-2e8f6d0b9a73 "
            "c4a1e9d2-0b7f-4e3a-9d5c-6f2b8a1e0d47"
        ),
        handler=_jobs_get,
    )
    p.add_argument("batch_id", metavar="BATCH_ID", help="batch id")
    p.add_argument("job_id", metavar="JOB_ID", help="job id")
