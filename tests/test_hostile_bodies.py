"""Bodies built to hurt the parser: JSON nested past Python's recursion limit, and bad JSON
holding a credential.

Deep nesting made ``json.loads`` raise a bare ``RecursionError`` from the ``_protocol``
modules; it must be a :class:`~aiocompute.ProtocolError` (or, from an error parser, no
parse, so the transport reports the HTTP status). A ``ProtocolError`` raised while a
``JSONDecodeError`` was being handled kept it as ``__context__`` (``from None`` only hides
it), and that error's ``.doc`` is the whole body: the chain must be empty.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aioresponses import aioresponses

from aiocompute import (
    ETEngineClient,
    ProtocolError,
    ServerError,
    StreamDecodeError,
    WorkbenchClient,
)
from aiocompute._core.jsonstream import JSONStreamDecoder
from aiocompute._core.retries import NO_RETRY
from aiocompute.etengine import _protocol as ep
from aiocompute.lakesail import _protocol as lp
from aiocompute.qiskit import _protocol as qp
from aiocompute.workbench import _protocol as wp

pytestmark = pytest.mark.virtual_time

DEEP = b"[" * 100_000 + b"]" * 100_000
DEEP_RESULT = b'{"result": ' + b'{"a": [' * 50_000 + b"]}" * 50_000 + b"}"
# Deep enough, and small enough for aioresponses (which fails on bodies past 64 KiB).
DEEP_SMALL = b"[" * 5_000 + b"]" * 5_000
DEEP_SMALL_RESULT = b'{"result": ' + DEEP_SMALL + b"}"
SECRET = "s3cr3t-credential-value"
BAD_JSON = b'{"access_token": "' + SECRET.encode() + b'", oops}'
NOT_UTF8 = b'{"access_token": "' + SECRET.encode() + b'"}\xff'
WB = "https://wb.test"
ET = "https://et.test/v1"


def chain(error: BaseException) -> list[BaseException]:
    """``error`` and everything chained to it."""
    out: list[BaseException] = []
    seen: BaseException | None = error
    while seen is not None and seen not in out:
        out.append(seen)
        seen = seen.__cause__ or seen.__context__
    return out


def assert_unchained(error: BaseException) -> None:
    assert error.__cause__ is None
    assert error.__context__ is None


# --------------------------------------------------------------------------- deep nesting

DEEP_PARSES: list[tuple[str, Callable[[bytes], Any]]] = [
    ("workbench.decode_envelope", lambda b: wp.decode_envelope("get_session", 200, b)),
    ("workbench.parse_response", lambda b: wp.parse_response("get_session", 200, b)),
    ("workbench.version", lambda b: wp.parse_response("version", 200, b)),
    ("workbench.stop", lambda b: wp.decode_envelope("stop_job", 200, b)),
    ("etengine.parse_created_batch", lambda b: ep.parse_created_batch(b, tool_id="t", n_jobs=1)),
    ("qiskit.parse_session", qp.parse_session),
    ("qiskit.parse_session str", lambda b: qp.parse_session(b.decode())),
]


@pytest.mark.parametrize("body", [DEEP, DEEP_RESULT], ids=["array", "result"])
@pytest.mark.parametrize("parse", [p for _, p in DEEP_PARSES], ids=[n for n, _ in DEEP_PARSES])
def test_deep_nesting_is_a_protocol_error(parse: Callable[[bytes], Any], body: bytes) -> None:
    with pytest.raises(ProtocolError, match="nested too deeply") as info:
        parse(body)
    assert info.value.body.startswith(body[:20].decode())  # an excerpt, like other errors
    assert not any(isinstance(e, RecursionError) for e in chain(info.value))
    assert_unchained(info.value)


def test_deep_nesting_keeps_the_status() -> None:
    with pytest.raises(ProtocolError, match="HTTP 200") as info:
        wp.decode_envelope("get_session", 200, DEEP)
    assert info.value.status == 200


ERROR_PARSERS = [wp.error_parser, ep.error_parser, qp.error_parser]


@pytest.mark.parametrize("status", [400, 500, 503])
@pytest.mark.parametrize("body", [DEEP, DEEP_RESULT], ids=["array", "result"])
@pytest.mark.parametrize("parser", ERROR_PARSERS, ids=["workbench", "etengine", "qiskit"])
def test_error_parsers_leave_deep_bodies_to_the_transport(
    parser: Callable[..., Any], body: bytes, status: int
) -> None:
    parsed = parser(status, body, {})
    # Nothing read from the body: the transport reports the status with an excerpt.
    assert parsed is None or "[[[[" not in parsed[1]


def test_lakesail_error_parser_shows_a_deep_body_as_text() -> None:
    assert lp.error_parser(400, DEEP, {}) == (None, "[" * 200)


def test_workbench_error_status_with_a_deep_body() -> None:
    with pytest.raises(ServerError) as info:
        wp.decode_envelope("get_session", 500, DEEP)
    assert info.value.status == 500


def test_deep_nesting_in_a_stream_is_a_protocol_error() -> None:
    decoder = JSONStreamDecoder()
    with pytest.raises(StreamDecodeError, match="deeper than max_depth"):
        decoder.feed(DEEP)


async def test_workbench_client_deep_body(mocked: aioresponses) -> None:
    mocked.post(f"{WB}/api/get_session", body=DEEP_SMALL_RESULT, content_type="application/json")
    async with WorkbenchClient(WB, token="t", retry=NO_RETRY) as wb:
        with pytest.raises(ProtocolError, match="nested too deeply"):
            await wb.sessions.list()


async def test_et_engine_client_deep_create_answer(mocked: aioresponses) -> None:
    mocked.post(f"{ET}/tools/t1", body=DEEP_SMALL, content_type="application/json")
    async with ETEngineClient(api_key="k", base_url=ET, retry=NO_RETRY) as et:
        with pytest.raises(ProtocolError, match="nested too deeply"):
            await et.batches.create("t1")


# --------------------------------------------------------------------------- nothing chained


BAD_PARSES: list[tuple[str, Callable[[], Any]]] = [
    ("workbench bad JSON", lambda: wp.decode_envelope("get_session", 200, BAD_JSON)),
    ("workbench not UTF-8", lambda: wp.decode_envelope("get_session", 200, NOT_UTF8)),
    ("workbench parse_response", lambda: wp.parse_response("get_users", 200, BAD_JSON)),
    ("qiskit bytes", lambda: qp.parse_session(BAD_JSON)),
    ("qiskit text", lambda: qp.parse_session(BAD_JSON.decode())),
    ("etengine create", lambda: ep.parse_created_batch(BAD_JSON, tool_id="t", n_jobs=1)),
    ("etengine create deep", lambda: ep.parse_created_batch(DEEP, tool_id="t", n_jobs=1)),
]


@pytest.mark.parametrize("parse", [p for _, p in BAD_PARSES], ids=[n for n, _ in BAD_PARSES])
def test_bad_json_chains_nothing(parse: Callable[[], Any]) -> None:
    with pytest.raises(ProtocolError) as info:
        parse()
    assert_unchained(info.value)


@pytest.mark.parametrize(
    "chunks",
    [
        [b'{"token": "' + SECRET.encode() + b'", x}'],
        [b'{"a": "' + SECRET.encode() + b'"', b"}{nope"],
        [b'{"a": "' + SECRET.encode() + b'", "b": NaN}'],
    ],
)
def test_stream_errors_chain_nothing(chunks: list[bytes]) -> None:
    decoder = JSONStreamDecoder()
    with pytest.raises(StreamDecodeError) as info:
        list(decoder.values(chunks))
    assert_unchained(info.value)


def test_a_stream_cut_short_chains_nothing() -> None:
    decoder = JSONStreamDecoder()
    decoder.feed(b'{"access_token": "' + SECRET.encode())
    with pytest.raises(StreamDecodeError) as info:
        decoder.close()
    assert info.value.truncated
    assert_unchained(info.value)


@pytest.fixture
async def wb() -> AsyncIterator[WorkbenchClient]:
    async with WorkbenchClient(WB, token="t", retry=NO_RETRY) as client:
        yield client


async def test_workbench_client_bad_json_chains_nothing(
    mocked: aioresponses, wb: WorkbenchClient
) -> None:
    mocked.post(f"{WB}/api/get_session", body=BAD_JSON, content_type="application/json")
    with pytest.raises(ProtocolError, match="invalid JSON") as info:
        await wb.sessions.list()
    assert_unchained(info.value)


async def test_workbench_stream_garbage_chains_nothing(
    mocked: aioresponses, wb: WorkbenchClient
) -> None:
    chunk = b'{"jobId": "j1", "outputType": "stdout", "output": "token=' + SECRET.encode() + b'"}'
    mocked.post(f"{WB}/api/get_job_output", body=chunk + b"\n{garbage")
    with pytest.raises(StreamDecodeError) as info:
        async for _ in wb.jobs.output("j1", follow=False):
            pass
    assert_unchained(info.value)


def test_a_deeply_nested_wait_token_is_a_value_error() -> None:
    from aiocompute import WaitToken

    with pytest.raises(ValueError, match="nested too deeply"):
        WaitToken.from_json("[" * 100_000 + "]" * 100_000)


def test_deeply_nested_batch_arguments_are_a_type_error() -> None:
    from aiocompute.etengine import _protocol as ETP

    deep: list[object] = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(TypeError, match="nested too deeply"):
        ETP.create_batch("tool", fixed_args={"x": deep})
