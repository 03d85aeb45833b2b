"""Sans-I/O incremental decoder for streams of concatenated JSON values.

A live job log arrives as JSON values one after another, in chunks cut anywhere: values may be
newline-delimited, simply concatenated or pretty-printed. :class:`JSONStreamDecoder` takes the
raw bytes as they come (:meth:`~JSONStreamDecoder.feed`) and hands back every value completed so
far, each with its byte span in the whole stream. It does no I/O, so it serves the async and
the sync clients alike.

How it stays linear whatever the chunking:

* Bytes that hold whole values are parsed in one pass by the C scanner of :mod:`json`, one
  call per value, starting where the previous value ended.
* The incomplete value at the end of a chunk is kept as raw bytes. While it is small next to
  the data that comes after it, it is simply parsed again with that data. Once it is larger,
  each new chunk is only *counted* (brackets and quotes outside strings, with C-speed bytes
  operations) until the counts say the value may have closed; only then is it parsed, once.

The parser is the standard library's. orjson was measured in its place for the complete values
and was not worth a dependency (see "JSON stream decoder" in docs/benchmarks.md).

Validation is the strict RFC 8259 grammar: ``NaN`` / ``Infinity`` are refused, so are invalid
UTF-8, control characters in strings, leading zeros and the like. A top-level number or literal
is complete only once a byte that cannot continue it follows (or at :meth:`close`).
"""

from __future__ import annotations

import json
import re
import string
from codecs import utf_8_decode
from collections.abc import Callable, Iterable, Iterator
from itertools import accumulate
from typing import Any, Final, NamedTuple

from .._exceptions import StreamDecodeError, excerpt
from .checks import count

__all__ = ["DEFAULT_MAX_DEPTH", "DEFAULT_MAX_VALUE_BYTES", "DecodedValue", "JSONStreamDecoder"]

#: Largest value (in bytes of its JSON text) a decoder accepts unless told otherwise.
DEFAULT_MAX_VALUE_BYTES: Final = 64 * 1024 * 1024
#: Deepest nesting of arrays/objects a decoder accepts unless told otherwise.
DEFAULT_MAX_DEPTH: Final = 512


class DecodedValue(NamedTuple):
    """One value decoded from a stream.

    ``value`` is what :func:`json.loads` gives for the value's text; ``start`` and ``end`` are
    byte offsets in the whole stream (``end`` exclusive), so ``stream[start:end]`` is the
    value's JSON text.
    """

    value: Any
    start: int
    end: int


# Builds a DecodedValue without the Python-level __new__ of NamedTuple (hot path).
_new_tuple: Final = tuple.__new__


class _ConstantRefused(ValueError):
    """Raised from inside the json scanner when it meets NaN, Infinity or -Infinity."""


def _refuse_constant(name: str) -> Any:
    raise _ConstantRefused(name)


# Feed modes.
_RETRY: Final = 0  # the held bytes (if any) are parsed again together with the next chunk
_NESTED: Final = 1  # inside an array, object or string: new chunks are only counted
_TOKEN: Final = 2  # inside a top-level number or literal: waiting for a byte that ends it
_DEAD: Final = 3  # closed, or failed

_WS_CHARS: Final = " \t\n\r"
_WS_RE: Final = re.compile(r"[ \t\n\r]*")
# Bytes that may continue a number or literal; a top-level scalar ends at the first other byte.
_TOKEN_CHARS: Final = frozenset(string.ascii_letters + string.digits + "+-.")
_TOKEN_RE: Final = re.compile(r"[0-9A-Za-z.+\-]*")
_TOKEN_BYTES_RE: Final = re.compile(rb"[0-9A-Za-z.+\-]*")
# What a number or literal cut short by the end of the input may look like.
_SCALAR_PREFIX_RE: Final = re.compile(
    r"-?(?:(?:0|[1-9][0-9]*)(?:\.(?:[0-9]+(?:[eE][+-]?[0-9]*)?)?|[eE][+-]?[0-9]*)?)?"
    r"|t(?:r(?:ue?)?)?|f(?:a(?:l(?:se?)?)?)?|n(?:u(?:ll?)?)?"
)
_UNICODE_ESCAPE_PREFIX_RE: Final = re.compile(r"u[0-9a-fA-F]{0,4}")  # json reports the "u"

