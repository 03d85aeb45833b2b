"""Workbench job output streams against the emulator over loopback HTTP: live delivery,
framings, errors mid-stream, resuming after drops and stalls, timeouts that must not cut a
stream, connections released on early exit, and the line / collect helpers."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any, Literal

import anyio
import pytest

from aiocompute import (
    JobSpec,
    NotFoundError,
    ResumePolicy,
    ServerError,
    StreamDecodeError,
    Timeouts,
    TransportError,
    WorkbenchClient,
)
from aiocompute.emulator import Emulator, EmulatorConfig, FaultConfig, WorkbenchEmulatorConfig
from aiocompute.emulator.workbench import JobRecord
from aiocompute.workbench import OutputChunk, OutputLine
from helpers import QUICK_RESUME, make_emulator_on_loop_clock

FAST = WorkbenchEmulatorConfig(
    job_pending_delay=0.01,
    job_chunk_count=4,
    job_chunk_interval=0.01,
    session_launch_delay=0.01,
    session_pending_delay=0.01,
    session_starting_delay=0.01,
)
# Quick reconnects: the default backoff is fine in production, slow in a test.


pytestmark = [pytest.mark.emulator(seed=9, workbench=FAST), pytest.mark.virtual_time]


@pytest.fixture
async def wb(emu: Emulator) -> AsyncIterator[WorkbenchClient]:
    async with WorkbenchClient(emu.workbench_url, token="user-token") as client:
        yield client


def job_spec(*args: str) -> JobSpec:
    return JobSpec(name="out", cluster="Local", exe="Rscript", args=list(args))


@contextlib.asynccontextmanager
async def on_loop_clock() -> AsyncIterator[tuple[Emulator, WorkbenchClient]]:
    """The module's emulator and client, for a test on virtual time (no async fixture
    reaches its loop)."""
    async with (
        make_emulator_on_loop_clock(seed=9, workbench=FAST) as emu,
        WorkbenchClient(emu.workbench_url, token="user-token") as wb,
    ):
        yield emu, wb


def expected(record: JobRecord) -> list[tuple[str, str]]:
    """The job's whole output as the emulator produces it: (outputType, output) per chunk."""
    return [record.chunk(i) for i in range(record.total_chunks)]


def by_channel(pairs: list[tuple[str, str]]) -> dict[str, str]:
    out: dict[str, str] = {"stdout": "", "stderr": ""}
    for kind, text in pairs:
        out[kind] += text
    return out


def pairs(chunks: list[OutputChunk]) -> list[tuple[str, str]]:
    return [(c.output_type, c.output) for c in chunks]


def acquired(wb: WorkbenchClient) -> int:
    """Connections the client's pool has handed out and not got back (private, test only)."""
    session = wb._transport._pool.session
    assert session is not None
    return len(session.connector._acquired)  # type: ignore[union-attr]


async def drain(stream: AsyncIterator[OutputChunk], into: list[OutputChunk]) -> None:
    """Read a stream to its end (or error), keeping what came."""
    async for chunk in stream:
        into.append(chunk)


async def server_serves_no_stream(emu: Emulator) -> bool:
    """Whether the emulator has stopped serving every output stream. It notices a client
    gone at its next write, so give it a moment (bounded)."""
    for _ in range(100):
        if emu.open_streams == 0:
            return True
        await anyio.sleep(0.02)
    return False


def ndjson_size(record: JobRecord, index: int) -> int:
    """Bytes of chunk ``index`` of a job's output stream on the wire (NDJSON framing)."""
    kind, text = record.chunk(index)
    value = {"jobId": record.launcher_id, "outputType": kind, "output": text}
    return len(json.dumps(value, separators=(",", ":"))) + 1


async def settle() -> None:
    """Let finalizers of abandoned async generators (scheduled as tasks) run."""
    for _ in range(5):
        await asyncio.sleep(0)


# -- live delivery and framing ------------------------------------------------------------


# On virtual time: a chunk's arrival is exact on the loop's clock, however busy the machine
async def test_chunks_arrive_while_the_job_runs() -> None:
    async with on_loop_clock() as (emu, wb):
        job = await wb.jobs.launch(
            job_spec("--emu-pending=0", "--emu-chunks=5", "--emu-interval=0.1")
        )
        record = emu.workbench.jobs[job.id]
        received: list[tuple[OutputChunk, str, int]] = []
        async for chunk in wb.jobs.output(job.id):
            now = anyio.current_time()  # the emulator's clock too (the loop's)
            received.append((chunk, record.status_at(now), record.chunks_at(now)))
    _, status_then, produced_then = received[0]
    assert status_then == "Running"  # the first chunk came before the job finished
    assert produced_then < 5  # and before the last chunk was even produced
    assert pairs([c for c, _, _ in received]) == expected(record)
    assert emu.stats["workbench.get_job_output"] == 1


