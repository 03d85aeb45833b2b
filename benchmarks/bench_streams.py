"""Benchmark: tailing job output end to end through ``wb.jobs.output``.

Run from the repository root::

    python -m benchmarks.bench_streams            # 256 MiB, then 5 s at 100 chunks/s
    python -m benchmarks.bench_streams --quick    # 8 MiB, then 0.5 s at 100 chunks/s

The emulator runs in its own process (``benchmarks/_common.py``), so the memory measured
below is the client's alone.

Part A, volume: a job writes 256 MiB of output in ``--emu-bytes`` chunks, produced at
1 GiB/s (faster than anyone reads: the server writes as fast as the client takes it). The
client iterates ``wb.jobs.output(job_id)`` and only counts what it gets (bytes, chunks,
chunk order); the baseline reads the same stream with raw aiohttp, splits it on newlines
(joining a line's pieces once) and ``json.loads`` each line (the emulator frames values as
NDJSON; the SDK's decoder does not rely on that). Reported: payload
MB/s (10^6 bytes of output text per second; the wire carries a little more, the JSON
framing), and the client's peak RSS growth over the stream (VmRSS sampled every 5 ms and
the kernel's VmHWM reset at the start; ``MemoryWatch``). Rows per chunk size and reader.

Part B, latency: a job writes 100 chunks a second (``--emu-interval=0.01``, 120-byte
chunks) for 5 s; the stream is opened before the job starts running. For each chunk, the
delay is the client's ``time.time()`` when ``wb.jobs.output`` yields it, minus:

* ``scheduled``: when the emulator was due to produce it, ``Running`` wall time +
  (i + 1) x interval (from the emulator's job record: includes the emulator's own timer
  lateness);
* ``written``: when the emulator handed its last byte to the socket, as the emulator records
  it (``JobRecord.writes``, one :class:`~aiocompute.emulator.ChunkWrite` per chunk and
  stream, fetched over the control channel after the run).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import re
import sys
import time
from collections.abc import Sequence
from typing import Any

import aiohttp

from aiocompute import JobSpec, WorkbenchClient

from ._common import (
    TOKEN,
    EmulatorProcess,
    MemoryWatch,
    Report,
    add_common_args,
    cpu_seconds,
    percentile,
)

MIB = 1024 * 1024
#: Seconds between chunks in part B (100 chunks/s).
LATENCY_INTERVAL = 0.01
#: "stdout line <i> of job <id>: ..." (the emulator's deterministic chunk text).
_LINE = re.compile(r"(?:stdout|stderr) line (\d+) of job ")


def job_spec(name: str, *args: str) -> JobSpec:
    """A job the emulator runs by its ``--emu-*`` args."""
    return JobSpec(name=name, cluster="Local", exe="/bin/true", args=list(args))


async def read_sdk(wb: WorkbenchClient, job_id: str) -> tuple[int, int, bool]:
    """``wb.jobs.output``: payload bytes, chunks, and whether they came in order."""
    received = chunks = 0
    in_order = True
    async for item in wb.jobs.output(job_id):
        text = item.output
        match = _LINE.match(text)
        if match is None or int(match.group(1)) != chunks:
            in_order = False
        received += len(text)
        chunks += 1
    return received, chunks, in_order


async def read_raw(session: aiohttp.ClientSession, url: str, job_id: str) -> tuple[int, int, bool]:
    """The baseline: raw aiohttp, NDJSON split on newlines, ``json.loads`` per line.

    Pieces of a line are joined once, when its newline arrives (linear in the line's size).
    """
    received = chunks = 0
    in_order = True
    body = {"method": "get_job_output", "kwparams": {"job_id": job_id}}
    headers = {"Authorization": f"Bearer {TOKEN}"}
    pieces: list[bytes] = []
    async with session.post(url + "/api/get_job_output", json=body, headers=headers) as resp:
        resp.raise_for_status()
        async for data in resp.content.iter_any():
            start = 0
            while (newline := data.find(b"\n", start)) >= 0:
                pieces.append(data[start:newline])
                start = newline + 1
                text = json.loads(b"".join(pieces))["output"]
                pieces.clear()
                match = _LINE.match(text)
                if match is None or int(match.group(1)) != chunks:
                    in_order = False
                received += len(text)
                chunks += 1
            if start < len(data):
                pieces.append(data[start:])
    return received, chunks, in_order


async def volume_run(
    url: str, emu: EmulatorProcess, total: int, chunk: int, contender: str
) -> dict[str, Any]:
    """Stream ``total`` bytes of output in ``chunk``-byte chunks; throughput and memory."""
    count = total // chunk
    # Produce at 1 GiB/s: faster than any reader, so the server is never waiting on the job.
    interval = chunk / 2**30
    async with WorkbenchClient(url, token=TOKEN) as wb, aiohttp.ClientSession() as raw:
        job = await wb.jobs.launch(
            job_spec(
                "volume",
                f"--emu-chunks={count}",
                f"--emu-bytes={chunk}",
                f"--emu-interval={interval:.9f}",
                "--emu-pending=0",
            )
        )
        before = emu.stats().get("workbench.bytes_streamed", 0)
        gc.collect()
        server_cpu, client_cpu = emu.cpu(), cpu_seconds()
        with MemoryWatch() as memory:
            started = time.perf_counter()
            if contender == "wb.jobs.output":
                received, chunks, in_order = await read_sdk(wb, job.id)
            else:
                received, chunks, in_order = await read_raw(raw, url, job.id)
            elapsed = time.perf_counter() - started
        client_cpu = cpu_seconds() - client_cpu
        server_cpu = emu.cpu() - server_cpu
        wire = emu.stats().get("workbench.bytes_streamed", 0) - before
    return {
        "contender": contender,
        "chunk_bytes": chunk,
        "chunks": chunks,
        "expected_chunks": count,
        "payload_bytes": received,
        "wire_bytes": wire,
        "seconds": elapsed,
        "mb_per_s": received / elapsed / 1e6,
        "rss_growth_mb": memory.growth / 1e6,
        "rss_baseline_mb": memory.baseline / 1e6,
        "hwm_reset": memory.hwm_reset,
        "in_order": in_order and chunks == count,
        "client_cpu": client_cpu,
        "server_cpu": server_cpu,
    }


async def latency_run(url: str, emu: EmulatorProcess, seconds: float) -> dict[str, Any]:
    """100 chunks/s for ``seconds``: per-chunk delay from production / write to the yield."""
    interval = LATENCY_INTERVAL
    count = round(seconds / interval)
    yielded: dict[int, float] = {}
    async with WorkbenchClient(url, token=TOKEN) as wb:
        job = await wb.jobs.launch(
            job_spec(
                "latency",
                f"--emu-chunks={count}",
                "--emu-bytes=120",
                f"--emu-interval={interval}",
                "--emu-pending=0.3",  # time to open the stream before the first chunk
            )
        )
        async for item in wb.jobs.output(job.id):
            now = time.time()
            match = _LINE.match(item.output)
            if match is not None:
                yielded.setdefault(int(match.group(1)), now)
    schedule = emu.chunk_schedule(job.id)
    # One stream was opened (stream 0); a reconnect would show as stream 1 and replay.
    written = {w["chunk"]: w["wall_time"] for w in emu.chunk_writes(job.id) if w["stream"] == 0}
    start, step = schedule["running_wall"], schedule["interval"]
    from_schedule = [t - (start + (i + 1) * step) for i, t in yielded.items()]
    from_write = [t - written[i] for i, t in yielded.items() if i in written]
    # The emulator's own lateness: how long after its due time each chunk was written.
    write_late = [w - (start + (i + 1) * step) for i, w in sorted(written.items())]

    def summary(values: list[float]) -> dict[str, float]:
        return {
            "p50_ms": percentile(values, 50) * 1e3,
            "p90_ms": percentile(values, 90) * 1e3,
            "p99_ms": percentile(values, 99) * 1e3,
            "max_ms": max(values) * 1e3 if values else float("nan"),
            "n": len(values),
        }

    return {
        "chunks": count,
        "received": len(yielded),
        "writes_recorded": len(written),
        "from_schedule": summary(from_schedule),
        "from_write": summary(from_write),
        "emulator_lateness": summary(write_late),
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and print its report."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser)
    parser.add_argument("--mib", type=int, help="MiB of output in part A (default 256)")
    parser.add_argument("--seconds", type=float, help="length of part B (default 5)")
    args = parser.parse_args(args_list)
    total = (args.mib or (8 if args.quick else 256)) * MIB
    seconds = args.seconds or (0.5 if args.quick else 5.0)
    chunk_sizes = (MIB, 64 * 1024)

    async def run(emu: EmulatorProcess) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        volume = [
            await volume_run(emu.url, emu, total, size, contender)
            for size in chunk_sizes
            for contender in ("wb.jobs.output", "raw aiohttp + json.loads")
        ]
        latency = await latency_run(emu.url, emu, seconds)
        return volume, latency

    # Each job keeps its most recent chunk writes: enough for every chunk of part B.
    log_size = max(10_000, round(seconds / LATENCY_INTERVAL) + 1)
    with EmulatorProcess({"job_write_log_size": log_size}, seed=5) as emu:
        volume, latency = asyncio.run(run(emu))

    report = Report("bench_streams", args_list)
    report.table(
        f"A. {total // MIB} MiB of job output, wb.jobs.output and a raw reader "
        "(client process only)",
        [
            "reader",
            "chunk size",
            "chunks",
            "seconds",
            "payload MB/s",
            "wire MB",
            "peak RSS growth MB",
            "client CPU s",
            "server CPU s",
            "all in order",
        ],
        [
            [
                r["contender"],
                f"{r['chunk_bytes'] // 1024} KiB",
                r["chunks"],
                r["seconds"],
                r["mb_per_s"],
                r["wire_bytes"] / 1e6,
                r["rss_growth_mb"],
                r["client_cpu"],
                r["server_cpu"],
                "yes" if r["in_order"] else "NO",
            ]
            for r in volume
        ],
    )
    rows = [
        ("yield - scheduled", latency["from_schedule"]),
        ("yield - written", latency["from_write"]),
        ("(emulator: written - scheduled)", latency["emulator_lateness"]),
    ]
    report.table(
        f"B. 100 chunks/s for {seconds:g} s: delay until wb.jobs.output yields each chunk "
        f"({latency['received']}/{latency['chunks']} chunks received)",
        ["delay", "p50 ms", "p90 ms", "p99 ms", "max ms", "chunks"],
        [[label, s["p50_ms"], s["p90_ms"], s["p99_ms"], s["max_ms"], s["n"]] for label, s in rows],
    )
    sdk = [r for r in volume if r["contender"] == "wb.jobs.output"]
    worst_growth = max(r["rss_growth_mb"] for r in sdk)
    for r in sdk:
        base = next(
            b["mb_per_s"]
            for b in volume
            if b["chunk_bytes"] == r["chunk_bytes"] and b["contender"] != r["contender"]
        )
        r["vs_raw"] = r["mb_per_s"] / base
        report.note(
            f"{r['chunk_bytes'] // 1024} KiB chunks: wb.jobs.output at {r['vs_raw']:.2f}x "
            "the raw reader's throughput"
        )
    p99 = latency["from_write"]["p99_ms"]
    p99_sched = latency["from_schedule"]["p99_ms"]
    report.note(
        f"target A, client memory growth <= 50 MB: "
        f"{'met' if worst_growth <= 50 else 'MISSED'} (worst {worst_growth:.1f} MB)"
    )
    report.note(
        f"target B, p99 write -> yield <= 20 ms: {'met' if p99 <= 20 else 'MISSED'} "
        f"({p99:.1f} ms; from the scheduled time: {p99_sched:.1f} ms)"
    )
    if not all(r["hwm_reset"] for r in volume):
        report.note("VmHWM could not be reset here: the peak RSS is the 5 ms sampler's only.")
    report.values = {"volume": volume, "latency": latency}
    report.emit(json_path=args.json, markdown=args.markdown)


if __name__ == "__main__":
    main()
