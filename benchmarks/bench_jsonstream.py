"""Benchmark: aiocompute's JSON stream decoder against ijson and a raw_decode loop.

Run from the repository root::

    python -m benchmarks.bench_jsonstream             # full run (two minutes or so)
    python -m benchmarks.bench_jsonstream --quick     # small run, a few seconds
    python -m benchmarks.bench_jsonstream --markdown  # tables for docs/benchmarks.md
    python -m benchmarks.bench_jsonstream --json PATH # also write the figures as JSON

Cases:

1. log-like objects (``{"jobId", "outputType", "output"}``, NDJSON) fed in 1 KiB and 64 KiB
   chunks;
2. three big objects (2 MB, then 4 MB to show how time grows with size) fed in 4 KiB chunks,
   of two kinds (see :func:`big_object`): ``records``, dense small objects, and ``lines``,
   an array of log lines;
3. peak traced memory (tracemalloc) while decoding case 2, and the decoder's own share of it:
   the peak less what the objects decoded from the largest value hold (those are the
   caller's data, whatever decodes them).

Contenders, all fed the same pre-cut chunks:

* ``aiocompute``: ``JSONStreamDecoder.feed`` per chunk, then ``close``;
* ``ijson push``: ijson's yajl2_c ``items_coro`` fed chunk by chunk (the equivalent of feed);
* ``ijson file``: ijson's yajl2_c ``items`` reading a file-like object that returns one chunk
  per ``read()`` (ijson drives the loop, so it has no per-chunk Python call to pay);
* ``raw_decode``: a str buffer and a ``json.JSONDecoder.raw_decode`` loop, re-parsing the
  incomplete value after every chunk (quadratic for big values: capped in time).

References, not contenders: ``json.loads`` of each value given whole (the parse alone), and
the same with ``orjson.loads`` when orjson is installed (what a faster C parser could bring
at most: the decoder uses the json module).

Timings are the best of several rounds of CPU time (``time.process_time``; the contenders take
turns in each round, so load from other processes on a shared machine hits them alike);
MB/s are 10^6 bytes per second.
"""

from __future__ import annotations

import argparse
import codecs
import gc
import importlib
import json
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from typing import Any

from aiocompute._core.jsonstream import JSONStreamDecoder

from ._common import Report, add_common_args, fmt

try:
    import ijson
    import ijson.backends.yajl2_c as ijson_c
except ImportError:  # pragma: no cover - the bench extra installs it
    ijson = None
    ijson_c = None

orjson: Any
try:  # only for a reference column: the decoder does not use it (not a dependency)
    orjson = importlib.import_module("orjson")
except ImportError:  # pragma: no cover
    orjson = None


class _Capped(Exception):
    """A contender ran past its time cap."""


def log_stream(count: int) -> bytes:
    """``count`` log-like objects, one per line, about 200 bytes each."""
    lines = []
    for i in range(count):
        record = {
            "jobId": f"j{i % 50}",
            "outputType": "stderr" if i % 7 == 0 else "stdout",
            "output": f"line {i} of the job's output: step {i * 7 % 1000} done, "
            f"{i % 97} items processed, elapsed {i * 0.013:.3f}s, status ok, nothing to report; "
            f"next checkpoint in {i % 60} s",
        }
        lines.append(json.dumps(record, separators=(",", ":")))
    return ("\n".join(lines) + "\n").encode()


