"""The sans-I/O JSON stream decoder: values, offsets, chunking, limits, errors, linear cost."""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiocompute._core import jsonstream
from aiocompute._core.jsonstream import DecodedValue, JSONStreamDecoder
from aiocompute._exceptions import ProtocolError, StreamDecodeError


def decode(
    data: bytes, chunks: int | Iterable[int] | None = None, **kwargs: Any
) -> list[DecodedValue]:
    """Feed ``data`` cut in pieces of ``chunks`` bytes (an int, or successive sizes), close."""
    decoder = JSONStreamDecoder(**kwargs)
    out: list[DecodedValue] = []
    if chunks is None:
        chunks = max(1, len(data))
    sizes = iter([chunks] * len(data)) if isinstance(chunks, int) else iter(chunks)
    pos = 0
    while pos < len(data):
        size = next(sizes, len(data))
        out += decoder.feed(data[pos : pos + size])
        pos += size
    return out + decoder.close()


def values_of(data: bytes, chunks: int | Iterable[int] | None = None) -> list[Any]:
    return [v.value for v in decode(data, chunks)]


def error_of(
    data: bytes, chunks: int | Iterable[int] | None = None, **kw: Any
) -> StreamDecodeError:
    with pytest.raises(StreamDecodeError) as info:
        decode(data, chunks, **kw)
    assert type(info.value) is StreamDecodeError
    return info.value


def check_spans(data: bytes, values: list[DecodedValue]) -> None:
    """Each span is exactly a value's JSON text, in order, with only whitespace between."""
    pos = 0
    for item in values:
        assert data[pos : item.start].strip(b" \t\r\n") == b""
        if pos and pos == item.start:
            # Values side by side: never two numbers/literals run together ("12" is not 1, 2).
            assert not (data[pos - 1 : pos].isalnum() and data[pos : pos + 1].isalnum())
        text = data[item.start : item.end]
        assert text == text.strip(b" \t\r\n")
        assert json.loads(text.decode("utf-8")) == item.value
        pos = item.end
    assert data[pos:].strip(b" \t\r\n") == b""


# A stream exercising every kind of split: strings, escapes (incl. a surrogate pair),
# multi-byte UTF-8, numbers, literals, nesting, and values with and without separators.
MIXED = (
    b'{"jobId": "j1", "outputType": "stdout", "output": "line \\"1\\" \\\\ \\n done"}\n'
    b'[1, -2.5e-3, 0, -0, 1E+2, true, false, null, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"]'
    b'{"esc": "\\u00e9\\ud83d\\ude00\\/\\b\\f\\r\\t", "nested": {"a": [[], {}, [{"b": []}]]}}'
    b'  123 "str"true\r\n\tfalse null[]{}-0.5 "\\\\" 7\n'
    b'{\n  "pretty": [\n    1,\n    2\n  ],\n  "x": {"y": "}]{["}\n}\n'
    b"42"
)
MIXED_VALUES = [
    {"jobId": "j1", "outputType": "stdout", "output": 'line "1" \\ \n done'},
    [1, -2.5e-3, 0, 0, 100.0, True, False, None, "café € 😀"],
    {"esc": "é😀/\b\f\r\t", "nested": {"a": [[], {}, [{"b": []}]]}},
    123,
    "str",
    True,
    False,
    None,
    [],
    {},
    -0.5,
    "\\",
    7,
    {"pretty": [1, 2], "x": {"y": "}]{["}},
    42,
]


# -- basics -------------------------------------------------------------------------------


def test_mixed_stream_whole() -> None:
    values = decode(MIXED)
    assert [v.value for v in values] == MIXED_VALUES
    check_spans(MIXED, values)
    assert values[0].start == 0
    assert values[-1].end == len(MIXED)


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7, 16, 64, 1000])
def test_mixed_stream_any_fixed_chunking(chunk: int) -> None:
    assert decode(MIXED, chunk) == decode(MIXED)


def test_mixed_stream_every_two_piece_split() -> None:
    whole = decode(MIXED)
    for cut in range(1, len(MIXED)):
        assert decode(MIXED, [cut]) == whole, cut


