"""The shared path-id check and JSON reading of the ``_protocol`` modules (``_core.protocol_kit``),
and every API's request builders using it for every id that goes into a URL path."""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiocompute._core import protocol_kit as kit
from aiocompute._core.protocol_kit import NOT_JSON, TOO_DEEP, path_id, read_json
from aiocompute.etengine import _protocol as ep
from aiocompute.lakesail import _protocol as lp
from aiocompute.qiskit import _protocol as qp
from aiocompute.workbench import _protocol as wp

# The ids the bug report names: each would change or cut the path it is put in.
DANGEROUS = [".", "..", "", "a/b", "a?b", "a#b", "%2e", "a b", "a\n"]

# Characters refused anywhere in an id.
PATH_CHARS = "/?#%"
refused_char = st.one_of(
    st.sampled_from(PATH_CHARS),
    st.characters(categories=["Cc", "Zs", "Zl", "Zp", "Cs"]),  # controls, whitespace, surrogates
    st.sampled_from(["\x7f", "\x85", "\x9f", "\u2028", "\u2029", "\t", "\x1c"]),
)
allowed_char = st.characters(
    exclude_categories=["Cc", "Zs", "Zl", "Zp", "Cs"], exclude_characters=PATH_CHARS
).filter(lambda c: not c.isspace())


# --------------------------------------------------------------------------- path_id


@given(st.text(), refused_char, st.text())
def test_any_text_holding_a_refused_character_is_refused(before: str, bad: str, after: str) -> None:
    with pytest.raises(ValueError, match=r"^batch_id must not"):
        path_id(before + bad + after, "batch_id")


@given(st.text(allowed_char, min_size=1).filter(lambda s: s not in (".", "..")))
def test_valid_ids_round_trip_through_unquote(value: str) -> None:
    quoted = path_id(value, "job_id")
    assert unquote(quoted, errors="strict") == value
    # One path segment, in plain ASCII: nothing a URL parser would split or resolve.
    assert re.fullmatch(r"[A-Za-z0-9_.~%-]+", quoted)
    assert quoted not in (".", "..")