async def test_framings_yield_the_same_chunks() -> None:
    seen: dict[str, tuple[str, list[tuple[str, str]]]] = {}
    framings: tuple[Literal["ndjson", "concatenated", "pretty"], ...] = (
        "ndjson",
        "concatenated",
        "pretty",
    )
    for framing in framings:
        config = WorkbenchEmulatorConfig(
            job_pending_delay=0.01, job_chunk_interval=0.005, stream_framing=framing
        )
        async with (
            make_emulator_on_loop_clock(config=EmulatorConfig(workbench=config), seed=21) as emu,
            WorkbenchClient(emu.workbench_url, token="user-token") as wb,
        ):
            job = await wb.jobs.launch(
                job_spec("--emu-chunks=6", "--emu-stderr-every=3", "--emu-bytes=300")
            )
            chunks = [c async for c in wb.jobs.output(job.id)]
            assert pairs(chunks) == expected(emu.workbench.jobs[job.id])
        assert [c.output_type for c in chunks] == ["stdout", "stdout", "stderr"] * 2
        assert all(len(c.output) == 300 for c in chunks)
        seen[framing] = (job.id, pairs(chunks))
    # One seed gives one job id and one output, whatever the framing on the wire.
    assert seen["ndjson"] == seen["concatenated"] == seen["pretty"]


async def test_finished_job_replays_everything(wb: WorkbenchClient, emu: Emulator) -> None:
    job = await wb.jobs.launch(job_spec("--emu-chunks=3"))
    await wb.jobs.wait(job.id, timeout=5)
    chunks = [c async for c in wb.jobs.output(job.id)]
    assert pairs(chunks) == expected(emu.workbench.jobs[job.id])


async def test_output_of_unknown_job_is_not_found(wb: WorkbenchClient) -> None:
    with pytest.raises(NotFoundError):
        async for _ in wb.jobs.output("0123456789abcdef"):
            pass


# -- faults -------------------------------------------------------------------------------


async def test_error_object_mid_stream(wb: WorkbenchClient, emu: Emulator) -> None:
    emu.faults.stream_error_after_chunks = 2
    job = await wb.jobs.launch(job_spec("--emu-chunks=5"))
    got: list[OutputChunk] = []
    with pytest.raises(ServerError) as info:
        await drain(wb.jobs.output(job.id, resume=QUICK_RESUME), got)
    assert pairs(got) == expected(emu.workbench.jobs[job.id])[:2]
    assert info.value.code == 500
    assert "emulated failure while streaming" in info.value.message
    # An error the server states is an answer, not a broken connection: no reconnect.
    assert emu.stats["workbench.get_job_output"] == 1


@pytest.mark.parametrize("framing", ["ndjson", "concatenated"])
async def test_dropped_connection_resumes_without_loss_or_repeat(
    framing: Literal["ndjson", "concatenated"],
) -> None:
    config = WorkbenchEmulatorConfig(
        job_pending_delay=0.0, job_chunk_interval=0.01, stream_framing=framing
    )
    faults = FaultConfig(drop_stream_after_bytes=250, drop_stream_count=3)
    async with (
        make_emulator_on_loop_clock(
            config=EmulatorConfig(workbench=config, faults=faults), seed=4
        ) as emu,
        WorkbenchClient(emu.workbench_url, token="user-token") as wb,
    ):
        job = await wb.jobs.launch(job_spec("--emu-chunks=12", "--emu-stderr-every=4"))
        chunks = [c async for c in wb.jobs.output(job.id, resume=QUICK_RESUME)]
        record = emu.workbench.jobs[job.id]
        assert emu.stats["faults.drop_stream"] == 3
        assert emu.stats["workbench.get_job_output"] == 4
        # Nothing lost, nothing repeated, each channel in order.
        assert by_channel(pairs(chunks)) == by_channel(expected(record))
        assert pairs(chunks) == expected(record)

        # An undisturbed read of the same job gives the same output.
        undisturbed = await wb.jobs.collect(job.id)
        assert undisturbed.stdout == by_channel(pairs(chunks))["stdout"]
        assert undisturbed.stderr == by_channel(pairs(chunks))["stderr"]