def test_mixed_stream_random_chunkings() -> None:
    rng = random.Random(1234)
    whole = decode(MIXED)
    for _ in range(200):
        sizes = [rng.choice([1, 1, 2, 3, 5, 8, 13, 40, 100]) for _ in range(len(MIXED))]
        assert decode(MIXED, sizes) == whole


def test_decoded_value_is_small_and_frozen() -> None:
    item = decode(b'{"a": 1}')[0]
    assert item == DecodedValue({"a": 1}, 0, 8)
    assert (item.value, item.start, item.end) == ({"a": 1}, 0, 8)
    value, start, end = item
    assert (value, start, end) == ({"a": 1}, 0, 8)
    with pytest.raises(AttributeError):
        item.start = 3  # type: ignore[misc]


def test_ndjson_concatenated_and_pretty_streams_agree() -> None:
    records = [{"jobId": "j1", "output": f"line {i}", "n": [i, {"k": None}]} for i in range(20)]
    ndjson = "".join(json.dumps(r) + "\n" for r in records).encode()
    crlf = "".join(json.dumps(r) + "\r\n" for r in records).encode()
    concatenated = "".join(json.dumps(r, separators=(",", ":")) for r in records).encode()
    pretty = "".join(json.dumps(r, indent=2) + "\n" for r in records).encode()
    for stream in (ndjson, crlf, concatenated, pretty):
        for chunk in (1, 7, 100, len(stream)):
            values = decode(stream, chunk)
            assert [v.value for v in values] == records
            check_spans(stream, values)


def test_values_are_returned_as_soon_as_complete() -> None:
    decoder = JSONStreamDecoder()
    assert decoder.feed(b'{"a": 1}\n{"b"') == [DecodedValue({"a": 1}, 0, 8)]
    assert decoder.feed(b": 2}") == [DecodedValue({"b": 2}, 9, 17)]
    assert decoder.feed(b'"x" [1') == [DecodedValue("x", 17, 20)]
    assert decoder.feed(b"]") == [DecodedValue([1], 21, 24)]
    assert decoder.close() == []


def test_top_level_scalars_need_a_delimiter_or_eof() -> None:
    decoder = JSONStreamDecoder()
    assert decoder.feed(b"12") == []
    assert decoder.feed(b"3") == []
    assert decoder.feed(b" tru") == [DecodedValue(123, 0, 3)]
    assert decoder.feed(b"e") == []  # "truex" would be garbage: wait for the next byte
    assert decoder.feed(b"\n-4.5e") == [DecodedValue(True, 4, 8)]
    assert decoder.feed(b"1") == []
    assert decoder.close() == [DecodedValue(-45.0, 9, 15)]


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        (b"1 2 3", [1, 2, 3]),
        (b"1\n2\n", [1, 2]),
        (b'"a""b"', ["a", "b"]),
        (b"{}{}[]", [{}, {}, []]),
        (b"[1]2", [[1], 2]),
        (b"1[2]", [1, [2]]),
        (b'true"x"null', [True, "x", None]),
        (b'0"x"', [0, "x"]),
        (b"-0", [0]),
        (b"0.5", [0.5]),
        (b"1e5 1E-5", [1e5, 1e-5]),
        (b" \t\r\n", []),
        (b"", []),
    ],
)
def test_stream_semantics(stream: bytes, expected: list[Any]) -> None:
    for chunk in (1, 2, max(1, len(stream))):
        values = decode(stream, chunk)
        assert [v.value for v in values] == expected
        check_spans(stream, values)


def test_offset_and_buffered() -> None:
    decoder = JSONStreamDecoder()
    assert (decoder.offset, decoder.buffered) == (0, 0)
    decoder.feed(b'{"a": 1} {"b": ')
    assert decoder.offset == 15
    assert decoder.buffered == 6  # the incomplete value starts at byte 9
    decoder.feed(b"2}   ")
    assert (decoder.offset, decoder.buffered) == (20, 0)
    decoder.feed(b"77")
    assert (decoder.offset, decoder.buffered) == (22, 2)
    assert decoder.close() == [DecodedValue(77, 20, 22)]


