"""What the end-to-end benchmarks share: the emulator in its own process, stats, reports.

Why the emulator runs in a separate process
-------------------------------------------
The client and the server must not share an event loop or a GIL: with both in one process,
every millisecond the server spends building a response is a millisecond the client's loop
is blocked, so the client's latencies, throughput and memory would all measure the pair.
The machine these numbers come from has 2 cores, so :class:`EmulatorProcess` gives the
emulator one process (one core) and leaves the other to the client under test. A thread
would not do: it shares the GIL and the process's memory (RSS would count the server's
buffers too).

The child is a fresh interpreter (``python -m benchmarks._common --serve CONFIG``); the
parent talks to it with JSON lines over its stdin / stdout: counters (``emu.stats``),
session transition times, job chunk schedules and chunk write times (``JobRecord.writes``),
live fault switches. Control calls are made outside the timed windows; they block the
caller for a millisecond or so.

Clocks: the emulator records transitions and chunk writes on ``time.monotonic()`` and
converts them to wall time (``time.time()``) with an offset taken once at start; the client
stamps what it learns with ``time.time()``. Both processes read the same system clock, so
the difference is a latency (to within microseconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import json
import math
import os
import platform
import resource
import select
import shlex
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "TOKEN",
    "EmulatorProcess",
    "MemoryWatch",
    "Report",
    "add_common_args",
    "cpu_seconds",
    "fmt",
    "percentile",
    "render_markdown",
    "rss_bytes",
]

#: The bearer token of the emulator's default user ("alice").
TOKEN = "user-token"
#: Longest wait for the emulator process to start, or to answer a control call.
_CONTROL_TIMEOUT = 60.0


# --------------------------------------------------------------------------------------------
# The emulator process


def _running_walls(emu: Any, ids: Sequence[str]) -> dict[str, float]:
    """Wall time at which each session entered ``running`` (sessions not there yet: absent)."""
    out: dict[str, float] = {}
    for sid in ids:
        record = emu.workbench.sessions.get(sid)
        if record is None:
            continue
        for transition in record.transitions:
            if transition.state == "running":
                out[sid] = transition.wall_time
                break
    return out


def _chunk_schedule(emu: Any, job_id: str) -> dict[str, Any]:
    """When the emulator produces each chunk of a job: Running wall time + (i + 1) * interval."""
    job = emu.workbench.jobs[job_id]
    running = [t.wall_time for t in job.transitions if t.state == "Running"]
    return {
        "running_wall": running[0] if running else None,
        "interval": job.interval,
        "chunks": job.total_chunks,
    }


def _chunk_writes(emu: Any, job_id: str) -> list[dict[str, Any]]:
    """The emulator's record of a job's chunk writes (``JobRecord.writes``), oldest first."""
    return [
        {
            "stream": w.stream_seq,
            "chunk": w.chunk_index,
            "nbytes": w.nbytes,
            "wall_time": w.wall_time,
        }
        for w in emu.workbench.jobs[job_id].writes
    ]


def _handle(emu: Any, op: str, kw: Mapping[str, Any]) -> Any:
    if op == "stats":
        return dict(emu.stats)
    if op == "cpu":
        return cpu_seconds()
    if op == "rss":
        return rss_bytes()
    if op == "running_walls":
        return _running_walls(emu, kw["ids"])
    if op == "chunk_schedule":
        return _chunk_schedule(emu, kw["job_id"])
    if op == "chunk_writes":
        return _chunk_writes(emu, kw["job_id"])
    if op == "set_latency":
        emu.faults.latency.clear()
        emu.faults.latency.update(kw["latency"])
        emu.faults.check()
        return None
    raise ValueError(f"unknown control op {op!r}")


async def _serve(workbench: dict[str, Any], etengine: dict[str, Any], seed: int) -> None:
    """The child: serve, then answer control lines (JSON on stdin -> JSON on stdout)."""
    from aiocompute.emulator import (
        Emulator,
        EmulatorConfig,
        ETEngineEmulatorConfig,
        WorkbenchEmulatorConfig,
    )

    config = EmulatorConfig(
        workbench=WorkbenchEmulatorConfig(**workbench),
        etengine=ETEngineEmulatorConfig(**etengine),
    )
    loop = asyncio.get_running_loop()

    def answer(status: str, value: Any) -> None:
        sys.stdout.write(json.dumps([status, value]) + "\n")
        sys.stdout.flush()

    async with Emulator(config=config, seed=seed) as emu:
        answer("ok", {"workbench": emu.workbench_url, "etengine": emu.etengine_url})
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                return  # the parent is gone
            op, kw = json.loads(line)
            if op == "stop":
                answer("ok", None)
                return
            try:
                answer("ok", _handle(emu, op, kw))
            except Exception as exc:  # reported to the parent, which raises it
                answer("error", f"{type(exc).__name__}: {exc}")


class EmulatorProcess:
    """An :class:`~aiocompute.emulator.Emulator` serving in a child process.

    ``workbench`` holds :class:`~aiocompute.emulator.WorkbenchEmulatorConfig` keyword
    arguments and ``etengine`` :class:`~aiocompute.emulator.ETEngineEmulatorConfig` ones
    (plain data, so they cross the process boundary). Use it as a (sync) context manager;
    :attr:`url` is the Workbench base URL, :attr:`etengine_url` the ET Engine one (``.../v1``).

    The child is ``python -m benchmarks._common --serve CONFIG``, started from the repository
    root; control calls are JSON lines on its stdin / stdout.
    """

    def __init__(
        self,
        workbench: Mapping[str, Any] | None = None,
        *,
        etengine: Mapping[str, Any] | None = None,
        seed: int = 0,
    ) -> None:
        self._config = {
            "workbench": dict(workbench or {}),
            "etengine": dict(etengine or {}),
            "seed": seed,
        }
        self._proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.etengine_url = ""

    def start(self) -> None:
        """Start the child and wait until it listens."""
        root = Path(__file__).resolve().parent.parent
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks._common", "--serve", json.dumps(self._config)],
            cwd=root,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        urls = self._receive()
        self.url, self.etengine_url = str(urls["workbench"]), str(urls["etengine"])

    def _receive(self) -> Any:
        proc = self._proc
        assert proc is not None
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], _CONTROL_TIMEOUT)
        if not ready:
            raise RuntimeError(f"the emulator process did not answer within {_CONTROL_TIMEOUT} s")
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the emulator process exited (code {proc.wait()})")
        status, value = json.loads(line)
        if status == "error":
            raise RuntimeError(f"emulator control call failed: {value}")
        return value

    def call(self, op: str, **kw: Any) -> Any:
        """Run a control op in the child (blocking) and return its answer."""
        proc = self._proc
        if proc is None or proc.stdin is None:
            raise RuntimeError("the emulator process is not running")
        proc.stdin.write(json.dumps([op, kw]) + "\n")
        proc.stdin.flush()
        return self._receive()

    def stats(self) -> dict[str, int]:
        """A snapshot of ``emu.stats``."""
        result: dict[str, int] = self.call("stats")
        return result

    def cpu(self) -> float:
        """CPU seconds (user + system) the emulator process has used."""
        return float(self.call("cpu"))

    def running_walls(self, ids: Sequence[str]) -> dict[str, float]:
        """``{session id: wall time it entered running}`` for the sessions that have."""
        result: dict[str, float] = self.call("running_walls", ids=list(ids))
        return result

    def chunk_schedule(self, job_id: str) -> dict[str, Any]:
        """``running_wall``, ``interval`` and ``chunks`` of a job (chunk i is produced at
        ``running_wall + (i + 1) * interval``)."""
        result: dict[str, Any] = self.call("chunk_schedule", job_id=job_id)
        return result

    def chunk_writes(self, job_id: str) -> list[dict[str, Any]]:
        """When the emulator wrote each output chunk of a job, as it records them
        (``JobRecord.writes``, the most recent ``job_write_log_size``), oldest first: dicts
        of ``stream`` (the job's n-th output stream, from 0), ``chunk`` (the chunk's index),
        ``nbytes`` (on the wire) and ``wall_time`` (``time.time()`` once its last byte was
        handed to the socket)."""
        result: list[dict[str, Any]] = self.call("chunk_writes", job_id=job_id)
        return result

    def set_latency(self, latency: Mapping[str, float]) -> None:
        """Replace ``emu.faults.latency`` (e.g. ``{"workbench": 0.02}`` or
        ``{"etengine": 0.02}``)."""
        self.call("set_latency", latency=dict(latency))

    def stop(self) -> None:
        """Stop the server and the process (idempotent)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(Exception):
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(["stop", {}]) + "\n")
            proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> EmulatorProcess:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# --------------------------------------------------------------------------------------------