# Counting structure in raw bytes: quotes stay, opening brackets become "(", closing ones ")",
# everything else goes.
_KEEP_STRUCTURE: Final = bytes.maketrans(b"[{]}", b"(())")
_NOT_STRUCTURAL: Final = bytes(b for b in range(256) if b not in b'"[]{}')
# +1 for "(", -1 for ")", indexed by byte.
_PAREN_STEP: Final = tuple(1 if b == 0x28 else -1 if b == 0x29 else 0 for b in range(256))
# Passes of pair removal tried before walking the brackets one by one.
_REDUCE_PASSES: Final = 6
# For locating an error exactly (slow path only).
_STRUCT_RE: Final = re.compile(rb'[\[\]{}"]')
_STRING_BODY_RE: Final = re.compile(rb'[^"\\]*(?:\\[\s\S][^"\\]*)*')
_CONSTANT_RE: Final = re.compile(rb"-?Infinity|NaN")
_HARD_ESCAPE_RE: Final = re.compile(rb'\\[\\"]')
_CONTROL_RE: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class _Shape(NamedTuple):
    """What a piece of a JSON value does to the structure, relative to where it starts."""

    quotes: int  # string delimiters in the piece
    low: int  # lowest nesting reached (<= 0)
    high: int  # an upper bound of the highest nesting reached (>= 0)
    net: int  # nesting change over the piece
    in_str: bool  # the piece ends inside a string
    esc: bool  # ... right after a backslash


def _shape(data: bytes, in_str: bool, esc: bool) -> _Shape:
    """Measure the structure of ``data``, a piece of one JSON value, at C speed.

    ``in_str`` / ``esc`` say whether ``data`` starts inside a string / right after a backslash
    in a string. Exact for any piece of valid JSON; on invalid JSON the figures may be off,
    which only delays the error until the value is parsed.
    """
    if esc:
        if not data:
            return _Shape(0, 0, 0, 0, in_str, esc)
        data = data[1:]
    if b"\\" in data:
        # An escaped backslash and an escaped quote are the only escapes that matter here:
        # drop them, reading left to right as a string parser does.
        data = _HARD_ESCAPE_RE.sub(b"", data)
    esc = data.endswith(b"\\")
    marks = data.translate(_KEEP_STRUCTURE, _NOT_STRUCTURAL)
    quotes = marks.count(b'"')
    if in_str:
        marks = b'"' + marks
    outside = marks
    if in_str or quotes:
        # Common case: no bracket inside any string, so every string shrank to '""' and
        # removing those pairs (left to right) leaves only the brackets outside strings.
        outside = marks.replace(b'""', b"")
        in_str = False
        if b'"' in outside:
            if outside.endswith(b'"') and outside.count(b'"') == 1:
                outside = outside[:-1]
                in_str = True
            else:
                parts = marks.split(b'"')
                outside = b"".join(parts[::2])
                in_str = len(parts) % 2 == 0
    # Remove matched pairs a few times; what is left is ")))(((": unmatched closes, then opens.
    rest = outside
    passes = 0
    while b"()" in rest:
        if passes == _REDUCE_PASSES:
            steps = list(accumulate(map(_PAREN_STEP.__getitem__, outside), initial=0))
            return _Shape(quotes, min(steps), max(steps), steps[-1], in_str, esc)
        rest = rest.replace(b"()", b"")
        passes += 1
    closes = rest.find(b"(")
    if closes < 0:
        closes = len(rest)
    opens = len(rest) - closes
    return _Shape(quotes, -closes, opens + passes, opens - closes, in_str, esc)


def _nests_deeper(value: Any, limit: int, budget: int) -> bool | None:
    """Whether the decoded ``value`` nests more than ``limit`` arrays/objects deep, or None if
    that takes looking at more than ``budget`` items."""
    todo = [(value, 1)]
    seen = 0
    while todo:
        item, depth = todo.pop()
        if depth > limit:
            return True
        children = item.values() if type(item) is dict else item
        seen += len(children)
        if seen > budget:
            return None
        todo.extend((c, depth + 1) for c in children if type(c) is dict or type(c) is list)
    return False