def test_consumed_bytes_are_dropped() -> None:
    decoder = JSONStreamDecoder()
    line = json.dumps({"jobId": "j", "output": "x" * 100}).encode() + b"\n"
    for _ in range(1000):
        assert len(decoder.feed(line)) == 1
        assert decoder.buffered == 0
    assert decoder.offset == 1000 * len(line)


def test_accepts_bytearray_and_memoryview() -> None:
    decoder = JSONStreamDecoder()
    assert decoder.feed(bytearray(b"[1]")) == [DecodedValue([1], 0, 3)]
    assert decoder.feed(memoryview(b' {"a": 2}')) == [DecodedValue({"a": 2}, 4, 12)]


def test_values_convenience() -> None:
    chunks = [b'{"a"', b": 1}\n[2", b", 3] 4"]
    assert list(JSONStreamDecoder().values(chunks)) == [{"a": 1}, [2, 3], 4]
    with pytest.raises(StreamDecodeError):
        list(JSONStreamDecoder().values([b"[1, 2"]))


def test_close_is_idempotent_and_final() -> None:
    decoder = JSONStreamDecoder()
    decoder.feed(b"5")
    assert decoder.close() == [DecodedValue(5, 0, 1)]
    assert decoder.close() == []
    with pytest.raises(StreamDecodeError):
        decoder.feed(b"6")


def test_constructor_refuses_nonsense_limits() -> None:
    with pytest.raises(ValueError, match="max_value_bytes"):
        JSONStreamDecoder(0)
    with pytest.raises(ValueError, match="max_depth"):
        JSONStreamDecoder(max_depth=0)


def test_decoder_is_sans_io() -> None:
    source = open(jsonstream.__file__, encoding="utf-8").read()  # noqa: SIM115
    for word in ("asyncio", "import socket", "aiohttp", "anyio"):
        assert word not in source


# -- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stream", "offset"),
    [
        (b"[1,]", 3),
        (b'{"a": 1}}', 8),
        (b'{"a": 1} ]', 9),
        (b"[NaN]", 1),
        (b"NaN", 0),
        (b"Infinity", 0),
        (b"[-Infinity]", 1),
        (b'{"a": [1, {"b": NaN}]}', 16),
        (b"01", 0),
        (b"[01]", 2),
        (b"1.", 0),
        (b"1.e5", 0),
        (b"+1", 0),
        (b".5", 0),
        (b"truex", 0),
        (b"tRue", 0),
        (b"123abc", 0),
        (b"1.5.3", 0),
        (b'"a\x01b"', 2),
        (b'"a\tb"', 2),
        (b'["\\x"]', 2),
        (b'["\\u12G4"]', 3),
        (b"[1 2]", 3),
        (b'{"a" 1}', 5),
        (b"{'a': 1}", 1),
        (b'{"a": 1,}', 8),
        (b"[1] x", 4),
        (b"\x00", 0),
        (b"\xef\xbb\xbf{}", 0),
        (b"/* c */ 1", 0),
        (b"\x0c1", 0),
    ],
)
def test_garbage_raises_with_offset(stream: bytes, offset: int) -> None:
    for chunk in (1, 2, 3, len(stream)):
        err = error_of(stream, chunk)
        assert isinstance(err, ProtocolError)
        assert err.offset == offset, (stream, chunk, str(err))
        assert err.truncated is False
        assert err.excerpt
        assert f"at byte {offset}" in str(err)
        assert "\x00" not in err.excerpt


@pytest.mark.parametrize(
    ("stream", "offset"),
    [
        (b'["\xff"]', 2),  # not UTF-8 at all
        (b'["\xc3\x28"]', 2),  # bad continuation byte
        (b'["\xc0\xaf"]', 2),  # overlong
        (b'["\xed\xa0\x80"]', 2),  # an encoded surrogate
        (b'["\xf4\x90\x80\x80"]', 2),  # beyond U+10FFFF
        (b'{"a": 1}\n\x81', 9),  # a stray continuation byte between values
        (b'"ok" "\xe9t\xe9"', 6),  # Latin-1
    ],
)
def test_invalid_utf8_raises(stream: bytes, offset: int) -> None:
    for chunk in (1, 2, len(stream)):
        err = error_of(stream, chunk)
        assert err.offset == offset
        assert "UTF-8" in str(err)
        assert err.truncated is False