# Measurements


def cpu_seconds() -> float:
    """CPU seconds (user + system) used by this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_bytes() -> int:
    """This process's resident set size now (``VmRSS``), in bytes."""
    kib = _status_kib("VmRSS")
    if kib is None:  # not Linux: the lifetime peak is the best we have
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak * (1 if sys.platform == "darwin" else 1024))
    return kib * 1024


class MemoryWatch:
    """Peak RSS growth of this process over a block: ``with MemoryWatch() as m: ...``.

    The baseline is ``VmRSS`` at entry. The peak is the larger of the kernel's high-water
    mark (``VmHWM``, reset at entry through ``/proc/self/clear_refs`` when allowed) and a
    sampler thread reading ``VmRSS`` every ``interval`` seconds.
    """

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.baseline = 0
        self.peak = 0
        self.hwm_reset = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, rss_bytes())

    def __enter__(self) -> MemoryWatch:
        self.baseline = self.peak = rss_bytes()
        try:
            with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
                refs.write("5")  # 5: reset the peak RSS to the current RSS
            self.hwm_reset = True
        except OSError:
            self.hwm_reset = False
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak = max(self.peak, rss_bytes())
        hwm = _status_kib("VmHWM")
        if self.hwm_reset and hwm is not None:
            self.peak = max(self.peak, hwm * 1024)

    @property
    def growth(self) -> int:
        """Peak RSS minus the baseline, in bytes."""
        return max(0, self.peak - self.baseline)


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (``pct`` in 0..100) of ``values``; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def fmt(value: Any, digits: int = 2) -> str:
    """A table cell: floats with ``digits`` decimals, NaN/None as ``n/a``."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:,.{digits}f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


# --------------------------------------------------------------------------------------------
# Reports


class Report:
    """Tables and notes of one benchmark run, printed as text, JSON or Markdown.

    Each table has a title, column names and rows of cells (the first cell names the row).
    ``values`` holds the raw numbers behind the tables (for ``--json`` and the smoke test).
    """

    def __init__(self, name: str, argv: Sequence[str]) -> None:
        self.name = name
        self.command = "python -m benchmarks." + name + "".join(" " + shlex.quote(a) for a in argv)
        self.started = _dt.datetime.now().astimezone()
        self.tables: list[tuple[str, list[str], list[list[str]]]] = []
        self.notes: list[str] = []
        self.values: dict[str, Any] = {}
        self.env_line = self.environment()

    def environment(self) -> str:
        """One line: date, Python, aiohttp, platform, cores, load average."""
        import aiohttp

        cores = os.cpu_count() or 0
        try:
            # Other work on the machine skews every figure: say how busy it was.
            load = f", load average {os.getloadavg()[0]:.2f} at start"
        except OSError:
            load = ""
        return (
            f"{self.started:%Y-%m-%d %H:%M %Z}; python {platform.python_version()}, "
            f"aiohttp {aiohttp.__version__}, {platform.system()} {platform.machine()}, "
            f"{cores} cores{load}"
        )

    def table(self, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Add a table (cells are formatted with :func:`fmt` unless already strings)."""
        cells = [[c if isinstance(c, str) else fmt(c) for c in row] for row in rows]
        self.tables.append((title, list(columns), cells))

    def note(self, text: str) -> None:
        """Add a line printed after the tables."""
        self.notes.append(text)

    def text(self) -> str:
        """The report as aligned plain text."""
        out = [f"$ {self.command}", self.env_line, ""]
        for title, columns, rows in self.tables:
            widths = [
                max(len(columns[i]), *(len(r[i]) for r in rows)) if rows else len(columns[i])
                for i in range(len(columns))
            ]
            out.append(title)

            def line(cells: Sequence[str], widths: list[int] = widths) -> str:
                first = cells[0].ljust(widths[0])
                rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
                return "  ".join([first, *rest]).rstrip()

            out.append(line(columns))
            out.append("  ".join("-" * w for w in widths))
            out.extend(line(r) for r in rows)
            out.append("")
        out.extend(self.notes)
        return "\n".join(out)

    def markdown(self) -> str:
        """The report as Markdown tables (for docs/benchmarks.md)."""
        out = [f"`{self.command}` ({self.env_line})", ""]
        for title, columns, rows in self.tables:
            out.append(f"{title}")
            out.append("")
            out.append("| " + " | ".join(columns) + " |")
            out.append("|" + "|".join(["---"] + ["---:"] * (len(columns) - 1)) + "|")
            out.extend("| " + " | ".join(r) + " |" for r in rows)
            out.append("")
        out.extend(f"{n}  " for n in self.notes)
        return "\n".join(out)

    def to_json(self) -> dict[str, Any]:
        """Everything as plain data."""
        return {
            "benchmark": self.name,
            "command": self.command,
            "environment": self.env_line,
            "cpu_count": os.cpu_count(),
            "tables": [
                {"title": t, "columns": c, "rows": r, "row_names": [row[0] for row in r]}
                for t, c, r in self.tables
            ],
            "notes": self.notes,
            "values": self.values,
        }

    def emit(self, *, json_path: str | None, markdown: bool) -> None:
        """Print the report (text, or Markdown) and write the JSON file if asked."""
        print(self.markdown() if markdown else self.text(), flush=True)
        if json_path:
            with open(json_path, "w", encoding="utf-8") as out:
                json.dump(self.to_json(), out, indent=2, default=str)


def add_common_args(parser: Any) -> None:
    """``--quick``, ``--json PATH`` and ``--markdown``, shared by every benchmark."""
    parser.add_argument("--quick", action="store_true", help="tiny sizes (for the smoke test)")
    parser.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")


def render_markdown(path: str) -> str:
    """Markdown tables from a report written with ``--json`` (same as ``--markdown``)."""
    with open(path, encoding="utf-8") as source:
        data = json.load(source)
    report = Report(data["benchmark"], [])
    report.command, report.env_line = data["command"], data["environment"]
    report.tables = [(t["title"], t["columns"], t["rows"]) for t in data["tables"]]
    report.notes = list(data["notes"])
    return report.markdown()


def _main(argv: Sequence[str]) -> None:
    if len(argv) == 2 and argv[0] == "--render":
        print(render_markdown(argv[1]))
        return
    if len(argv) != 2 or argv[0] != "--serve":
        raise SystemExit(
            "usage: python -m benchmarks._common --serve CONFIG_JSON | --render REPORT_JSON"
        )
    config = json.loads(argv[1])
    asyncio.run(_serve(config["workbench"], config.get("etengine", {}), int(config["seed"])))


if __name__ == "__main__":
    _main(sys.argv[1:])