def big_object(size: int, seed: int, kind: str = "records") -> bytes:
    """One JSON object of about ``size`` bytes: a finished job's whole output.

    ``records``: many small output records (dense structure, escapes, non-ASCII text);
    ``lines``: the output as an array of log lines ("... [INFO] step 7: processed ...",
    one in ten with a quoted name and a Windows path): few brackets, long strings.
    """
    items = []
    total = 0
    i = 0
    while total < size:
        if kind == "records":
            rec: Any = {
                "line": i,
                "outputType": "stdout" if (i + seed) % 5 else "stderr",
                "text": f"record {i} of object {seed}: value={i * 31 % 977} \u00e9t\u00e9 ok",
                "tags": ["a", "b", i % 3],
            }
        else:
            rec = (
                f"2026-01-0{seed + 1}T10:{i // 60 % 60:02d}:{i % 60:02d}Z [INFO] step "
                f"{i * 7 % 1000}: processed {i % 97} items in {i * 0.013:.3f}s"
            )
            if i % 10 == 0:  # now and then a quoted name and a Windows path
                rec += f' while reading "input {i}.csv" from C:\\data\\run{i % 13}'

        text = json.dumps(rec, separators=(",", ":"))
        items.append(text)
        total += len(text) + 1
        i += 1
    head = f'{{"jobId":"big{seed}","status":"finished","count":{i},"output":['
    return (head + ",".join(items) + "]}").encode()


def big_stream(size: int, kind: str = "records") -> bytes:
    """Three big objects separated by newlines."""
    return b"\n".join(big_object(size, seed, kind) for seed in range(3)) + b"\n"


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


# -- contenders ---------------------------------------------------------------------------


def run_aiocompute(chunks: Sequence[bytes], cap: float) -> int:
    decoder = JSONStreamDecoder()
    count = 0
    feed = decoder.feed
    for chunk in chunks:
        count += len(feed(chunk))
    return count + len(decoder.close())


def run_ijson_push(chunks: Sequence[bytes], cap: float) -> int:
    out = ijson.sendable_list()
    coro = ijson_c.items_coro(out, "", multiple_values=True)
    count = 0
    for chunk in chunks:
        coro.send(chunk)
        count += len(out)
        del out[:]
    coro.close()
    return count + len(out)


class _ChunkReader:
    """A file-like object whose read() returns the next pre-cut chunk."""

    def __init__(self, chunks: Sequence[bytes]) -> None:
        self._it = iter(chunks)

    def read(self, size: int = -1) -> bytes:
        if size == 0:  # ijson probes with read(0) to learn bytes vs str
            return b""
        return next(self._it, b"")


def run_ijson_file(chunks: Sequence[bytes], cap: float) -> int:
    size = max(len(c) for c in chunks)
    items = ijson_c.items(_ChunkReader(chunks), "", multiple_values=True, buf_size=size)
    return sum(1 for _ in items)


def run_raw_decode(chunks: Sequence[bytes], cap: float) -> int:
    decoder = json.JSONDecoder()
    utf8 = codecs.getincrementaldecoder("utf-8")()
    raw_decode = decoder.raw_decode
    buf = ""
    count = 0
    deadline = time.perf_counter() + cap
    for chunk in chunks:
        buf += utf8.decode(chunk)
        pos = 0
        n = len(buf)
        while True:
            while pos < n and buf[pos] in " \t\r\n":
                pos += 1
            if pos >= n:
                break
            try:
                _, pos = raw_decode(buf, pos)
            except json.JSONDecodeError:
                break
            count += 1
        buf = buf[pos:]
        if time.perf_counter() > deadline:
            raise _Capped
    return count


CONTENDERS: dict[str, Callable[[Sequence[bytes], float], int]] = {
    "aiocompute": run_aiocompute,
    "ijson push": run_ijson_push,
    "ijson file": run_ijson_file,
    "raw_decode": run_raw_decode,
}


def run_once(
    fn: Callable[[Sequence[bytes], float], int], chunks: Sequence[bytes], expected: int, cap: float
) -> float | None:
    """CPU seconds of one run, or None if it passed ``cap`` seconds (wall clock)."""
    gc.collect()
    start = time.process_time()
    try:
        got = fn(chunks, cap)
    except _Capped:
        return None
    elapsed = time.process_time() - start
    if got != expected:
        raise SystemExit(f"{fn.__name__} decoded {got} values, expected {expected}")
    return elapsed