@pytest.mark.parametrize(
    "stream",
    [
        b"[1, 2",
        b'{"a": "unfinished',
        b'{"a": "x\\',
        b'"\\u12',
        b'["\\ud83d\\ude',
        b"[-",
        b"[1.",
        b"[1e+",
        b"[tr",
        b'{"a"',
        b'{"a":',
        b"nul",
        b"-",
        b'"caf\xc3',
        b'[1] {"b": [',
    ],
)
def test_stream_cut_mid_value_is_truncated(stream: bytes) -> None:
    for chunk in (1, 2, len(stream)):
        err = error_of(stream, chunk)
        assert err.truncated is True, (stream, chunk)
        assert err.offset == len(stream)
        assert "ended in the middle of a value" in str(err)


def test_values_before_a_cut_are_delivered_before_close_raises() -> None:
    decoder = JSONStreamDecoder()
    assert [v.value for v in decoder.feed(b'{"a": 1}\n{"b": [1, ')] == [{"a": 1}]
    with pytest.raises(StreamDecodeError) as info:
        decoder.close()
    assert info.value.truncated is True
    assert "started at byte 9" in str(info.value)


def test_decoder_is_unusable_after_an_error() -> None:
    decoder = JSONStreamDecoder()
    with pytest.raises(StreamDecodeError) as first:
        decoder.feed(b"[1,,2]")
    for again in (lambda: decoder.feed(b"[1]"), decoder.close, lambda: decoder.feed(b"")):
        with pytest.raises(StreamDecodeError) as info:
            again()
        assert info.value.offset == first.value.offset == 3
        assert "already failed" in str(info.value)


def test_error_excerpt_shows_the_bytes_around_it() -> None:
    stream = b'{"jobId": "j1", "output": "fine"}\n{"jobId": "j2", "output": oops}\n'
    err = error_of(stream)
    assert err.offset == stream.index(b"oops")
    assert "oops" in err.excerpt
    assert len(err.excerpt) <= 80


def test_error_excerpt_redacts_credentials() -> None:
    err = error_of(b'{"token": "sk-very-secret-value", "x": ]')
    assert "sk-very-secret-value" not in err.excerpt
    assert "sk-very-secret-value" not in str(err)


# -- limits -------------------------------------------------------------------------------


def test_depth_limit() -> None:
    ok = b"[" * 512 + b"]" * 512
    assert len(decode(ok)) == 1
    assert len(decode(ok, 7)) == 1
    too_deep = b"[" * 513 + b"]" * 513
    for chunk in (1, 64, 4096, len(too_deep)):
        err = error_of(too_deep, chunk)
        assert err.offset == 512
        assert "max_depth=512" in str(err)
    objects = b'{"a":' * 600 + b"1" + b"}" * 600
    assert error_of(objects, 100).offset == 512 * 5
    assert len(decode(b"[[[1]]]", max_depth=3)) == 1
    assert error_of(b"[[[[1]]]]", max_depth=3).offset == 3


@pytest.mark.parametrize("chunk", [1, 3, 1000, 100_000])
def test_huge_nesting_raises_instead_of_crashing(chunk: int) -> None:
    stream = b"[" * 100_000
    if chunk == 1:
        stream = stream[:5000]  # enough to cross the limit one byte at a time
    err = error_of(stream, chunk)
    assert err.offset == 512
    assert err.truncated is False


def test_brackets_inside_strings_do_not_count_towards_depth() -> None:
    value = {"text": "[" * 2000 + "{" * 2000, "list": ["]]]]", "{{{{"]}
    stream = json.dumps(value).encode()
    for chunk in (1, 5, 100, len(stream)):
        assert values_of(stream, chunk) == [value]


