"""Benchmark: client instructions per ET Engine job read, counted by valgrind's callgrind.

Run from the repository root (needs ``valgrind`` on the PATH; about two minutes)::

    python -m benchmarks.bench_fanout_instructions            # 1,000 reads per contender
    python -m benchmarks.bench_fanout_instructions --quick    # 50 reads per contender

Timings of part A of ``bench_fanout`` spread by 10-20 % between rounds on a shared machine.
Instructions do not: the same code on the same input executes the same instructions,
whatever else the machine does. This script runs the contenders of part A of
``bench_fanout`` (the same reads, the same emulator in its own process, not traced) with
the client process under callgrind, counting only while a contender's timed reads run
(``callgrind_control`` switches counting on, dumps the count, and switches it off), and
reports instructions per read.

Instructions are not time: a cache miss or a system call costs more than its count says.
The count tells what each layer asks of the CPU, with no noise; ``bench_fanout`` tells
what the reads cost in time on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import aiohttp

from . import bench_fanout as bf
from ._common import EmulatorProcess, Report, add_common_args

#: Set in the traced child, so that it runs the reads instead of starting valgrind.
_CHILD_ENV = "AIOCOMPUTE_BENCH_UNDER_CALLGRIND"
#: Reads per contender, and with --quick.
READS = 1000
QUICK_READS = 50
#: Untraced-in-effect warm-up reads per contender (counting is off during them).
WARMUP = 200
QUICK_WARMUP = 20
#: Reads in flight, as in part A of bench_fanout.
CONCURRENCY = 32
#: The longest the traced child may take (it runs about 50 times slower than natively).
CHILD_TIMEOUT = 1200


def _callgrind(*args: str) -> None:
    subprocess.run(
        ["callgrind_control", *args, str(os.getpid())],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _count(url: str, reads: int, warmup: int) -> list[str]:
    """In the traced child: each contender's reads, counted; the contenders' names."""
    pairs = await bf.make_jobs(url, reads)
    jobs = bf.JobReads(url, pairs)
    async with (
        jobs.client() as client,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=bf.POOL)) as raw,
    ):
        runs = bf.contender_runs(jobs, client, raw, CONCURRENCY)
        for index, (name, run) in enumerate(runs.items()):
            await run(pairs[:warmup])
            _callgrind("--instr=on")
            done = await run(pairs)
            _callgrind(f"--dump=contender-{index}")
            _callgrind("--instr=off")
            if done != len(pairs):
                raise RuntimeError(f"{name}: {done} of {len(pairs)} reads")
    return list(runs)


def _child(reads: int, warmup: int, names_path: str) -> None:
    with EmulatorProcess(etengine=bf.ET_CONFIG, seed=3) as emu:
        names = asyncio.run(_count(emu.etengine_url, reads, warmup))
    Path(names_path).write_text(json.dumps(names))


def _totals(out_dir: Path, prefix: str) -> dict[int, int]:
    """Instructions of each ``contender-N`` dump, by N."""
    found: dict[int, int] = {}
    for path in out_dir.glob(prefix + ".*"):
        trigger = total = None
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("desc: Trigger:") and "contender-" in line:
                trigger = int(line.rsplit("contender-", 1)[1].split()[0])
            elif line.startswith("totals:"):
                total = int(line.split()[1])
        if trigger is not None and total is not None:
            found[trigger] = total
    return found


def main(argv: Sequence[str] | None = None) -> None:
    """Run the contenders under callgrind and print instructions per read."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser)
    parser.add_argument("--reads", type=int, help=f"reads per contender (default {READS})")
    args = parser.parse_args(args_list)
    reads = args.reads or (QUICK_READS if args.quick else READS)
    warmup = QUICK_WARMUP if args.quick else WARMUP
    if reads < 1:
        parser.error("--reads must be at least 1")

    if os.environ.get(_CHILD_ENV):
        _child(reads, warmup, os.environ[_CHILD_ENV])
        return
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        sys.exit("bench_fanout_instructions needs valgrind (callgrind) on the PATH")

    report = Report("bench_fanout_instructions", args_list)
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = Path(tmp)
        names_path = out_dir / "names.json"
        command = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={out_dir / 'callgrind.out'}",
            sys.executable,
            "-m",
            "benchmarks.bench_fanout_instructions",
            *args_list,
        ]
        # A fixed hash seed: str hashes decide dict and set layouts, and so some counts.
        env = dict(os.environ, **{_CHILD_ENV: str(names_path)})
        env.setdefault("PYTHONHASHSEED", "0")
        root = Path(__file__).resolve().parent.parent
        proc = subprocess.run(
            command, cwd=root, env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT
        )
        if proc.returncode != 0 or not names_path.exists():
            sys.stderr.write(proc.stdout[-2000:] + proc.stderr[-4000:])
            sys.exit(f"the traced run failed (exit code {proc.returncode})")
        names: list[str] = json.loads(names_path.read_text())
        totals = _totals(out_dir, "callgrind.out")
    if sorted(totals) != list(range(len(names))):
        sys.exit(f"expected {len(names)} callgrind dumps, found {sorted(totals)}")

    per_read = {name: totals[i] / reads for i, name in enumerate(names)}
    raw = per_read["raw aiohttp"]
    report.table(
        f"ET Engine job reads, client instructions per read ({reads:,} reads per contender, "
        f"concurrency {CONCURRENCY}, counted by callgrind)",
        ["contender", "instructions/read", "vs raw aiohttp", "more than raw aiohttp"],
        [[n, f"{v:,.0f}", f"{raw / v:.2f}x", f"{v - raw:+,.0f}"] for n, v in per_read.items()],
    )
    report.values = {"reads": reads, "instructions_per_read": per_read}
    typed = per_read["fan_out"] - per_read["fan_out + SDK transport, untyped"]
    report.note(
        f"The typed model and the client's call around it (et.jobs.get over the same "
        f"transport call): {typed:+,.0f} instructions per read."
    )
    report.note(
        "vs raw aiohttp: raw's instructions per read / the contender's (an instruction "
        "count, not a throughput: see bench_fanout for time)."
    )
    report.emit(json_path=args.json, markdown=args.markdown)


if __name__ == "__main__":
    main()