def measure(
    data: bytes,
    chunk_size: int,
    expected: int,
    repeat: int,
    cap: float,
) -> dict[str, float | None]:
    """Best CPU time of each contender over ``repeat`` rounds (None: capped), taking turns so
    that a burst of load from elsewhere on the machine hits them all alike."""
    chunks = chunked(data, chunk_size)
    labels = [lb for lb in CONTENDERS if ijson is not None or not lb.startswith("ijson")]
    times: dict[str, float | None] = {}
    for round_ in range(repeat):
        for label in labels:
            if label in times and (times[label] is None or (times[label] or 0) > 3.0):
                continue  # capped, or slow enough that one run tells
            t = run_once(CONTENDERS[label], chunks, expected, cap)
            old = times.get(label)
            times[label] = t if round_ == 0 or old is None or t is None else min(old, t)
        t = whole_values_time(data, expected)
        times[REFERENCE] = min(times.get(REFERENCE) or t, t)
        if orjson is not None:
            t = whole_values_time(data, expected, orjson.loads)
            times[ORJSON_REFERENCE] = min(times.get(ORJSON_REFERENCE) or t, t)
    return times


#: Not a contender: json.loads of each whole value, not streamed (the parse alone).
REFERENCE = "json.loads whole"
#: Not a contender either: the same with orjson (if installed), the parse alone with a faster
#: C parser, to show how much replacing the parser could bring at most.
ORJSON_REFERENCE = "orjson.loads whole"
REFERENCES = (REFERENCE, ORJSON_REFERENCE)


def whole_values_time(
    data: bytes, expected: int, loads: Callable[[bytes], Any] = json.loads
) -> float:
    """CPU seconds to ``loads`` each value of ``data`` (one per line) given whole."""
    values = [v for v in data.split(b"\n") if v]
    assert len(values) == expected
    gc.collect()
    start = time.process_time()
    for value in values:
        loads(value)
    return time.process_time() - start


def throughput_row(name: str, size: int, times: dict[str, float | None], cap: float) -> list[str]:
    """A table row: MB/s of each contender, then how many times faster aiocompute is."""
    ours = times["aiocompute"]
    assert ours is not None
    cells = [name, fmt(size / 1e6, 1)]
    for label in [*CONTENDERS, *REFERENCES]:
        t = times.get(label, 0.0)
        cells.append("-" if t == 0.0 else "capped" if t is None else fmt(size / t / 1e6, 1))
    for label in CONTENDERS:
        if label == "aiocompute":
            continue
        t = times.get(label, 0.0)
        if t == 0.0:
            cells.append("-")
        elif t is None:
            cells.append(f"> {cap / ours:.0f}x")  # it ran past the cap
        else:
            cells.append(f"{t / ours:.2f}x")
    return cells