def _locate_depth(
    data: bytes | bytearray, i: int, depth: int, in_str: bool, esc: bool, limit: int
) -> int | None:
    """Index in ``data`` of the bracket that takes the nesting past ``limit`` (None if none)."""
    n = len(data)
    if esc:
        i += 1
    while i < n:
        if in_str:
            j = _STRING_BODY_RE.match(data, i).end()  # type: ignore[union-attr]
            if j >= n or data[j] != 0x22:
                return None
            i, in_str = j + 1, False
            continue
        m = _STRUCT_RE.search(data, i)
        if m is None:
            return None
        k = m.start()
        b = data[k]
        i = k + 1
        if b == 0x22:
            in_str = True
        elif b in (0x5B, 0x7B):
            depth += 1
            if depth > limit:
                return k
        else:
            depth -= 1
    return None


def _locate_constant(data: bytes | bytearray, i: int) -> int | None:
    """Index of the first NaN / Infinity outside strings in the value at ``data[i]``."""
    n = len(data)
    while i < n:
        m = _STRUCT_RE.search(data, i)
        stop = n if m is None else m.start()
        hit = _CONSTANT_RE.search(data, i, stop)
        if hit is not None:
            return hit.start()
        if m is None:
            return None
        i = stop + 1
        if data[stop] == 0x22:
            i = _STRING_BODY_RE.match(data, i).end() + 1  # type: ignore[union-attr]
    return None


def _is_cut_short(text: str, e: json.JSONDecodeError) -> bool:
    """Whether the parser failed only because ``text`` ends too early.

    The json scanner reports the first point where the text stops being valid. If that point
    is the end of the text, an unterminated string or \\u escape, or a number or literal that
    runs to the end and could still be completed, the text is a prefix of valid JSON.
    """
    p, n = e.pos, len(text)
    if p >= n:
        return True
    msg = e.msg
    if msg.startswith("Unterminated string"):
        return True
    if msg.startswith("Invalid \\uXXXX"):
        return _UNICODE_ESCAPE_PREFIX_RE.fullmatch(text, p) is not None
    # A scalar at the very end: e.g. "[1." or "[tr".
    if _TOKEN_RE.fullmatch(text, p) is None:
        return False
    start = p
    while start > 0 and text[start - 1] in _TOKEN_CHARS:
        start -= 1
    if start == p and msg != "Expecting value":
        return False  # a new token where a delimiter was due, e.g. "[1 2"
    return _SCALAR_PREFIX_RE.fullmatch(text, start) is not None


def _unchain(error: StreamDecodeError) -> None:
    """Drop what ``error`` was raised while handling: a ``JSONDecodeError`` whose ``.doc``
    is the whole held text, which may hold credentials (``from None`` only hides it)."""
    error.__context__ = None