async def test_dropped_connection_of_a_live_job(wb: WorkbenchClient, emu: Emulator) -> None:
    emu.faults.drop_stream_after_bytes = 200
    emu.faults.drop_stream_count = 2
    job = await wb.jobs.launch(job_spec("--emu-chunks=8", "--emu-interval=0.03"))
    collected = await wb.jobs.collect(job.id, resume=QUICK_RESUME)
    record = emu.workbench.jobs[job.id]
    assert collected.stdout == record.full_output()
    assert len(collected.chunks) == 8
    assert emu.stats["faults.drop_stream"] == 2


# On virtual time: the job ends during the reconnect's latency on the loop's clock, always
async def test_audited_job_resumed_into_its_finished_output() -> None:
    async with on_loop_clock() as (emu, wb):
        job = await wb.audited_jobs.launch(
            job_spec(
                "--emu-pending=0.05",
                "--emu-chunks=4",
                "--emu-interval=0.05",
                "--emu-stderr-every=2",
            )
        )
        record = emu.workbench.audited_jobs[job.id]
        sizes = [
            len(json.dumps(_live_value(record, i), separators=(",", ":"))) + 1 for i in range(2)
        ]
        # Cut the first stream inside its third object; by the time the reconnect is answered
        # (held back by latency) the job has finished, so the answer is its whole output.
        emu.faults.drop_stream_after_bytes = sum(sizes) + 10
        emu.faults.drop_stream_count = 1
        got: list[OutputChunk] = []
        async for chunk in wb.audited_jobs.output(job.id, resume=QUICK_RESUME):
            got.append(chunk)
            if len(got) == 2:
                emu.faults.latency["workbench.get_audited_job_output"] = 0.4
    assert [c.output_source for c in got] == ["job_launcher"] * 2 + ["audit_details_store"]
    assert [c.output_type for c in got[:2]] == ["stdout", "stderr"]
    # Nothing repeated, nothing lost: the whole output, once.
    assert "".join(c.output for c in got) == record.full_output()
    assert emu.stats["faults.drop_stream"] == 1


def _live_value(record: JobRecord, index: int) -> dict[str, str]:
    kind, text = record.chunk(index)
    return {
        "jobId": record.launcher_id,
        "outputType": kind,
        "output": text,
        "outputSource": "job_launcher",
    }


async def test_stream_cut_inside_a_value_is_resumed(wb: WorkbenchClient, emu: Emulator) -> None:
    # "truncated" ends the stream cleanly in the middle of an object: a cut, not garbage.
    emu.faults.malformed["workbench.get_job_output"] = "truncated"
    opened = 0

    def heal_after_first(record: Any) -> None:
        nonlocal opened
        if record.method == "get_job_output":
            opened += 1
            if opened == 2:
                emu.faults.malformed.clear()

    emu.hooks.append(heal_after_first)
    job = await wb.jobs.launch(job_spec("--emu-chunks=3"))
    collected = await wb.jobs.collect(job.id, resume=QUICK_RESUME)
    assert collected.stdout == emu.workbench.jobs[job.id].full_output()
    assert emu.stats["workbench.get_job_output"] == 2


async def test_garbage_in_the_stream_is_not_resumed(wb: WorkbenchClient, emu: Emulator) -> None:
    emu.faults.malformed["workbench.get_job_output"] = "garbage"
    job = await wb.jobs.launch(job_spec("--emu-chunks=3"))
    got: list[OutputChunk] = []
    with pytest.raises(StreamDecodeError) as info:
        await drain(wb.jobs.output(job.id, resume=QUICK_RESUME), got)
    # The first object should come out before the error; it does only when the garbage
    # arrives in a later read: JSONStreamDecoder.feed() drops the values it completed in the
    # same call as an error (reported; loopback usually delivers both in one read).
    assert len(got) <= 1
    assert pairs(got) == expected(emu.workbench.jobs[job.id])[: len(got)]
    assert info.value.offset > 0
    assert not info.value.truncated
    assert emu.stats["workbench.get_job_output"] == 1  # the same garbage would come again


async def test_stream_open_is_retried(wb: WorkbenchClient, emu: Emulator) -> None:
    emu.faults.error_next["workbench.get_job_output"] = 1
    emu.faults.bad_gateway_next["workbench.get_job_output"] = 1
    job = await wb.jobs.launch(job_spec("--emu-chunks=2"))
    collected = await wb.jobs.collect(job.id)
    assert collected.stdout == emu.workbench.jobs[job.id].full_output()
    assert emu.stats["workbench.get_job_output"] == 3