def peak_memory(data: bytes, chunk_size: int) -> tuple[int, int, int]:
    """Peak traced bytes while decoding ``data`` (values dropped as they come); the size of
    the largest decoded value (the traced bytes its objects hold: the caller's, not the
    decoder's); and, for reference, what ``json.loads`` needs for the largest value alone: its
    input bytes plus the peak of the call (the decoded text and the resulting objects)."""
    chunks = chunked(data, chunk_size)
    gc.collect()
    tracemalloc.start()
    decoder = JSONStreamDecoder()
    for chunk in chunks:
        decoder.feed(chunk)  # the values are dropped at once
    decoder.close()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    largest = max(data.split(b"\n"), key=len)
    tracemalloc.start()
    value: Any = json.loads(largest)
    result, ref_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del value
    return peak, result, ref_peak + len(largest)


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add_common_args(parser)
    args = parser.parse_args(argv)
    report = Report("bench_jsonstream", argv)
    quick = args.quick
    repeat = 1 if quick else 5
    cap = 2.0 if quick else 20.0
    n_logs = 20_000 if quick else 200_000
    big = 256 * 1024 if quick else 2 * 1000 * 1000

    def progress(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    columns = ["case", "MB", *[f"{c} MB/s" for c in [*CONTENDERS, *REFERENCES]]]
    columns += [f"x {c}" for c in CONTENDERS if c != "aiocompute"]
    rows: list[list[str]] = []
    raw: dict[str, Any] = {}

    logs = log_stream(n_logs)
    for size in (1024, 64 * 1024):
        name = f"1. {n_logs:,} log objects, {size // 1024} KiB chunks"
        progress(name)
        times = measure(logs, size, n_logs, repeat, cap)
        rows.append(throughput_row(name, len(logs), times, cap))
        raw[name] = {"bytes": len(logs), "cpu_seconds": times}

    linearity: dict[str, dict[str, float | None]] = {}
    streams: dict[str, tuple[bytes, bytes]] = {}
    for kind in ("records", "lines"):
        small, large = big_stream(big, kind), big_stream(2 * big, kind)
        streams[kind] = (small, large)
        pair = []
        for data, size in ((small, big), (large, 2 * big)):
            name = f"2. 3 x {size / 1e6:.2g} MB {kind}, 4 KiB chunks"
            progress(name)
            times = measure(data, 4096, 3, repeat, cap)
            rows.append(throughput_row(name, len(data), times, cap))
            raw[name] = {"bytes": len(data), "cpu_seconds": times}
            pair.append(times)
        for label in [*CONTENDERS, REFERENCE]:
            a, b = pair[0].get(label), pair[1].get(label)
            linearity.setdefault(kind, {})[label] = None if a is None or b is None else b / a
    report.table(
        f"Throughput, best of {repeat} rounds of CPU time "
        "(x other: how many times faster aiocompute is)",
        columns,
        rows,
    )
    report.table(
        "Time for 3 objects of 2S bytes / time for 3 objects of S bytes, 4 KiB chunks "
        "(2.00 = linear)",
        ["content", *CONTENDERS, REFERENCE],
        [
            [kind, *("capped" if r is None else f"{r:.2f}" for r in ratios.values())]
            for kind, ratios in linearity.items()
        ],
    )

    mem_rows = []
    for kind, both in streams.items():
        for data in both:
            progress(f"3. memory, {kind}, {len(data) / 1e6:.2g} MB")
            largest = max(len(x) for x in data.split(b"\n"))
            peak, result, ref = peak_memory(data, 4096)
            bound = 2 * largest + 8 * 1024 * 1024
            mem_rows.append(
                [
                    kind,
                    fmt(largest / 2**20),
                    fmt(peak / 2**20),
                    fmt(bound / 2**20),
                    "yes" if peak <= bound else "NO",
                    fmt(result / 2**20),
                    fmt((peak - result) / 2**20),
                    "yes" if peak - result <= bound else "NO",
                    fmt(ref / 2**20),
                ]
            )
            raw[f"memory {kind} {largest}"] = {
                "peak": peak,
                "decoded_value": result,
                "json_loads_peak": ref,
            }
    report.table(
        "Peak traced memory (tracemalloc) while decoding case 2 in 4 KiB chunks, MiB "
        "(decoded value: what the objects decoded from the largest value hold, the caller's "
        "data; peak - that: the decoder's own share)",
        [
            "content",
            "largest value",
            "peak",
            "2 x value + 8",
            "peak within",
            "decoded value",
            "peak - decoded value",
            "that within",
            "bytes + json.loads alone",
        ],
        mem_rows,
    )
    report.values = raw
    version = getattr(ijson, "__version__", "missing")
    report.note(f"ijson {version}, yajl2_c backend; MB/s are 10^6 bytes per second of CPU time.")
    report.note(
        "ijson push: items_coro fed chunk by chunk (the equivalent of feed); ijson file: "
        "items() reading a file-like object that returns one chunk per read()."
    )
    report.note(
        f"{REFERENCE}: json.loads of each value given whole, not streamed: the parse alone, "
        "for reference (not a contender)."
    )
    orjson_version = getattr(orjson, "__version__", None)
    report.note(
        f"{ORJSON_REFERENCE}: the same with orjson {orjson_version}, for reference (not a "
        "contender; the decoder uses the json module)."
        if orjson_version
        else f"{ORJSON_REFERENCE}: orjson is not installed (-)."
    )
    report.note(
        f"raw_decode re-parses the incomplete value after every chunk; a run past {cap:.0f} s "
        "is stopped (capped) and the speed-up shown is a lower bound."
    )
    report.emit(json_path=args.json, markdown=args.markdown)


if __name__ == "__main__":
    main()