def test_value_larger_than_max_value_bytes_raises_early() -> None:
    decoder = JSONStreamDecoder(max_value_bytes=10_000)
    decoder.feed(b'{"ok": 1}\n')
    decoder.feed(b'{"big": "')
    fed = 0
    for _ in range(9):  # 9 + 9000 bytes of the value: still within the limit
        assert decoder.feed(b"x" * 1000) == []
        fed += 1000
        assert decoder.buffered == 9 + fed
    with pytest.raises(StreamDecodeError) as info:
        decoder.feed(b"x" * 1000)  # crosses the limit: raised now, not when the value ends
    assert decoder.buffered == 0  # nothing more was kept
    assert info.value.offset == 10 + 10_000
    assert "max_value_bytes=10000" in str(info.value)
    assert info.value.truncated is False


@pytest.mark.parametrize("chunk", [1, 100, 4096, 50_000])
def test_max_value_bytes_applies_whatever_the_chunking(chunk: int) -> None:
    fits = json.dumps({"a": "x" * 980}).encode()
    assert len(fits) == 989
    assert values_of(fits * 3, chunk) == [json.loads(fits)] * 3
    assert len(decode(fits, chunk, max_value_bytes=989)) == 1
    err = error_of(fits, chunk, max_value_bytes=988)
    assert err.offset == 988
    big_number = b"1" * 2000 + b" "
    assert error_of(big_number, chunk, max_value_bytes=1000).offset == 1000


def test_very_long_numbers_raise_stream_errors() -> None:
    err = error_of(b"[" + b"1" * 5000 + b"]")  # beyond int's default digit limit
    assert err.offset == 0


# -- linear cost (work counted, never timed) ----------------------------------------------


class CountingScanner:
    """Wraps the decoder's json scanner, adding up the characters each call may read."""

    def __init__(self, decoder: JSONStreamDecoder) -> None:
        self.inner = decoder._scan
        self.chars = 0
        self.calls = 0

    def __call__(self, text: str, pos: int) -> tuple[Any, int]:
        self.calls += 1
        try:
            value, end = self.inner(text, pos)
        except BaseException:
            self.chars += len(text) - pos  # a failed parse may have read to the end
            raise
        self.chars += end - pos
        return value, end


def big_value(size: int) -> bytes:
    records = []
    total = 0
    i = 0
    while total < size:
        rec = json.dumps({"line": i, "text": f'record {i} \\ "q" é', "tags": [i, {"k": [1]}]})
        records.append(rec)
        total += len(rec) + 1
        i += 1
    return ('{"output": [' + ",".join(records) + "]}").encode()


def work_for(data: bytes, chunk: int) -> tuple[int, int, int]:
    decoder = JSONStreamDecoder()
    scanner = CountingScanner(decoder)
    decoder._scan = scanner
    count = 0
    for i in range(0, len(data), chunk):
        count += len(decoder.feed(data[i : i + chunk]))
    count += len(decoder.close())
    assert count == 3
    return decoder._work, scanner.chars, scanner.calls


def test_big_values_in_small_chunks_cost_linear_work() -> None:
    # 500 KB values: 120 chunks each, plenty to tell linear from quadratic (2 MB took 1.5 s).
    value = big_value(500_000)
    stream = value + b"\n" + value + b" " + value
    n = len(stream)
    work, parsed, calls = work_for(stream, 4096)
    # Each byte is counted about once and parsed about once: no re-scanning from the start.
    assert parsed <= 2 * n
    assert work <= 4 * n
    assert calls <= 20
    # Re-parsing the value after every chunk would read about n * n / (2 * 4096) characters.
    assert parsed * 50 < n * n // (2 * 4096)


def test_doubling_the_value_doubles_the_work() -> None:
    small = big_value(200_000)
    large = big_value(400_000)
    for chunk in (512, 4096):
        w1, p1, _ = work_for(b"\n".join([small] * 3), chunk)
        w2, p2, _ = work_for(b"\n".join([large] * 3), chunk)
        ratio = len(large) / len(small)
        assert w2 <= 1.1 * ratio * w1
        assert p2 <= 1.1 * ratio * p1