async def test_admin_reads_another_users_output(wb: WorkbenchClient, emu: Emulator) -> None:
    job = await wb.jobs.launch(job_spec("--emu-chunks=3"))
    async with WorkbenchClient(emu.workbench_url, token="admin-token") as admin:
        collected = await admin.jobs.collect(job.id, user="alice")
        with pytest.raises(NotFoundError):
            await admin.jobs.collect(job.id)  # not the admin's own job
    assert collected.stdout == emu.workbench.jobs[job.id].full_output()


def close_first_stream_after_first_chunk(emu: Emulator, record: JobRecord) -> None:
    """End the job's next output stream cleanly right after its first chunk, while the job
    still runs, as a proxy timing out a long stream does."""
    emu.faults.close_stream_after_bytes = ndjson_size(record, 0)
    emu.faults.close_stream_count = 1


@pytest.mark.parametrize("token", ["user-token", "admin-token"])
async def test_stream_that_ends_while_the_job_runs_is_followed(emu: Emulator, token: str) -> None:
    async with WorkbenchClient(emu.workbench_url, token="user-token") as alice:
        job = await alice.jobs.launch(
            job_spec("--emu-pending=0", "--emu-chunks=5", "--emu-interval=0.05")
        )
    record = emu.workbench.jobs[job.id]
    close_first_stream_after_first_chunk(emu, record)
    user = "alice" if token == "admin-token" else None  # an admin reads alice's job
    async with WorkbenchClient(emu.workbench_url, token=token) as wb:
        collected = await wb.jobs.collect(job.id, user=user, resume=QUICK_RESUME)
    assert emu.stats["faults.close_stream"] == 1
    # The first stream ended cleanly after chunk 0, while the job ran...
    first = [w for w in record.writes if w.stream_seq == 0]
    assert [w.chunk_index for w in first] == [0]
    assert first[0].monotonic < record.end_time
    # ...so the client asked whether the job still runs, and reconnected once.
    assert emu.stats["workbench.get_session"] >= 1
    assert emu.stats["workbench.get_job_output"] == 2
    assert [w.chunk_index for w in record.writes if w.stream_seq == 1] == list(range(5))
    # Nothing lost, nothing repeated.
    assert pairs(list(collected.chunks)) == expected(record)
    assert collected.stdout == record.full_output()


async def test_stream_that_ends_early_without_follow(wb: WorkbenchClient, emu: Emulator) -> None:
    job = await wb.jobs.launch(job_spec("--emu-pending=0", "--emu-chunks=5", "--emu-interval=0.05"))
    record = emu.workbench.jobs[job.id]
    close_first_stream_after_first_chunk(emu, record)
    chunks = [c async for c in wb.jobs.output(job.id, follow=False)]
    assert record.status == "Running"  # the stream ended, the job did not
    assert pairs(chunks) == expected(record)[:1]
    assert emu.stats["faults.close_stream"] == 1
    assert emu.stats["workbench.get_job_output"] == 1


async def test_drops_beyond_the_budget_raise(wb: WorkbenchClient, emu: Emulator) -> None:
    emu.faults.drop_stream_after_bytes = 0  # every stream is cut before its first byte
    emu.faults.drop_stream_count = None
    job = await wb.jobs.launch(job_spec("--emu-chunks=3"))
    with pytest.raises(TransportError):
        await wb.jobs.collect(job.id, resume=ResumePolicy(2, 0.01, 0.02))
    assert emu.stats["workbench.get_job_output"] == 3  # the first try and 2 reconnects


async def test_stall_is_resumed_within_budget(wb: WorkbenchClient, emu: Emulator) -> None:
    emu.faults.stall_stream_after_bytes = 150
    emu.faults.stall_seconds = 0.6
    emu.faults.stall_stream_count = 1
    job = await wb.jobs.launch(job_spec("--emu-chunks=6"))
    collected = await wb.jobs.collect(job.id, stall_timeout=0.2, resume=QUICK_RESUME)
    assert collected.stdout == emu.workbench.jobs[job.id].full_output()
    assert emu.stats["faults.stall"] == 1
    assert emu.stats["workbench.get_job_output"] == 2


