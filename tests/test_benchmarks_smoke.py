"""The end-to-end benchmarks run (``--quick``) and report the rows they promise.

Timings are never asserted here: on a shared 2-core machine they say nothing. What is
asserted is that each script runs to the end, prints the command it was run with, and
reports every contender with data that could only come from a complete run (every session
detected, every chunk received in order...). The three scripts run in parallel, each with
its own emulator process, to keep this module within a few seconds.
"""

from __future__ import annotations

import importlib
import json
import statistics
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
# benchmarks/ is a package at the repository root, not part of the installed distribution.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
_common = importlib.import_module("benchmarks._common")
Report, fmt, percentile = _common.Report, _common.fmt, _common.percentile
BENCHMARKS = (
    "bench_waits",
    "bench_fanout",
    "bench_streams",
    "bench_sync",
    "bench_jsonstream",
    "bench_chaos",
    "bench_governor",
)
_TIMEOUT = 60


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, Any]]]:
    """Start every benchmark with ``--quick`` at once; each test reads its own result."""
    out = tmp_path_factory.mktemp("bench")
    procs = {}
    for name in BENCHMARKS:
        path = out / f"{name}.json"
        procs[name] = (
            subprocess.Popen(
                [sys.executable, "-m", f"benchmarks.{name}", "--quick", "--json", str(path)],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ),
            path,
        )
    results: dict[str, dict[str, Any]] = {}
    try:
        for name, (proc, path) in procs.items():
            stdout, stderr = proc.communicate(timeout=_TIMEOUT)
            results[name] = {
                "code": proc.returncode,
                "stdout": stdout,
                "stderr": stderr,
                "report": json.loads(path.read_text()) if path.exists() else None,
            }
        yield results
    finally:
        for proc, _path in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _finished(runs: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
    run = runs[name]
    assert run["code"] == 0, f"{name} failed:\n{run['stderr'][-3000:]}"
    assert run["report"] is not None, f"{name} wrote no JSON report"
    report: dict[str, Any] = run["report"]
    # The exact command is printed first, then the environment line.
    first, second = run["stdout"].splitlines()[:2]
    assert first.startswith(f"$ python -m benchmarks.{name} --quick")
    assert report["command"] == first[2:]
    assert "cores" in second
    return report


def _rows(report: dict[str, Any], index: int) -> list[str]:
    rows: list[str] = report["tables"][index]["row_names"]
    return rows


@pytest.mark.slow
def test_bench_waits_reports_every_contender(runs: dict[str, dict[str, Any]]) -> None:
    report = _finished(runs, "bench_waits")
    assert _rows(report, 0) == ["wait_all", "naive 1 s", "naive 0.1 s"]
    assert _rows(report, 1) == ["requests", "lag p99", "wall", "client CPU"]
    results = {r["name"]: r for r in report["values"]["results"]}
    count = report["values"]["count"]
    for name in ("wait_all", "naive 1 s"):
        result = results[name]
        assert result["sessions"] == count
        assert result["detected"] == count, name
        assert result["get_session"] > 0
        assert result["lag_p50_ms"] <= result["lag_p99_ms"] <= result["lag_max_ms"]
    # One shared poller reads many sessions per request; naive polling reads one.
    assert results["wait_all"]["session_records"] > results["wait_all"]["get_session"]
    assert results["naive 1 s"]["session_records"] == results["naive 1 s"]["get_session"]
    notes = "\n".join(report["notes"])
    assert "target requests <= 5% of naive 1 s" in notes
    assert "target lag p99 <= 300 ms" in notes


@pytest.mark.slow
def test_bench_fanout_reports_both_parts(runs: dict[str, dict[str, Any]]) -> None:
    report = _finished(runs, "bench_fanout")
    titles = [t["title"] for t in report["tables"]]
    # ET Engine job reads first (the judged ones), then Workbench as the secondary tables.
    assert [t.split(":")[0] for t in titles] == [
        "A. ET Engine job reads",
        "B. ET Engine job reads",
        "A. Workbench session reads (secondary)",
        "B. Workbench session reads (secondary)",
    ]
    assert _rows(report, 0) == [
        "fan_out",
        "raw aiohttp",
        "raw aiohttp, SDK timeouts",
        "gather + et.jobs.get",
        "fan_out + raw read",
        "fan_out, trust_env=False",
    ]
    assert _rows(report, 2) == [
        "fan_out",
        "raw aiohttp",
        "raw aiohttp, SDK timeouts",
        "gather + wb.sessions.get",
        "fan_out + raw read",
        "fan_out, trust_env=False",
    ]
    for index in (1, 3):
        assert _rows(report, index) == ["fan_out C=32", "fan_out C=100", "sequential loop"]
        assert "vs ceiling" in report["tables"][index]["columns"]
    values = report["values"]
    for part in ("part_a", "workbench_part_a"):
        for summary in values[part]["summary"].values():
            assert summary["reads"] == 200
            assert summary["rps"] > 0
            assert summary["gc_ms_median"] >= 0  # time in garbage collection, per round
    for part in ("part_b", "workbench_part_b"):
        assert values[part]["fan_out C=32"]["reads"] == 200
        assert values[part]["fan_out C=100"]["reads"] == 200
        assert values[part]["sequential loop"]["reads"] == 10
    part_b = values["part_b"]
    # The judged ratios are the ET Engine ones.
    assert values["speedup"] == pytest.approx(
        part_b["fan_out C=32"]["rps"] / part_b["sequential loop"]["rps"]
    )
    summary = values["part_a"]["summary"]
    assert values["throughput_ratio"] == pytest.approx(
        summary["fan_out"]["rps"] / summary["raw aiohttp"]["rps"]
    )
    # The judged ratio: the median over ABBA pairs of fan_out and raw aiohttp (two with
    # --quick), each a ratio of throughputs.
    paired = values["part_a"]["paired"]
    assert len(paired) == 2
    assert all(p > 0 for p in paired)
    assert values["paired_ratio"] == pytest.approx(statistics.median(paired))
    # Part B against the concurrency ceiling: C reads per 20 ms.
    assert part_b["fan_out C=32"]["ceiling_rps"] == pytest.approx(32 / 0.02)
    assert values["ceiling_ratio"] == pytest.approx(part_b["fan_out C=32"]["rps"] / 1600)
    # Client CPU per typed read, and raw aiohttp's, both measured.
    assert values["cpu_us"] > 0
    assert values["raw_cpu_us"] > 0
    notes = "\n".join(report["notes"])
    assert "floor A, fan_out >= 0.7x raw aiohttp throughput with no added latency" in notes
    assert "client CPU per typed read with no added latency" in notes
    assert "target B, fan_out (C=32) >= 0.9x its concurrency ceiling at 20 ms" in notes


@pytest.mark.slow
def test_bench_streams_reports_volume_and_latency(runs: dict[str, dict[str, Any]]) -> None:
    report = _finished(runs, "bench_streams")
    assert _rows(report, 0) == [
        "wb.jobs.output",
        "raw aiohttp + json.loads",
        "wb.jobs.output",
        "raw aiohttp + json.loads",
    ]
    assert _rows(report, 1) == [
        "yield - scheduled",
        "yield - written",
        "(emulator: written - scheduled)",
    ]
    for row in report["values"]["volume"]:
        assert row["in_order"], row
        assert row["payload_bytes"] == 8 * 1024 * 1024
        assert row["wire_bytes"] > row["payload_bytes"]  # JSON framing on the wire
    latency = report["values"]["latency"]
    assert latency["received"] == latency["chunks"] == 50
    assert latency["writes_recorded"] == 50
    assert latency["from_write"]["n"] == 50


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([3.0, 1.0, 2.0], 0) == 1.0
    assert fmt(percentile([], 50)) == "n/a"


def test_report_renders_text_markdown_and_json() -> None:
    report = Report("bench_x", ["--quick"])
    report.table("T", ["name", "value"], [["a", 1234.5], ["b", None]])
    report.note("a note")
    text = report.text()
    assert text.startswith("$ python -m benchmarks.bench_x --quick\n")
    assert "1,234.50" in text
    assert "n/a" in text
    assert text.endswith("a note")
    markdown = report.markdown()
    assert "| name | value |" in markdown
    assert "| a | 1,234.50 |" in markdown
    data = report.to_json()
    assert data["tables"][0]["row_names"] == ["a", "b"]
    assert data["command"] == "python -m benchmarks.bench_x --quick"


def _report(runs: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
    run = runs[name]
    assert run["code"] == 0, f"{name} failed:\n{run['stderr'][-3000:]}"
    assert run["report"] is not None, f"{name} wrote no JSON report"
    report: dict[str, Any] = run["report"]
    assert report["command"].startswith(f"python -m benchmarks.{name} --quick")
    assert report["cpu_count"] >= 1
    return report


@pytest.mark.slow
def test_bench_sync_reports_each_call_shape(runs: dict[str, dict[str, Any]]) -> None:
    report = _report(runs, "bench_sync")
    assert _rows(report, 0) == [
        "version() over HTTP",
        "no-I/O coroutine",
        "plain method (wait_token)",
        "async generator item",
        "no-I/O coroutine, anyio portal",
    ]
    for row in report["tables"][0]["rows"]:
        # both twins were timed
        assert float(row[2].replace(",", "")) > 0
        assert float(row[3].replace(",", "")) > 0


@pytest.mark.slow
def test_bench_jsonstream_reports_every_case(runs: dict[str, dict[str, Any]]) -> None:
    report = _report(runs, "bench_jsonstream")
    cases = _rows(report, 0)
    assert sum("log objects" in c for c in cases) == 2
    assert sum("records" in c for c in cases) == 2
    assert sum("lines" in c for c in cases) == 2
    assert _rows(report, 1) == ["records", "lines"]


@pytest.mark.slow
def test_bench_chaos_reports_every_api_and_no_duplicate(runs: dict[str, dict[str, Any]]) -> None:
    report = _finished(runs, "bench_chaos")
    assert _rows(report, 0) == [
        "Workbench sessions.launch",
        "Workbench jobs.launch",
        "Qiskit sessions.create",
        "Qiskit jobs.run",
        "LakeSail sessions.create",
        "ET Engine batches.create",
    ]
    for row in report["values"].values():
        told = row["returned"] + row["unknown"] + row["failed"]
        assert told == row["asked"]  # every caller got an answer or an error
        assert row["duplicates"] == 0  # a create is never blindly sent again
        assert row["lost"] == row["orphans"] - row["named"]
    # Where the API lets a create be looked up, nothing is lost (Qiskit sessions cannot be).
    for name, row in report["values"].items():
        if name != "Qiskit sessions.create":
            assert row["lost"] == 0, name


@pytest.mark.slow
def test_bench_governor_reports_every_contender(runs: dict[str, dict[str, Any]]) -> None:
    report = _finished(runs, "bench_governor")
    assert _rows(report, 0) == ["RateGovernor()", "old law", "no governor"]
    results = report["values"]["results"]
    for name, result in results.items():
        assert result["full"] > 0, name  # the server answered before the limit
        ok_total = sum(ok for ok, _ in result["per_second"])
        assert ok_total > 0, name
        # The limit was met: the requests in flight when it appeared were refused.
        assert result["throttled_all"] > 0, name
        assert 0 <= result["share_429_all"] <= 1
    # Without a governor the retries alone face the limit: most tries are refused.
    assert results["no governor"]["share_429_all"] > results["RateGovernor()"]["share_429_all"]
    assert "Goal: goodput >= 0.9 R" in "\n".join(report["notes"])