def test_one_byte_chunks_cost_linear_work() -> None:
    value = big_value(20_000)
    stream = b" ".join([value] * 3)
    work, parsed, _ = work_for(stream, 1)
    assert parsed <= 4 * len(stream)
    assert work <= 8 * len(stream)


def test_many_small_values_cost_linear_work() -> None:
    line = json.dumps({"jobId": "j1", "outputType": "stdout", "output": "x" * 150}).encode()
    stream = b"\n".join([line] * 2000) + b"\n"
    for chunk in (7, 100, 1024, 65536):
        decoder = JSONStreamDecoder()
        scanner = CountingScanner(decoder)
        decoder._scan = scanner
        got = 0
        for i in range(0, len(stream), chunk):
            got += len(decoder.feed(stream[i : i + chunk]))
        assert got == 2000
        assert scanner.chars <= 3 * len(stream), chunk
        assert decoder._work <= 4 * len(stream), chunk


# -- properties ---------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=20,
)


def _needs_separator(a: bytes, b: bytes) -> bool:
    # Two numbers/literals side by side would merge into one token.
    return a[-1:] not in b'"]}' and b[:1] not in b'"[{'


@st.composite
def streams(draw: st.DrawFn) -> tuple[bytes, list[Any], list[int]]:
    values = draw(st.lists(json_values, max_size=6))
    parts: list[bytes] = []
    for value in values:
        style = draw(st.sampled_from(["compact", "spaced", "indent", "ascii"]))
        if style == "compact":
            text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        elif style == "spaced":
            text = json.dumps(value, ensure_ascii=False)
        elif style == "indent":
            text = json.dumps(value, indent=draw(st.sampled_from([0, 1, 2, "\t"])))
        else:
            text = json.dumps(value)
        encoded = text.encode("utf-8")
        separator = draw(st.sampled_from([b"", b" ", b"\n", b"\r\n", b"\t", b" \n\n  "]))
        if parts and not separator and _needs_separator(parts[-1], encoded):
            separator = b"\n"
        parts.append(separator)
        parts.append(encoded)
    if draw(st.booleans()):
        parts.append(draw(st.sampled_from([b"\n", b" ", b"\r\n"])))
    stream = b"".join(parts)
    sizes = draw(st.lists(st.integers(min_value=1, max_value=40), max_size=60))
    if draw(st.booleans()):
        sizes = [1] * len(stream)
    return stream, values, sizes


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(streams())
def test_random_streams_round_trip_whatever_the_chunking(
    case: tuple[bytes, list[Any], list[int]],
) -> None:
    stream, values, sizes = case
    decoded = decode(stream, sizes)
    assert [v.value for v in decoded] == values
    check_spans(stream, decoded)
    assert decoded == decode(stream)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(json_values, min_size=1, max_size=4),
    st.data(),
)
def test_mutated_streams_decode_or_raise_stream_errors(
    values: list[Any], data: st.DataObject
) -> None:
    stream = bytearray(b"\n".join(json.dumps(v).encode() for v in values))
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        at = data.draw(st.integers(min_value=0, max_value=len(stream)))
        action = data.draw(st.sampled_from(["insert", "delete", "replace"]))
        byte = data.draw(st.sampled_from(list(b'[]{}",:\\ 0123456789.eE+-tfnaul\n\x00\xc3\xff')))
        if action == "insert":
            stream[at:at] = bytes([byte])
        elif stream and at < len(stream):
            stream[at : at + 1] = b"" if action == "delete" else bytes([byte])
    raw = bytes(stream)
    sizes = data.draw(st.lists(st.integers(min_value=1, max_value=10), max_size=40))
    outcomes = []
    for chunking in (None, sizes, 1):
        failure: StreamDecodeError | None = None
        try:
            decoded = decode(raw, chunking)
        except StreamDecodeError as e:
            failure = e
        if failure is not None:
            assert 0 <= failure.offset <= len(raw)
            outcomes.append(("error", failure.offset, failure.truncated))
        else:
            check_spans(raw, decoded)
            outcomes.append(("ok", [(v.start, v.end) for v in decoded], None))
    # Same verdict, at the same byte, whatever the chunking.
    assert outcomes[0] == outcomes[1] == outcomes[2]


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=64), st.lists(st.integers(min_value=1, max_value=8), max_size=20))
def test_random_bytes_never_raise_anything_else(raw: bytes, sizes: list[int]) -> None:
    for chunking in (None, sizes):
        try:
            decoded = decode(raw, chunking)
        except StreamDecodeError:
            continue
        check_spans(raw, decoded)