async def test_stall_without_resume_raises(wb: WorkbenchClient, emu: Emulator) -> None:
    emu.faults.stall_stream_after_bytes = 150
    emu.faults.stall_seconds = 0.6
    emu.faults.stall_stream_count = 1
    job = await wb.jobs.launch(job_spec("--emu-chunks=6"))
    got: list[OutputChunk] = []
    stream = wb.jobs.output(job.id, stall_timeout=0.2, resume=ResumePolicy(max_reconnects=0))
    with pytest.raises(TransportError, match="stalled") as info:
        await drain(stream, got)
    assert info.value.retryable
    assert 1 <= len(got) < 6  # what came before the stall was delivered
    assert pairs(got) == expected(emu.workbench.jobs[job.id])[: len(got)]
    assert emu.stats["workbench.get_job_output"] == 1


# On virtual time: the stream outlasts the total timeout on the loop's clock, in no real time
async def test_total_timeout_does_not_cut_a_quiet_stream() -> None:
    async with (
        make_emulator_on_loop_clock(seed=9, workbench=FAST) as emu,
        WorkbenchClient(
            emu.workbench_url, token="user-token", timeouts=Timeouts(total=0.3, stall=5)
        ) as wb,
    ):
        job = await wb.jobs.launch(
            job_spec("--emu-pending=0", "--emu-chunks=2", "--emu-interval=0.45")
        )
        collected = await wb.jobs.collect(job.id)
    assert collected.stdout == emu.workbench.jobs[job.id].full_output()
    assert len(collected.chunks) == 2
    assert emu.stats["workbench.get_job_output"] == 1  # one stream, never cut and resumed


# -- leaving early ------------------------------------------------------------------------


async def _long_job(wb: WorkbenchClient, emu: Emulator) -> str:
    job = await wb.jobs.launch(
        job_spec("--emu-pending=0", "--emu-chunks=400", "--emu-interval=0.05")
    )
    record = emu.workbench.jobs[job.id]
    # Once its first chunk exists, every stream of the job starts with data at once.
    await anyio.sleep(max(0.0, record.chunk_time(0) - anyio.current_time()) + 0.01)
    assert record.chunks_at(anyio.current_time()) >= 1
    return job.id


async def test_break_releases_the_connection(wb: WorkbenchClient, emu: Emulator) -> None:
    job_id = await _long_job(wb, emu)
    for _ in range(100):
        async for _chunk in wb.jobs.output(job_id):
            break
        await settle()
        assert acquired(wb) == 0
    assert emu.stats["workbench.get_job_output"] == 100
    assert await server_serves_no_stream(emu)
    assert emu.stats["streams_opened"] == 100
    assert acquired(wb) == 0
    await wb.jobs.stop(job_id, force=True)


async def test_aclose_releases_the_connection(wb: WorkbenchClient, emu: Emulator) -> None:
    job_id = await _long_job(wb, emu)
    for _ in range(100):
        stream = wb.jobs.output(job_id)
        first = await stream.__anext__()
        assert first.output_type == "stdout"
        assert acquired(wb) == 1
        await stream.aclose()
        assert acquired(wb) == 0  # at once, no finalizer needed
    assert await server_serves_no_stream(emu)
    await wb.jobs.stop(job_id, force=True)


async def test_cancellation_releases_the_connection(wb: WorkbenchClient, emu: Emulator) -> None:
    job_id = await _long_job(wb, emu)
    seen = 0
    for _ in range(100):
        async with contextlib.aclosing(wb.jobs.output(job_id)) as stream:
            with anyio.CancelScope() as scope:
                async for _chunk in stream:
                    seen += 1
                    # Cancelled from now on: the next wait for bytes ends the stream.
                    scope.cancel()
        assert scope.cancelled_caught
        assert acquired(wb) == 0
    assert seen >= 100
    # lines() and collect() release theirs too.
    with anyio.move_on_after(0.01):
        await wb.jobs.collect(job_id)
    with anyio.move_on_after(0.01):
        async for _line in wb.jobs.lines(job_id):
            pass
    await settle()
    assert acquired(wb) == 0
    assert await server_serves_no_stream(emu)
    await wb.jobs.stop(job_id, force=True)


async def test_closing_the_client_ends_a_stream(emu: Emulator) -> None:
    wb = WorkbenchClient(emu.workbench_url, token="user-token")
    job_id = await _long_job(wb, emu)
    stream = wb.jobs.output(job_id)
    await stream.__anext__()
    await stream.aclose()
    await wb.aclose()
    assert wb.closed
    assert await server_serves_no_stream(emu)


# -- lines and collect --------------------------------------------------------------------


