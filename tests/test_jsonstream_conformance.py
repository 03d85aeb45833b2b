"""JSONTestSuite (N. Seriot, MIT) run through the stream decoder, whole and one byte at a time.

The project carries its own copy of the suite's ``test_parsing`` files, with the suite's
licence, under ``tests/conformance/JSONTestSuite``. If it is missing these tests fail: they
must never pass by testing nothing.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from aiocompute._core.jsonstream import DecodedValue, JSONStreamDecoder
from aiocompute._exceptions import StreamDecodeError

SUITE = Path(__file__).resolve().parent / "conformance" / "JSONTestSuite" / "test_parsing"
MISSING = "<JSONTestSuite/test_parsing is missing>"
FILES = sorted(p.name for p in SUITE.glob("*.json")) if SUITE.is_dir() else [MISSING]

# n_ files that are nevertheless a valid *stream*: zero or several values, each valid alone.
VALID_AS_STREAM: dict[str, tuple[str, list[Any]]] = {
    "n_structure_no_data.json": ("an empty stream holds no values", []),
    "n_single_space.json": ("whitespace alone is an empty stream", []),
    "n_structure_double_array.json": ("two arrays back to back", [[], []]),
    "n_structure_object_with_trailing_garbage.json": (
        "an object, a space, then a string value",
        [{"a": True}, "x"],
    ),
}


def _read(name: str) -> bytes:
    assert name != MISSING, f"JSONTestSuite is missing: {SUITE}"
    return (SUITE / name).read_bytes()


def _decode(data: bytes, chunk: int) -> list[DecodedValue]:
    decoder = JSONStreamDecoder()
    out: list[DecodedValue] = []
    for i in range(0, len(data), chunk):
        out += decoder.feed(data[i : i + chunk])
    return out + decoder.close()


def _outcome(data: bytes, chunk: int) -> tuple[str, Any]:
    """("ok", [(value, start, end)...]) or ("error", (offset, truncated)); nothing else."""
    failure: StreamDecodeError | None = None
    try:
        values = _decode(data, chunk)
    except StreamDecodeError as e:
        failure = e
    if failure is not None:
        assert 0 <= failure.offset <= len(data)
        assert isinstance(failure.excerpt, str)
        return "error", (failure.offset, failure.truncated)
    return "ok", [(v.value, v.start, v.end) for v in values]


def same(a: Any, b: Any) -> bool:
    """Equal as JSON values: same types, floats equal bit for bit (so -0.0 != 0.0).

    Iterative, so that 500 levels of nesting do not exhaust the stack under pytest.
    """
    todo = [(a, b)]
    while todo:
        x, y = todo.pop()
        if type(x) is not type(y):
            return False
        if isinstance(x, float):
            if not (x == y and math.copysign(1.0, x) == math.copysign(1.0, y)):
                return False
        elif isinstance(x, list):
            if len(x) != len(y):
                return False
            todo.extend(zip(x, y, strict=True))
        elif isinstance(x, dict):
            if x.keys() != y.keys():
                return False
            todo.extend((x[k], y[k]) for k in x)
        elif x != y:
            return False
    return True


def test_suite_is_present() -> None:
    assert SUITE.is_dir(), f"JSONTestSuite is missing: {SUITE}"
    names = list(SUITE.glob("*.json"))
    assert len(names) >= 300
    assert {n.name[:2] for n in names} == {"y_", "n_", "i_"}
    assert all((SUITE / name).is_file() for name in VALID_AS_STREAM)


def test_same_helper_tells_floats_apart() -> None:
    assert same([0.0, {"a": 1}], [0.0, {"a": 1}])
    assert not same(-0.0, 0.0)
    assert not same(1, 1.0)
    assert not same(True, 1)
    assert not same([1], [1, 2])


@pytest.mark.parametrize("name", [f for f in FILES if not f.startswith(("n_", "i_"))])
def test_y_files_decode_like_json_loads(name: str) -> None:
    data = _read(name)
    expected = json.loads(data.decode("utf-8"))
    for chunk in (len(data), 1):
        values = _decode(data, chunk)
        assert len(values) == 1, (name, chunk)
        value = values[0]
        assert same(value.value, expected), (name, chunk, value.value)
        # The span is the value's text, with only whitespace around it.
        assert data[: value.start].strip(b" \t\r\n") == b""
        assert data[value.end :].strip(b" \t\r\n") == b""
        assert same(json.loads(data[value.start : value.end].decode("utf-8")), expected)


@pytest.mark.parametrize("name", [f for f in FILES if f.startswith("n_") or f == MISSING])
def test_n_files_are_refused(name: str) -> None:
    data = _read(name)
    whole = _outcome(data, max(1, len(data)))
    bytewise = _outcome(data, 1)
    if name in VALID_AS_STREAM:
        _reason, expected = VALID_AS_STREAM[name]
        assert whole[0] == "ok", name
        assert same([v for v, _, _ in whole[1]], expected)
        for value, start, end in whole[1]:
            assert same(json.loads(data[start:end]), value)
    else:
        assert whole[0] == "error", (name, whole)
    # Whatever the chunking, the same verdict at the same byte.
    assert bytewise == whole, name


@pytest.mark.parametrize("name", [f for f in FILES if f.startswith("i_") or f == MISSING])
def test_i_files_decode_or_raise_stream_error(name: str) -> None:
    data = _read(name)
    whole = _outcome(data, max(1, len(data)))
    bytewise = _outcome(data, 1)
    assert whole[0] in ("ok", "error")
    if whole[0] == "ok":
        assert len(whole[1]) == 1
        assert bytewise[0] == "ok"
        assert same(bytewise[1][0][0], whole[1][0][0]), name
        assert bytewise[1][0][1:] == whole[1][0][1:], name
    else:
        assert bytewise == whole, name