class JSONStreamDecoder:
    """Incremental, sans-I/O decoder for a stream of concatenated JSON values.

    Feed it bytes as they arrive with :meth:`feed`; it returns every value completed so far as
    :class:`DecodedValue` (the value and its byte span in the stream). At the end of the stream
    call :meth:`close`, which flushes a final top-level number and raises if the stream stopped
    in the middle of a value. Values may be separated by JSON whitespace or by nothing at all;
    NDJSON and pretty-printed streams both work, and any chunking gives the same result.

    Malformed input raises :class:`~aiocompute.StreamDecodeError` with the byte ``offset`` of
    the problem and an ``excerpt`` of the stream around it (``truncated=True`` only when
    :meth:`close` finds a value cut off). When one chunk holds good values and then garbage,
    :meth:`feed` returns the values and the next :meth:`feed` or :meth:`close` raises the
    error, so no value before it is lost. After an error the decoder refuses further input.

    ``max_value_bytes`` bounds the memory held for one value: a value growing past it raises
    as soon as it does. ``max_depth`` bounds the nesting of arrays and objects.
    """

    __slots__ = (
        "_base",
        "_buf",
        "_checked",
        "_closed",
        "_deferred",
        "_depth",
        "_error",
        "_esc",
        "_held_counted",
        "_held_opens",
        "_held_start",
        "_in_str",
        "_long_held",
        "_long_value",
        "_max_depth",
        "_max_value_bytes",
        "_measured",
        "_mode",
        "_opens",
        "_scan",
        "_work",
    )

    def __init__(
        self, max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES, *, max_depth: int = DEFAULT_MAX_DEPTH
    ) -> None:
        count(max_value_bytes, "max_value_bytes", minimum=1)
        count(max_depth, "max_depth", minimum=1)
        self._max_value_bytes = max_value_bytes
        self._max_depth = max_depth
        # A value of at most this many characters can break neither limit (a UTF-8 character
        # is at most 4 bytes; each level of nesting takes 2 characters).
        self._long_value = min(max_value_bytes // 4, 2 * max_depth)
        # Same for an incomplete value, which may be all opening brackets.
        self._long_held = min(max_value_bytes, max_depth)
        # Bytes not yet turned into values; the first one is at stream offset _base.
        self._buf = bytearray()
        self._base = 0
        self._mode = _RETRY
        # Whether the held bytes are known to be a prefix of valid JSON.
        self._checked = True
        # In _NESTED mode: the structure after the first _measured held bytes, and the
        # number of opening bracket bytes after them.
        self._depth = 0
        self._in_str = False
        self._esc = False
        self._measured = 0
        self._opens = 0
        self._closed = False
        # (message, offset, excerpt, truncated) of the error that ended decoding.
        self._error: tuple[str, int, str, bool] | None = None
        # Opening brackets counted in the held value starting at stream offset _held_start,
        # over its first _held_counted bytes.
        self._held_start = -1
        self._held_opens = 0
        self._held_counted = 0
        # The error was found after values that feed() returned: not raised yet.
        self._deferred = False
        # Bytes handed to an O(n) pass (decode, parse, count): lets tests check linearity.
        self._work = 0
        decoder = json.JSONDecoder(parse_constant=_refuse_constant)
        # The C scanner behind json.loads, called directly: it parses one value at an index.
        self._scan: Callable[[str, int], tuple[Any, int]] = decoder.scan_once  # type: ignore[attr-defined]

    @property
    def offset(self) -> int:
        """Bytes fed so far: the stream offset of the next byte :meth:`feed` will get."""
        return self._base + len(self._buf)

    @property
    def buffered(self) -> int:
        """Bytes held for a value not yet complete (``offset - buffered`` is where it starts)."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[DecodedValue]:
        """Take the next bytes of the stream; return the values they complete, in order.

        Raises :class:`~aiocompute.StreamDecodeError` for malformed input (see the class
        notes for an error that follows values in the same chunk).
        """
        try:
            buf = self._buf
            if self._mode == _RETRY and 0 < len(data) >= len(buf):
                # The common case. Parsing the held bytes again costs no more than the new
                # data, so the total stays linear.
                buf += data
                return self._parse(False)
            return self._feed_other(data)
        except StreamDecodeError as exc:
            _unchain(exc)
            raise

    def _feed_other(self, data: bytes) -> list[DecodedValue]:
        if self._error is not None:
            raise self._failed_again()
        if self._closed:
            raise self._fail("feed() called after close()", self.offset, b"", 0)
        if not data:
            return []
        if type(data) is not bytes:
            data = bytes(data)
        mode = self._mode
        if mode == _RETRY:
            mode = self._start_counting()
        if mode == _NESTED:
            return self._feed_nested(data)
        if mode == _TOKEN:
            return self._feed_token(data)
        self._buf += data
        return self._parse(False)

    def close(self) -> list[DecodedValue]:
        """End the stream: return a last value only EOF could complete (a bare number).

        Raises :class:`~aiocompute.StreamDecodeError` with ``truncated=True`` if the stream
        stopped in the middle of a value. Calling it again returns ``[]``.
        """
        if self._error is not None:
            raise self._failed_again()
        if self._closed:
            return []
        self._closed = True
        self._mode = _DEAD
        if not self._buf:
            return []
        try:
            return self._parse(True)
        except StreamDecodeError as exc:
            _unchain(exc)
            raise

    def values(self, chunks: Iterable[bytes]) -> Iterator[Any]:
        """Feed every chunk, then close; yield the decoded values (without their offsets)."""
        for chunk in chunks:
            for item in self.feed(chunk):
                yield item.value
        for item in self.close():
            yield item.value

    # -- counting mode -------------------------------------------------------------------

    def _start_counting(self) -> int:
        """Switch from re-parsing the held value to counting the chunks that extend it."""
        buf = self._buf
        first = buf[0]
        if first in b'[{"':
            if not self._checked:
                self._check_prefix()
            self._work += len(buf)
            shape = _shape(bytes(buf), False, False)
            if shape.high > self._max_depth:
                self._check_depth(buf, 0, self._base)
            self._depth, self._in_str, self._esc = shape.net, shape.in_str, shape.esc
            self._measured = len(buf)
            self._opens = 0
            self._mode = _NESTED
        elif first in b"-0123456789tfn":
            self._mode = _TOKEN
        # Otherwise only a few bytes of a UTF-8 character are held: parse them again.
        return self._mode

    def _check_prefix(self) -> None:
        """Make sure the held bytes begin valid JSON before only counting what follows."""
        text, bad, _ = self._decode(False)
        self._work += len(text)
        try:
            self._scan(text, 0)
        except json.JSONDecodeError as e:
            if not _is_cut_short(text, e):
                raise self._fail_json(e.msg, text, e.pos) from None
        except StopIteration as stop:
            missing = json.JSONDecodeError("Expecting value", text, stop.value)
            if not _is_cut_short(text, missing):
                raise self._fail_json("Expecting value", text, stop.value) from None
        except _ConstantRefused:
            at = _locate_constant(self._buf, 0) or 0
            raise self._fail(
                "invalid JSON: NaN and Infinity are not valid JSON", self._base + at, self._buf, at
            ) from None
        except RecursionError:
            self._check_depth(self._buf, 0, self._base)
            raise self._fail_deep(self._buf, 0, self._base) from None
        except ValueError as e:
            raise self._fail(f"invalid JSON value ({e})", self._base, self._buf, 0) from None
        if bad is not None:
            raise self._fail("invalid UTF-8", self._base + bad, self._buf, bad)
        self._checked = True

    def _feed_nested(self, data: bytes) -> list[DecodedValue]:
        buf = self._buf
        depth = self._depth
        self._work += len(data)
        # Cheap first look: without a closing bracket (or, inside a top-level string, a quote)
        # the value cannot end in this chunk, so measuring it can wait.
        may_end = (
            (b"]" in data or b"}" in data) if depth > 0 else (b'"' in data or not self._in_str)
        )
        if not may_end:
            # Opening brackets, counted even inside strings: a bound on the nesting.
            opens = self._opens + data.count(b"[") + data.count(b"{")
            if depth + opens <= self._max_depth:
                if len(buf) + len(data) > self._max_value_bytes:
                    self._raise_too_big(self._base, data, self._base + len(buf))
                buf += data
                self._opens = opens
                return []
        measured = self._measured
        unmeasured = len(buf) - measured
        if may_end and unmeasured >= measured > 0:
            # Most of the value was never measured and it may end here: parsing it whole costs
            # no more than measuring it (and the held bytes at least doubled since the last
            # attempt, so such attempts add up to linear work). Complete, it needs no measuring.
            checked = depth + self._opens + data.count(b"[") + data.count(b"{")
            buf += data
            self._mode = _RETRY
            return self._parse(False, checked <= self._max_depth)
        piece = bytes(buf[measured:]) + data if unmeasured else data
        if unmeasured:
            self._work += unmeasured
        shape = _shape(piece, self._in_str, self._esc)
        # Inside a top-level string (depth 0) the value ends with the string.
        if (depth + shape.low <= 0) if depth > 0 else (shape.quotes or not self._in_str):
            # The value ends in this chunk (or is invalid): parse it whole, once. Its nesting
            # was checked chunk by chunk, so the parse need not check it again.
            buf += data
            self._mode = _RETRY
            return self._parse(False, depth + shape.high <= self._max_depth)
        if depth + shape.high > self._max_depth:
            self._check_depth(piece, 0, self._base + measured, depth, self._in_str, self._esc)
        if len(buf) + len(data) > self._max_value_bytes:
            self._raise_too_big(self._base, data, self._base + len(buf))
        buf += data
        self._measured = len(buf)
        self._opens = 0
        self._depth = depth + shape.net
        self._in_str = shape.in_str
        self._esc = shape.esc
        return []

    def _feed_token(self, data: bytes) -> list[DecodedValue]:
        self._work += len(data)
        end = _TOKEN_BYTES_RE.match(data).end()  # type: ignore[union-attr]
        if end < len(data):
            self._buf += data
            self._mode = _RETRY
            return self._parse(False)
        if len(self._buf) + len(data) > self._max_value_bytes:
            self._raise_too_big(self._base, data, self.offset)
        self._buf += data
        return []

    # -- parsing -------------------------------------------------------------------------

    def _decode(self, final: bool) -> tuple[str, int | None, bool]:
        """The held bytes as text, the index of the first invalid UTF-8 byte if any, and
        whether that is only a character cut short by the end of the stream.

        Without ``final``, an incomplete UTF-8 sequence at the end is left undecoded.
        """
        buf = self._buf
        if buf.isascii():
            return buf.decode("ascii"), None, False
        try:
            return utf_8_decode(buf, "strict", final)[0], None, False
        except UnicodeDecodeError as e:
            cut = final and e.end == len(buf) and e.reason == "unexpected end of data"
            return utf_8_decode(buf[: e.start], "strict", True)[0], e.start, cut

    def _parse(self, final: bool, first_checked: bool = False) -> list[DecodedValue]:
        """Turn the held bytes into values; keep an incomplete last value for later.

        ``first_checked`` says the nesting of a value starting at the first held byte is
        known to be within max_depth. If the bytes hold values and then an error, the values
        are returned and the error is kept for the next call to raise.
        """
        out: list[DecodedValue] = []
        try:
            self._parse_into(out, final, first_checked)
        except StreamDecodeError:
            if not out or final:  # close() has no next call to raise it
                raise
            self._deferred = True
        return out

    def _parse_into(self, out: list[DecodedValue], final: bool, first_checked: bool) -> None:
        buf = self._buf
        self._work += len(buf)
        if buf.isascii():  # the common case, inlined
            text, bad, cut = buf.decode("ascii"), None, False
        else:
            text, bad, cut = self._decode(final)
        # The end of the text is the end of the stream only at close and before any bad byte
        # (a last character cut short by the end of the stream counts as the end).
        at_eof = final and (bad is None or cut)
        ascii_only = len(text) == len(buf)
        scan = self._scan
        base = self._base
        # Values longer than this (in characters) may break a limit: check them closely.
        long_value = self._long_value
        append = out.append
        new_tuple = _new_tuple
        decoded_value = DecodedValue
        ws_chars = _WS_CHARS
        n = len(text)
        # A container starting after the last closing bracket cannot be complete: skipping it
        # spares the failed parse (and its exception) that would otherwise end most chunks.
        # (Not before a bad byte: a JSON error ahead of it must be reported first.)
        if final or bad is not None:
            last_close = n
        else:
            last_close = text.rfind("}")
            bracket = text.rfind("]")
            if bracket > last_close:
                last_close = bracket
        pos = 0  # index in text
        shift = 0  # bytes minus characters before pos: non-zero only past non-ASCII text
        origin = base  # stream offset of text[0] if it were ASCII: base + shift
        checked = True
        while pos < n:
            c = text[pos]
            if c in ws_chars:
                pos += 1
                if pos < n and text[pos] in ws_chars:
                    pos = _WS_RE.match(text, pos).end()  # type: ignore[union-attr]
                if pos >= n:
                    break
                c = text[pos]
            if pos > last_close and (c == "{" or c == "["):
                checked = False
                break
            try:
                value, end = scan(text, pos)
            except json.JSONDecodeError as e:
                if not _is_cut_short(text, e):
                    raise self._fail_json(e.msg, text, e.pos) from None
                if at_eof:
                    raise self._fail_truncated(text, pos) from None
                break
            except StopIteration as stop:
                if stop.value != pos:  # a value was due inside an array or object
                    missing = json.JSONDecodeError("Expecting value", text, stop.value)
                    if not _is_cut_short(text, missing):
                        raise self._fail_json("Expecting value", text, stop.value) from None
                    if at_eof:
                        raise self._fail_truncated(text, pos) from None
                    break
                token_end = _TOKEN_RE.match(text, pos).end()  # type: ignore[union-attr]
                if token_end == pos:
                    raise self._fail_json(f"unexpected character {c!r}", text, pos) from None
                if token_end < n or _SCALAR_PREFIX_RE.fullmatch(text, pos) is None:
                    raise self._fail_json("invalid number or literal", text, pos) from None
                if at_eof:
                    raise self._fail_truncated(text, pos) from None
                break
            except _ConstantRefused:
                at = _locate_constant(buf, pos + shift)
                at = pos + shift if at is None else at
                raise self._fail(
                    "invalid JSON: NaN and Infinity are not valid JSON", base + at, buf, at
                ) from None
            except RecursionError:
                self._check_depth(buf, pos + shift, base)
                raise self._fail_deep(buf, pos + shift, base) from None
            except ValueError as e:
                raise self._fail_json(f"invalid JSON value ({e})", text, pos) from None
            if c != "{" and c != "[" and c != '"':
                # A top-level number or literal ends only where a byte that can't continue it
                # follows ("12" may be the start of "123"; "1.5.3" or "truex" are garbage).
                if end >= n:
                    if not at_eof:
                        break
                elif text[end] in _TOKEN_CHARS:
                    # "4." may still become "4.5"; "4.x" or "1.5.3" never will.
                    token_end = _TOKEN_RE.match(text, pos).end()  # type: ignore[union-attr]
                    if (
                        at_eof
                        or token_end < n
                        or _SCALAR_PREFIX_RE.fullmatch(text, pos, token_end) is None
                    ):
                        raise self._fail_json("invalid number or literal", text, pos)
                    break
            start = origin + pos
            if not ascii_only:
                shift += len(text[pos:end].encode("utf-8")) - (end - pos)
                origin = base + shift
            if end - pos > long_value:
                # (A value that was counted chunk by chunk had its nesting checked then.)
                counted = first_checked and start == base
                self._check_value(value, text, pos, end, start - base, end + shift, counted)
            append(new_tuple(decoded_value, (value, start, origin + end)))
            pos = end
            if end < n and text[end] == "\n":  # NDJSON: step over the newline at once
                pos = end + 1
        bpos = pos + shift
        if bad is not None:
            # Whatever the text before it held, the bad byte is the first error in the stream.
            raise self._fail("invalid UTF-8", base + bad, buf, bad)
        if pos < n:
            self._checked = checked
            if len(buf) - bpos > self._long_held:
                self._check_held(bpos)
        else:
            self._checked = True
        if bpos:
            del buf[:bpos]
            self._base = base + bpos

    def _check_held(self, bpos: int) -> None:
        """Refuse the incomplete value at ``buf[bpos:]`` if already too big or too deep."""
        buf = self._buf
        held = len(buf) - bpos
        if held > self._max_value_bytes:
            self._raise_too_big(self._base + bpos, buf, self._base)
        # Opening brackets (even in strings) bound the nesting. A value held again after more
        # data came is counted only past what was counted before: linear work in all.
        start = self._base + bpos
        if start != self._held_start:
            self._held_start, self._held_opens, self._held_counted = start, 0, 0
        since = bpos + self._held_counted
        self._held_opens += buf.count(b"[", since) + buf.count(b"{", since)
        self._held_counted = held
        limit = self._max_depth
        if self._held_opens > limit:
            self._work += held
            if _shape(bytes(buf[bpos:]), False, False).high > limit:
                self._check_depth(buf, bpos, self._base)

    def _check_value(
        self, value: Any, text: str, pos: int, end: int, bpos: int, bend: int, counted: bool
    ) -> None:
        """Refuse a long complete value (``buf[bpos:bend]``) over max_value_bytes or max_depth.

        ``counted``: its nesting was already checked while it arrived.
        """
        if bend - bpos > self._max_value_bytes:
            self._raise_too_big(self._base + bpos, self._buf, self._base)
        limit = self._max_depth
        if counted or end - pos <= 2 * limit:
            return  # too short to nest that deep
        # Walking the decoded value is cheapest when it holds few containers (a big string,
        # say); past a budget, counting brackets in its text is.
        deeper = _nests_deeper(value, limit, (end - pos) // 128)
        if deeper is False:
            return
        if deeper is None and text.count("[", pos, end) + text.count("{", pos, end) <= limit:
            return
        self._work += bend - bpos
        if _shape(bytes(self._buf[bpos:bend]), False, False).high > limit:
            self._check_depth(self._buf, bpos, self._base)

    # -- errors --------------------------------------------------------------------------

    def _fail(
        self,
        message: str,
        offset: int,
        source: bytes | bytearray,
        index: int,
        truncated: bool = False,
    ) -> StreamDecodeError:
        """Build the error for ``offset`` (``source[index]``) and make the decoder unusable."""
        around = bytes(source[max(0, index - 24) : index + 24]).decode("utf-8", "replace")
        # Control characters (other than whitespace) are shown escaped, not dropped.
        around = _CONTROL_RE.sub(lambda m: f"\\x{ord(m.group()):02x}", around)
        self._error = (message, offset, excerpt(around, 80), truncated)
        self._base += len(self._buf)  # the held bytes are dropped, not forgotten by offset
        self._buf = bytearray()
        self._mode = _DEAD
        return self._failed_again(again=False)

    def _failed_again(self, again: bool = True) -> StreamDecodeError:
        assert self._error is not None
        message, offset, text, truncated = self._error
        if self._deferred:
            self._deferred = False  # first report of an error found after some values
        elif again:
            message = "decoder already failed: " + message
        return StreamDecodeError(message, offset=offset, excerpt=text, truncated=truncated)

    def _fail_json(self, message: str, text: str, pos: int) -> StreamDecodeError:
        """An error at character ``pos`` of the decoded held bytes."""
        index = pos if len(text) == len(self._buf) else len(text[:pos].encode("utf-8"))
        message = message.removesuffix(" at")  # json's "Invalid control character at"
        return self._fail(f"invalid JSON: {message}", self._base + index, self._buf, index)

    def _fail_truncated(self, text: str, pos: int) -> StreamDecodeError:
        index = pos if len(text) == len(self._buf) else len(text[:pos].encode("utf-8"))
        return self._fail(
            f"stream ended in the middle of a value that started at byte {self._base + index}",
            self.offset,
            self._buf,
            len(self._buf),
            truncated=True,
        )

    def _raise_too_big(
        self, value_start: int, source: bytes | bytearray, source_offset: int
    ) -> None:
        """Refuse a value longer than max_value_bytes, at the byte where it crossed the line.

        ``source[0]`` is at stream offset ``source_offset``.
        """
        offset = value_start + self._max_value_bytes
        raise self._fail(
            f"value starting at byte {value_start} is larger than max_value_bytes="
            f"{self._max_value_bytes}",
            offset,
            source,
            max(0, min(offset - source_offset, len(source))),
        )

    def _check_depth(
        self,
        source: bytes | bytearray,
        index: int,
        source_offset: int,
        depth: int = 0,
        in_str: bool = False,
        esc: bool = False,
    ) -> None:
        """Raise if the walk from ``source[index]`` (in the given state) nests past max_depth.

        Exact but slow (a Python step per bracket and string): only run when the quick
        measures say the limit may have been crossed. ``source[0]`` is at stream offset
        ``source_offset``.
        """
        k = _locate_depth(source, index, depth, in_str, esc, self._max_depth)
        if k is not None:
            raise self._fail_deep(source, k, source_offset)

    def _fail_deep(
        self, source: bytes | bytearray, index: int, source_offset: int
    ) -> StreamDecodeError:
        return self._fail(
            f"value nests deeper than max_depth={self._max_depth}",
            source_offset + index,
            source,
            index,
        )