@pytest.mark.parametrize("value", [*DANGEROUS, " ", "\t", "a\x00b", "a\x7f", "a\x85", "x\u2028"])
def test_dangerous_ids_are_refused_naming_the_argument(value: str) -> None:
    with pytest.raises(ValueError, match=r"^session_id must not") as info:
        path_id(value, "session_id")
    assert "\n" not in str(info.value)  # a control character is shown escaped


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (".", "dot segment"),
        ("..", "dot segment"),
        ("", "empty"),
        ("   ", "empty or only whitespace"),
        ("a/b", r"'/' \(at index 1\): it would split the URL path"),
        ("a?b", "query"),
        ("a#b", "fragment"),
        ("%2e", "percent-escape"),
        ("a b", "whitespace"),
        ("ab\n", r"'\\n' \(at index 2\): whitespace"),
        ("a\x00", "control character"),
        ("a\x9b", "control character"),  # C1
        ("a\ud800", "surrogate"),
    ],
)
def test_the_error_says_which_character_and_why(value: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        path_id(value, "x")


def test_the_one_search_refuses_exactly_the_characters_the_rules_name() -> None:
    # path_id finds a refused character with one regex; the reasons come from the rules.
    for point in range(0x110000):
        char = chr(point)
        refused = char in kit._PATH_CHARS or kit._unsafe(char) is not None
        assert (kit._REFUSED.search(char) is not None) == refused, hex(point)


@pytest.mark.parametrize("value", [None, 3, 2.5, b"abc", ["a"], object()])
def test_a_non_string_is_a_type_error_naming_argument_and_type(value: Any) -> None:
    with pytest.raises(TypeError, match=f"^job_id must be a str, got {type(value).__name__}$"):
        path_id(value, "job_id")


def test_plain_ids_are_kept_and_others_quoted() -> None:
    assert path_id("b-1_x.y~Z9", "x") == "b-1_x.y~Z9"
    assert path_id("...", "x") == "..."  # not a dot segment
    assert path_id("b:1", "x") == "b%3A1"
    assert path_id("café", "x") == "caf%C3%A9"
    assert path_id("a@b+c", "x") == "a%40b%2Bc"


class _Str(str):
    pass


def test_a_str_subclass_is_checked_like_a_str() -> None:
    assert path_id(_Str("abc"), "x") == "abc"
    with pytest.raises(ValueError, match="dot segment"):
        path_id(_Str(".."), "x")


# --------------------------------------------------------------------------- read_json


def test_read_json() -> None:
    assert read_json(b'{"a": [1]}') == ({"a": [1]}, None)
    assert read_json("null") == (None, None)
    assert read_json(b"{x") == (None, NOT_JSON)
    assert read_json(b"\xff\xfe\xfa") == (None, NOT_JSON)
    assert read_json(b"[" * 100_000 + b"]" * 100_000) == (None, TOO_DEEP)
    assert read_json('{"result": ' + "[" * 100_000 + "]" * 100_000 + "}") == (None, TOO_DEEP)


# --------------------------------------------------------------------------- Request


def test_a_request_always_states_whether_it_is_idempotent() -> None:
    with pytest.raises(TypeError, match="idempotent"):
        kit.Request("GET", "/x")  # type: ignore[call-arg]
    request = kit.Request("GET", "/x", idempotent=True)
    assert (request.body, request.params, request.operation, request.stream) == (
        None,
        None,
        None,
        False,
    )


def test_every_api_builds_the_one_request_type() -> None:
    built = (wp.version(), wp.get_session(["s"]), qp.get_session("s"), lp.list_sessions())
    for request in (*built, ep.list_batches()):
        assert type(request) is kit.Request


# --------------------------------------------------------------------------- the builders

BUILDERS: list[tuple[str, Callable[[str], Any]]] = [
    ("batch_id", ep.get_batch_status),
    ("batch_id", ep.delete_batch),
    ("batch_id", ep.list_jobs),
    ("batch_id", lambda v: ep.get_job(v, "j1")),
    ("job_id", lambda v: ep.get_job("b1", v)),
    ("tool_id", ep.create_batch),
    ("session_id", qp.get_session),
    ("session_id", qp.close_session),
    ("session_id", lambda v: qp.update_session(v, accepting_jobs=False)),
    ("session_id", lp.get_session),
    ("session_id", lp.close_session),
    ("session_id", lp.issue_session_token),
    ("session_id", lp.relaunch_session),
    ("workload_config_id", lp.get_workload_config),
]


@pytest.mark.parametrize("value", DANGEROUS)
@pytest.mark.parametrize(("what", "build"), BUILDERS)
def test_every_builder_refuses_dangerous_path_ids(
    what: str, build: Callable[[str], Any], value: str
) -> None:
    with pytest.raises(ValueError, match=what):
        build(value)


@pytest.mark.parametrize(("what", "build"), BUILDERS)
def test_every_builder_refuses_a_non_string_path_id(what: str, build: Callable[[str], Any]) -> None:
    with pytest.raises(TypeError, match=f"{what} must be a str"):
        build(7)  # type: ignore[arg-type]


def test_quoted_ids_reach_the_path() -> None:
    assert ep.get_job("b:1", "jé").path == "/batches/b%3A1/jobs/j%C3%A9"
    assert qp.close_session("cq:9").path == "/v1/sessions/cq%3A9/close"
    assert lp.get_session("ABC123").path == "/workloads/sessions/ABC123"


@given(st.text(alphabet=string.printable + "é\u2028\x85", max_size=8))
def test_workbench_ids_never_reach_the_url_path(value: str) -> None:
    # Workbench is JSON-RPC: ids travel in the body; the path only names the method.
    for build in (
        lambda v: wp.get_session([v]),
        wp.resume_session,
        wp.stop_session,
        wp.stop_job,
        wp.stop_audited_job,
        wp.get_job_output,
        wp.get_audited_job_output,
        wp.get_audited_job_details,
    ):
        try:
            request = build(value)
        except (TypeError, ValueError):
            continue
        assert request.path == f"/api/{request.operation}"