def test_garbage_in_a_held_value_is_caught_when_counting_starts() -> None:
    decoder = JSONStreamDecoder()
    assert decoder.feed(b'{"a": 1 2') == []  # no closing bracket yet: held unparsed
    with pytest.raises(StreamDecodeError) as info:
        decoder.feed(b" ")  # the held bytes outgrow the chunk: checked before counting
    assert info.value.offset == 8


def test_a_stray_partial_utf8_character_is_not_held_as_a_token() -> None:
    decoder = JSONStreamDecoder()
    assert decoder.feed(b"[1] \xf0\x9f") == [DecodedValue([1], 0, 3)]
    with pytest.raises(StreamDecodeError) as info:
        decoder.feed(b"a")
    assert info.value.offset == 4
    assert "UTF-8" in str(info.value)


def test_a_held_prefix_too_deep_is_refused_at_once() -> None:
    decoder = JSONStreamDecoder(max_depth=100)
    with pytest.raises(StreamDecodeError) as info:
        decoder.feed(b"[" * 150)  # not complete, yet already too deep
    assert info.value.offset == 100


def lines_value(size: int, closer_every: int = 0) -> bytes:
    """An object holding text lines (escapes, no brackets), optionally a "}" in some lines."""
    lines = []
    total = 0
    i = 0
    while total < size:
        text = f'{i:06d} step {i % 97}: "quoted" C:\\tmp\\x{i % 13} caf\u00e9'
        if closer_every and i % closer_every == 0:
            text += " {not json}"
        lines.append(text)
        total += len(text) + 4
        i += 1
    return json.dumps({"output": lines}).encode()


@pytest.mark.parametrize("closer_every", [0, 7, 400, 5000])
def test_string_heavy_values_in_small_chunks(closer_every: int) -> None:
    value = lines_value(300_000, closer_every)
    stream = value + b"\n" + value + value
    expected = json.loads(value)
    for chunk in (512, 4096):
        decoder = JSONStreamDecoder()
        scanner = CountingScanner(decoder)
        decoder._scan = scanner
        got: list[DecodedValue] = []
        for i in range(0, len(stream), chunk):
            got += decoder.feed(stream[i : i + chunk])
        got += decoder.close()
        assert [v.value for v in got] == [expected] * 3
        assert [(v.start, v.end) for v in got] == [
            (0, len(value)),
            (len(value) + 1, 2 * len(value) + 1),
            (2 * len(value) + 1, len(stream)),
        ]
        assert scanner.chars <= 3 * len(stream)
        assert decoder._work <= 5 * len(stream)


def test_brackets_inside_strings_never_trip_the_depth_limit() -> None:
    value = json.dumps({"text": ["[" * 300, "{" * 300] * 20}).encode()
    for chunk in (64, 4096):
        assert values_of(value + value, chunk) == [json.loads(value)] * 2


def reference_walk(text: bytes) -> list[tuple[int, bool, bool]]:
    """(depth, in_string, after_backslash) after each byte of valid JSON, one byte at a time."""
    states = [(0, False, False)]
    depth, in_str, esc = 0, False, False
    for byte in text:
        if in_str:
            if esc:
                esc = False
            elif byte == 0x5C:
                esc = True
            elif byte == 0x22:
                in_str = False
        elif byte == 0x22:
            in_str = True
        elif byte in b"[{":
            depth += 1
        elif byte in b"]}":
            depth -= 1
        states.append((depth, in_str, esc))
    return states