async def test_lines_keep_channels_apart(wb: WorkbenchClient, emu: Emulator) -> None:
    job = await wb.jobs.launch(job_spec("--emu-chunks=6", "--emu-stderr-every=2"))
    lines = [line async for line in wb.jobs.lines(job.id)]
    record = emu.workbench.jobs[job.id]
    assert [(x.output_type, x.text) for x in lines] == [
        (kind, text[:-1]) for kind, text in expected(record)
    ]
    assert [x.output_type for x in lines] == ["stdout", "stderr"] * 3
    assert {x.job_id for x in lines} == {job.id}

    # A finished audited job answers with one chunk holding every line.
    audited = await wb.audited_jobs.launch(job_spec("--emu-chunks=3"))
    await wb.audited_jobs.wait(audited.id, timeout=5)
    texts = [x.text async for x in wb.audited_jobs.lines(audited.id)]
    audited_record = emu.workbench.audited_jobs[audited.id]
    assert texts == audited_record.full_output().splitlines()


def ends_of_lines(chunks: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The complete lines of a chunk sequence, per channel, in the order their newlines come."""
    held: dict[str, str] = {}
    out: list[tuple[str, str]] = []
    for kind, text in chunks:
        *complete, held[kind] = (held.get(kind, "") + text).split("\n")
        out.extend((kind, line) for line in complete)
    return out


async def test_lines_join_lines_split_across_chunks(wb: WorkbenchClient, emu: Emulator) -> None:
    # --emu-split-lines: chunks end mid-line and carry several lines, a blank line follows
    # each channel's first line, and each channel's last line has no newline.
    job = await wb.jobs.launch(
        job_spec("--emu-chunks=9", "--emu-stderr-every=3", "--emu-split-lines")
    )
    record = emu.workbench.jobs[job.id]
    chunks = pairs([c async for c in wb.jobs.output(job.id)])
    lines = [line async for line in wb.jobs.lines(job.id)]
    assert chunks == expected(record)

    # What the stream really held: a line continued in the next chunk of its channel after
    # a chunk of the other channel came in between, and chunks of several lines.
    def continued_across(channel: str) -> bool:
        for i, (kind, text) in enumerate(chunks):
            if kind != channel or text.endswith("\n"):
                continue
            rest = chunks[i + 1 :]
            j = next((n for n, (k, _) in enumerate(rest) if k == channel), None)
            if j is not None and j > 0:
                return True
        return False

    assert continued_across("stdout")
    assert any(sum(1 for seg in text.split("\n")[:-1] if seg) >= 2 for _, text in chunks)

    # Each channel's lines whole, in order, the blank one included; the unterminated last
    # lines come when the stream ends.
    want: dict[str, list[str]] = {}
    for kind in ("stdout", "stderr"):
        texts = [text[:-1] for k, text in map(record.line, range(9)) if k == kind]
        want[kind] = [texts[0], "", *texts[1:]]
        assert [x.text for x in lines if x.output_type == kind] == want[kind]
    assert [(x.output_type, x.text) for x in lines[:-2]] == ends_of_lines(chunks)
    assert {(x.output_type, x.text) for x in lines[-2:]} == {
        ("stdout", want["stdout"][-1]),
        ("stderr", want["stderr"][-1]),
    }
    assert {x.job_id for x in lines} == {job.id}
    assert all(isinstance(x, OutputLine) for x in lines)


async def test_collect_joins_stdout_and_stderr(wb: WorkbenchClient, emu: Emulator) -> None:
    job = await wb.jobs.launch(job_spec("--emu-chunks=7", "--emu-stderr-every=3"))
    collected = await wb.jobs.collect(job.id)
    record = emu.workbench.jobs[job.id]
    want = by_channel(expected(record))
    assert collected.job_id == job.id
    assert collected.stdout == want["stdout"]
    assert collected.stderr == want["stderr"]
    assert collected.stderr.count("\n") == 2
    assert pairs(list(collected.chunks)) == expected(record)


@pytest.mark.parametrize(
    "bad",
    [
        {"max_reconnects": -1},
        {"max_reconnects": 1.5},
        {"backoff_initial": -0.1},
        {"backoff_max": float("inf")},
    ],
)
def test_resume_policy_refuses_bad_values(bad: dict[str, Any]) -> None:
    name = next(iter(bad))
    # A non-int count is the wrong kind (TypeError), the others are out of range.
    error = TypeError if bad == {"max_reconnects": 1.5} else ValueError
    with pytest.raises(error, match=rf"ResumePolicy\.{name}"):
        ResumePolicy(**bad)
