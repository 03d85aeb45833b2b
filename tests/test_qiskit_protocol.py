"""Qiskit Runtime sans-I/O protocol: reference examples in strict mode, request builders,
error shapes, the IAM answer, and the session state table."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiocompute import ProtocolError
from aiocompute.qiskit import Session, SessionMode, SessionState, StateTimestamp
from aiocompute.qiskit import _protocol as qp
from aiocompute.qiskit._states import SESSION_STATES

FIXTURES = Path(__file__).parent / "fixtures" / "qiskit"
UTC = timezone.utc


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


# --------------------------------------------------------------------------- reference examples


@pytest.mark.parametrize("name", ["create_session.response.json", "get_session.response.json"])
def test_reference_session_examples_read_in_strict_mode(name: str) -> None:
    session = qp.parse_session(load(name), strict=True)
    assert session.id == "example"
    assert session.backend_name == "example"
    assert session.state is SessionState.OPEN
    assert session.mode is SessionMode.BATCH
    assert session.accepting_jobs is True
    assert (session.interactive_ttl, session.max_ttl, session.active_ttl) == (1, 1, 1)
    assert session.elapsed_time == pytest.approx(1.432)
    assert session.user_id == "example"
    assert session.state_reason == "example"
    # The placeholder "example" is no time: kept as the text sent.
    assert session.started_at == "example"
    assert session.timestamps == (StateTimestamp(SessionState.OPEN, "example"),)
    assert session.raw == load(name)


def test_schema_properties_are_all_modelled() -> None:
    schema = load("session.schema.json")
    fields = {a.name for a in attrs.fields(Session)} - {"raw"}
    assert set(schema["properties"]) == fields
    assert set(schema["required"]) <= fields
    documented = set(schema["properties"]["state"]["enum"])
    assert documented <= {s.value for s in SessionState}
    assert set(schema["properties"]["mode"]["enum"]) == {m.value for m in SessionMode}
    item = schema["properties"]["timestamps"]["items"]
    assert set(item["properties"]) == {a.name for a in attrs.fields(StateTimestamp)} - {"raw"}


def test_update_request_matches_the_curl_example() -> None:
    request = qp.update_session("abc", accepting_jobs=True)
    assert request.body == load("update_session.request.json")
    assert (request.method, request.path, request.idempotent) == (
        "PATCH",
        "/v1/sessions/abc",
        True,
    )


def test_strict_mode_rejects_unknown_keys_lenient_keeps_them() -> None:
    data = {**load("get_session.response.json"), "new_field": 1}
    with pytest.raises(ProtocolError, match="new_field"):
        qp.parse_session(data, strict=True)
    session = qp.parse_session(data)
    assert session.raw["new_field"] == 1


def test_real_answer_with_nulls_times_and_unknown_state() -> None:
    data = {
        "id": "cq9",
        "backend_name": None,
        "mode": "dedicated",
        "state": "pending_inactive",
        "accepting_jobs": True,
        "started_at": "2025-05-01T12:00:00.123Z",
        "activated_at": None,
        "closed_at": "",
        "elapsed_time": None,
        "timestamps": [{"status": "open", "timestamp": "2025-05-01T12:00:00Z"}],
        "max_ttl": 28800,
    }
    session = qp.parse_session(data, strict=True)
    assert session.backend_name is None
    assert session.state is SessionState.PENDING_INACTIVE
    assert session.started_at == datetime(2025, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)
    assert session.closed_at is None
    assert session.elapsed_time is None
    assert session.timestamps[0].timestamp == datetime(2025, 5, 1, 12, tzinfo=UTC)
    odd = qp.parse_session({**data, "state": "suspended_by_admin"})
    assert odd.state == "suspended_by_admin"
    assert odd.state_name == "suspended_by_admin"


def test_parse_session_reports_paths_and_bad_bodies() -> None:
    with pytest.raises(ProtocolError, match=r"\$\.max_ttl"):
        qp.parse_session({"id": "x", "max_ttl": "forever"})
    with pytest.raises(ProtocolError, match="HTML"):
        qp.parse_session(b"<html><body>Sign in</body></html>")
    with pytest.raises(ProtocolError, match="empty"):
        qp.parse_session(b"  ")
    with pytest.raises(ProtocolError, match=r"\$\.id"):
        qp.parse_session({"state": "open"})
    assert qp.parse_session(b'{"id": "s1"}').id == "s1"


# --------------------------------------------------------------------------- requests


def test_create_request_defaults_and_options() -> None:
    request = qp.create_session("ibm_kyiv")
    assert (request.method, request.path, request.idempotent) == ("POST", "/v1/sessions", False)
    # max_ttl only when set (the service then applies its 8 h), instance only when given.
    assert request.body == {"mode": "batch", "backend": "ibm_kyiv"}
    crn = "crn:v1:bluemix:public:quantum-computing:us-east:a/abc::"
    request = qp.create_session("ibm_fez", mode=SessionMode.DEDICATED, max_ttl=600, instance=crn)
    assert request.body == {
        "mode": "dedicated",
        "backend": "ibm_fez",
        "max_ttl": 600,
        "instance": crn,
    }


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"backend": ""}, ValueError, "backend is required"),
        ({"backend": 3}, TypeError, "backend must be a string"),
        ({"backend": "b", "mode": "shared"}, ValueError, "mode must be"),
        ({"backend": "b", "max_ttl": 0}, ValueError, "max_ttl"),
        ({"backend": "b", "max_ttl": True}, TypeError, "max_ttl"),
        ({"backend": "b", "max_ttl": 1.5}, TypeError, "max_ttl"),
        ({"backend": "b", "instance": " "}, ValueError, "instance"),
    ],
)
def test_create_request_rejects_bad_arguments(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        qp.create_session(**kwargs)


def test_read_close_and_update_requests() -> None:
    get = qp.get_session("cq9")
    assert (get.method, get.path, get.body, get.idempotent) == (
        "GET",
        "/v1/sessions/cq9",
        None,
        True,
    )
    close = qp.close_session("cq9")
    assert (close.method, close.path, close.idempotent) == (
        "DELETE",
        "/v1/sessions/cq9/close",
        False,
    )
    assert qp.update_session("cq9", accepting_jobs=False).body == {"accepting_jobs": False}
    with pytest.raises(TypeError, match="accepting_jobs"):
        qp.update_session("cq9", accepting_jobs="no")  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["", " ", "a/b", "a?b", "a#b", "a b", "a%2F", "a\nb"])
def test_session_ids_that_would_change_the_path_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="session_id"):
        qp.get_session(bad)


# --------------------------------------------------------------------------- errors


ERRORS_SHAPE = {
    "errors": [{"code": 1217, "message": "Session not found.", "more_info": "https://x/y"}],
    "trace": "abc123",
}
IAM_SHAPE = {"errorCode": "BXNIM0415E", "errorMessage": "Provided API key could not be found."}


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (404, ERRORS_SHAPE, (1217, "Session not found. (more info: https://x/y)")),
        (
            400,
            {"errors": [{"code": 1, "message": "a"}, {"code": 2, "message": "b"}], "trace": "t"},
            (1, "a; b"),
        ),
        (
            401,
            {"error": {"code": "unauthorized", "message": "Invalid token"}},
            ("unauthorized", "Invalid token"),
        ),
        (400, IAM_SHAPE, ("BXNIM0415E", "Provided API key could not be found.")),
        (
            400,
            {"error": "invalid_grant", "error_description": "bad grant"},
            ("invalid_grant", "bad grant"),
        ),
        (400, {"message": "plain message", "code": 7}, (7, "plain message")),
    ],
)
def test_error_parser_reads_every_shape(
    status: int, body: dict[str, Any], expected: tuple[Any, str]
) -> None:
    assert qp.error_parser(status, json.dumps(body).encode(), {}) == expected


def test_error_parser_falls_back_to_text_and_leaves_html_to_the_transport() -> None:
    assert qp.error_parser(500, b"  upstream   timed out \n", {}) == (None, "upstream timed out")
    assert qp.error_parser(502, b"<html><body>Bad Gateway</body></html>", {}) is None
    assert qp.error_parser(500, b"", {}) is None
    assert qp.error_parser(500, b'{"unrelated": true}', {}) is None
    assert qp.error_parser(500, b'{"errors": []}', {}) is None


def test_503_reads_as_maintenance() -> None:
    code, message = qp.error_parser(503, b"", {}) or (None, "")
    assert code is None
    assert "maintenance" in message
    parsed = qp.error_parser(503, b'{"errors": [{"code": 9, "message": "down"}]}', {})
    assert parsed == (9, "IBM Quantum is unavailable, likely under maintenance: down")


# --------------------------------------------------------------------------- IAM


def test_iam_form_and_answer() -> None:
    assert qp.iam_token_form("k3y-k3y") == {
        "grant_type": "urn:ibm:params:oauth:grant-type:apikey",
        "apikey": "k3y-k3y",
        "response_type": "cloud_iam",  # as IBM's own client asks
    }
    token = qp.parse_iam_token(
        {"access_token": "tok-123456", "token_type": "Bearer", "expires_in": 3600}
    )
    assert (token.access_token, token.expires_in) == ("tok-123456", 3600.0)
    assert "tok-123456" not in repr(token)
    by_expiration = qp.parse_iam_token(
        {"access_token": "tok-123456", "expiration": 1_000_100}, now=1_000_000
    )
    assert by_expiration.expires_in == 100


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ([], "expected a JSON object"),
        ({"expires_in": 10}, "no 'access_token'"),
        ({"access_token": "tok-abcdef", "expires_in": 0}, "expires_in"),
        ({"access_token": "tok-abcdef", "expires_in": "3600"}, "expires_in"),
        ({"access_token": "tok-abcdef"}, "expires_in"),
        ({"access_token": "tok-abcdef", "expires_in": 5, "token_type": "mac"}, "token_type"),
    ],
)
def test_bad_iam_answers_never_show_the_token(data: Any, match: str) -> None:
    with pytest.raises(ProtocolError, match=match) as info:
        qp.parse_iam_token(data)
    assert "tok-abcdef" not in str(info.value)


# --------------------------------------------------------------------------- states


def session(state: str, accepting: bool | None = True) -> Session:
    return Session(id="s", state=state, accepting_jobs=accepting)


def test_effective_state_refines_with_accepting_jobs() -> None:
    assert session("active").effective_state == "active"
    assert session("active").ready
    assert session("active", accepting=None).effective_state == "active"
    for state in ("open", "active", "inactive"):
        drained = session(state, accepting=False)
        assert drained.draining
        assert drained.effective_state == "pending_closed"
        assert not drained.ready
    assert session("closed", accepting=False).effective_state == "closed"
    assert session("pending_inactive", accepting=False).effective_state == "pending_inactive"
    assert Session(id="s").state_name == "unknown"


def test_state_table() -> None:
    table = SESSION_STATES
    assert table.is_terminal("closed")
    assert table.can_reach("open", "active")
    assert table.can_reach("inactive", "active")  # new jobs can make it active again
    assert not table.can_reach("active", "open")
    assert not table.can_reach("pending_closed", "active")
    assert table.can_reach("pending_closed", "closed")
    assert not table.can_reach("closed", "open")
    assert table.can_reach("some_new_state", "active")  # unknown states may go anywhere
    assert table.states == {s.value for s in SessionState}


@given(st.sampled_from([s.value for s in SessionState]), st.booleans())
def test_every_state_reaches_closed_and_itself(state: str, accepting: bool) -> None:
    effective = session(state, accepting).effective_state
    assert SESSION_STATES.can_reach(effective, "closed")
    assert SESSION_STATES.can_reach(effective, effective)