# Strings full of what a structure counter could trip on.
tricky_text = st.text(alphabet=list('a"\\[]{}/\n\t\u00e9\U0001f600'), max_size=12)
tricky_values = st.recursive(
    st.none() | st.integers() | tricky_text,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(tricky_text, children, max_size=4)
    ),
    max_leaves=12,
)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(tricky_values, st.data())
def test_structure_counts_match_a_byte_by_byte_walk(value: Any, data: st.DataObject) -> None:
    text = json.dumps(value, ensure_ascii=data.draw(st.booleans())).encode()
    states = reference_walk(text)
    a = data.draw(st.integers(min_value=0, max_value=len(text)))
    b = data.draw(st.integers(min_value=a, max_value=len(text)))
    depth, in_str, esc = states[a]
    shape = jsonstream._shape(text[a:b], in_str, esc)
    depths = [d - depth for d, _, _ in states[a : b + 1]]
    assert shape.net == depths[-1]
    assert shape.low == min(depths)
    assert shape.high >= max(depths)
    assert (shape.in_str, shape.esc) == states[b][1:]
    assert shape.quotes == sum(1 for i in range(a, b) if states[i][1] != states[i + 1][1])


def test_values_before_garbage_in_the_same_chunk_are_not_lost() -> None:
    decoder = JSONStreamDecoder()
    got = decoder.feed(b'{"a": 1}\n[2]\n{"b": oops}\n[3]')
    assert got == [DecodedValue({"a": 1}, 0, 8), DecodedValue([2], 9, 12)]
    with pytest.raises(StreamDecodeError) as first:
        decoder.feed(b"[4]")  # the error found in the previous chunk, as it was
    assert first.value.offset == 19
    assert "already failed" not in str(first.value)
    with pytest.raises(StreamDecodeError) as again:
        decoder.close()
    assert again.value.offset == 19
    assert "already failed" in str(again.value)


def test_an_error_found_after_values_is_raised_by_close() -> None:
    decoder = JSONStreamDecoder()
    assert [v.value for v in decoder.feed(b'"ok" "\xff"')] == ["ok"]
    with pytest.raises(StreamDecodeError) as info:
        decoder.close()
    assert info.value.offset == 6
    assert "UTF-8" in str(info.value)


def test_depth_limit_inside_a_long_value_parsed_at_once() -> None:
    deep = b"[" * 513 + b"]" * 513
    value = b'{"s": "' + b"x" * 100_000 + b'", "d": ' + deep + b"}"
    err = error_of(value)  # one chunk: the decoded value itself is walked
    assert err.offset == value.index(b"[") + 511  # the object is the first level
    ok = b'{"s": "' + b"[{" * 50_000 + b'", "d": ' + b"[" * 500 + b"]" * 500 + b"}"
    assert len(decode(ok)) == 1


def test_depth_limit_on_a_value_held_across_feeds() -> None:
    decoder = JSONStreamDecoder(max_depth=50)
    assert decoder.feed(b'{"a": ' + b"[" * 30) == []
    with pytest.raises(StreamDecodeError) as info:
        decoder.feed(b"[" * 40)
    assert info.value.offset == 6 + 49


def test_close_raises_an_error_found_after_a_last_value() -> None:
    decoder = JSONStreamDecoder()
    assert decoder.feed(b"12\xe2\x82") == []  # a number, then a cut UTF-8 character
    with pytest.raises(StreamDecodeError) as info:
        decoder.close()
    assert info.value.offset == 2
    assert "UTF-8" in str(info.value)


@pytest.mark.parametrize("limit", [None, 2000])
def test_a_stray_closing_bracket_is_reported_where_it_is(limit: int | None) -> None:
    # The object never closes: the "]" that ends it too early is the error, whatever the
    # chunking, and not the size of what follows.
    stream = b'{"a": [1, 2]], "b": "' + b"x" * 5000 + b'"'
    kwargs = {} if limit is None else {"max_value_bytes": limit}
    for chunk in (1, 7, 100, 4096, len(stream)):
        err = error_of(stream, chunk, **kwargs)
        assert err.offset == 12, (chunk, str(err))
        assert err.truncated is False
        assert "max_value_bytes" not in str(err)
