"""The sans-I/O LakeSail protocol: request builders, id and limit validation, the join of list
items with ``included``, the lenient error parser, and the state table."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiocompute import ProtocolError
from aiocompute.lakesail import _protocol as P
from aiocompute.lakesail._states import READY_STATES, RELAUNCHABLE_STATES, SESSION_STATES
from aiocompute.lakesail.models import (
    EndpointType,
    Library,
    PypiLibrary,
    SailConfig,
    Session,
    SessionConfig,
    SessionStatus,
    WorkloadSettings,
)

VALID_ID = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=20)


# -- ids ------------------------------------------------------------------------------------------


@given(VALID_ID)
def test_valid_ids_are_accepted_everywhere(sid: str) -> None:
    assert P.check_id(sid, "x") == sid
    assert P.get_session(sid).path == f"/workloads/sessions/{sid}"
    assert P.get_workload_config(sid).path == f"/workloads/compute-configs/{sid}"


@given(st.text(max_size=30).filter(lambda s: re.fullmatch(r"[A-Z0-9]{1,20}", s) is None))
def test_invalid_ids_are_refused_before_sending(value: str) -> None:
    with pytest.raises(ValueError, match="session_id must be 1 to 20 upper-case"):
        P.get_session(value)


@pytest.mark.parametrize(
    "bad",
    ["", "a1b2", "A" * 21, "ABC\n", "ABC/../X", "ABC DEF", "ÄBC", "abc-123"],
)
@pytest.mark.parametrize(
    "build",
    [
        P.get_session,
        P.close_session,
        P.relaunch_session,
        P.issue_session_token,
        P.get_workload_config,
    ],
)
def test_every_id_taking_builder_validates(build: Any, bad: str) -> None:
    with pytest.raises(ValueError, match=re.escape("^[A-Z0-9]{1,20}$")):
        build(bad)


def test_id_of_the_wrong_type_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="session_id must be a string id, got int"):
        P.get_session(123)  # type: ignore[arg-type]


def test_filter_and_body_ids_are_validated_with_their_names() -> None:
    with pytest.raises(ValueError, match="team_id"):
        P.list_sessions(team_id="team-a")
    with pytest.raises(ValueError, match="workload_config_id"):
        P.create_session(workload_config_id="cfg")
    with pytest.raises(ValueError, match="cluster_id"):
        P.create_workload_config("n", cluster_id="c1")


def test_a_credential_passed_as_an_id_is_not_echoed() -> None:
    from aiocompute._exceptions import register_secret

    secret = "lsk-secret-Qw9871zz"
    register_secret(secret)
    with pytest.raises(ValueError, match="session_id") as info:
        P.get_session(secret)
    assert secret not in str(info.value)


# -- list requests -----------------------------------------------------------------------------


def test_list_sessions_uses_the_reference_parameter_names() -> None:
    request = P.list_sessions(
        team_id="T1",
        endpoint_type=EndpointType.SPARK_CONNECT,
        status=SessionStatus.IDLE,
        limit=25,
        marker="opaque==",
    )
    # teamId camelCase, endpoint_type snake_case: as the reference spells them.
    assert dict(request.params) == {
        "teamId": "T1",
        "endpoint_type": "spark_connect",
        "status": "idle",
        "limit": 25,
        "marker": "opaque==",
    }
    assert (request.method, request.path, request.body, request.idempotent) == (
        "GET",
        "/workloads/sessions",
        None,
        True,
    )


def test_absent_filters_are_not_sent() -> None:
    assert dict(P.list_sessions().params) == {}
    assert dict(P.list_sessions(marker="").params) == {}
    assert dict(P.list_workload_configs().params) == {}


def test_unknown_filter_values_are_sent_as_given() -> None:
    assert P.list_sessions(status="draining").params["status"] == "draining"
    with pytest.raises(ValueError, match="status"):
        P.list_sessions(status="not valid")
    with pytest.raises(ValueError, match="endpoint_type"):
        P.list_sessions(endpoint_type="")


@pytest.mark.parametrize("limit", [0, 1, 50, 100])
def test_limit_bounds_accept(limit: int) -> None:
    assert P.list_sessions(limit=limit).params["limit"] == limit
    assert P.list_workload_configs(limit=limit).params["limit"] == limit


@pytest.mark.parametrize(
    ("limit", "error"),
    [(-1, ValueError), (101, ValueError), (1000, ValueError), (True, TypeError), ("5", TypeError)],
)
def test_limit_bounds_refuse(limit: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="limit"):
        P.list_sessions(limit=limit)
    with pytest.raises(error, match="limit"):
        P.list_workload_configs(limit=limit)


def test_list_workload_configs_request() -> None:
    request = P.list_workload_configs(team_id="T1", limit=3, marker="m")
    assert request.path == "/workloads/compute-configs"
    assert dict(request.params) == {"teamId": "T1", "limit": 3, "marker": "m"}
    assert request.idempotent is True


# -- writes -------------------------------------------------------------------------------------


def test_writes_are_not_idempotent_and_reads_are() -> None:
    writes = [
        P.create_session(),
        P.close_session("S1"),
        P.issue_session_token("S1"),
        P.relaunch_session("S1"),
        P.create_workload_config("n"),
    ]
    assert all(not r.idempotent for r in writes)
    reads = [P.list_sessions(), P.get_session("S1"), P.list_workload_configs()]
    reads.append(P.get_workload_config("C1"))
    assert all(r.idempotent for r in reads)
    assert {r.operation for r in writes + reads} == set(P.OPERATIONS)


def test_close_and_relaunch_send_no_body() -> None:
    close = P.close_session("S1")
    assert (close.method, close.path, close.body) == ("DELETE", "/workloads/sessions/S1", None)
    relaunch = P.relaunch_session("S1")
    assert (relaunch.method, relaunch.path, relaunch.body) == (
        "POST",
        "/workloads/sessions/S1/relaunch",
        None,
    )


def test_create_session_defaults_to_spark_connect_and_sends_only_what_is_given() -> None:
    assert P.create_session().body == {"endpointType": "spark_connect"}
    assert P.create_session(endpoint_type=None, name="etl").body == {"name": "etl"}
    body = P.create_session(config=SessionConfig(idle_timeout_seconds=60))
    assert body.body["config"] == {"idleTimeoutSeconds": 60}
    raw = P.create_session(config={"idleTimeoutSeconds": 5, "futureKnob": 1})
    assert raw.body["config"] == {"idleTimeoutSeconds": 5, "futureKnob": 1}


def test_create_session_checks_its_arguments() -> None:
    with pytest.raises(TypeError, match="allow_shared"):
        P.create_session(allow_shared="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="idle_timeout_seconds"):
        P.create_session(config=SessionConfig(idle_timeout_seconds=-1))
    with pytest.raises(TypeError, match="metadata"):
        P.create_session(metadata={"k": 1})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="name"):
        P.create_session(name="  ")
    with pytest.raises(ValueError, match=r"extra repeats.*name"):
        P.create_session(name="x", extra={"name": "y"})
    assert P.create_session(extra={"labels": ["a"]}).body["labels"] == ["a"]


def test_token_duration_must_be_positive() -> None:
    assert P.issue_session_token("S1").body == {}
    with pytest.raises(ValueError, match="duration_seconds"):
        P.issue_session_token("S1", duration_seconds=0)
    with pytest.raises(TypeError, match="duration_seconds"):
        P.issue_session_token("S1", duration_seconds=1.5)  # type: ignore[arg-type]


def test_create_workload_config_writes_nested_settings_in_camel_case() -> None:
    settings = WorkloadSettings(
        sail=SailConfig(
            execution_mode="standalone",
            libraries=(Library(pypi=PypiLibrary(package="polars")),),
            extra_env={"A": "1"},
        )
    )
    body = P.create_workload_config("etl", config=settings, endpoint_limits={"spark_connect": 2})
    assert body.body == {
        "name": "etl",
        "config": {
            "sail": {
                "executionMode": "standalone",
                "libraries": [{"pypi": {"package": "polars"}}],
                "extraEnv": {"A": "1"},
            }
        },
        "endpointLimits": {"spark_connect": 2},
    }
    with pytest.raises(ValueError, match="endpoint_limits"):
        P.create_workload_config("etl", endpoint_limits={"spark_connect": -1})
    with pytest.raises(TypeError, match="config"):
        P.create_workload_config("etl", config=42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="name"):
        P.create_workload_config("")


# -- the join -----------------------------------------------------------------------------------


def _session(sid: str, **extra: Any) -> dict[str, Any]:
    return {"id": sid, "status": "active", **extra}


def test_join_follows_items_order_and_fills_reference_fields() -> None:
    data = {
        "total": 3,
        "items": [
            {"id": "B", "computeInstanceId": "WB", "memberId": "M1"},
            {"id": "A", "computeInstanceId": "WA", "serviceAccountId": "SA1"},
        ],
        "included": {
            "sessions": [_session("A"), _session("B", memberId="M9"), _session("C")],
        },
        "marker": "next",
    }
    page = P.parse_session_list(data, strict=True)
    assert [s.id for s in page.sessions] == ["B", "A"]  # items decide; C is not listed
    b, a = page.sessions
    assert b.compute_instance_id == "WB"
    assert b.member_id == "M9"  # the session's own value wins over the reference
    assert a.service_account_id == "SA1"  # filled from the reference
    assert a.raw == _session("A")  # raw stays the object as sent
    assert page.total == 3
    assert page.marker == "next"


def test_an_item_missing_from_included_is_a_protocol_error() -> None:
    data = {
        "items": [{"id": "A"}, {"id": "GHOST"}],
        "included": {"sessions": [_session("A")]},
    }
    with pytest.raises(ProtocolError, match=r"\$\.items\[1\]: session 'GHOST' is not in"):
        P.parse_session_list(data)


def test_items_without_any_included_block_are_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="GHOST"):
        P.parse_session_list({"items": [{"id": "GHOST"}]})


def test_an_empty_last_page_needs_nothing_included() -> None:
    page = P.parse_session_list({"total": 0, "items": []}, strict=True)
    assert page.sessions == ()
    assert page.marker is None
    assert P.parse_session_list({"items": [], "marker": ""}).marker is None


def test_a_list_that_is_not_an_object_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="session list"):
        P.parse_session_list([{"id": "A"}])


@given(st.lists(VALID_ID, unique=True, max_size=15), st.randoms(use_true_random=False))
def test_join_is_items_order_whatever_the_included_order(ids: list[str], rnd: Any) -> None:
    included = [_session(i) for i in ids]
    rnd.shuffle(included)
    page = P.parse_session_list(
        {"items": [{"id": i} for i in ids], "included": {"sessions": included}}
    )
    assert [s.id for s in page.sessions] == ids


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {"code": "not_found", "message": "session S1 not found"},
            ("not_found", "session S1 not found"),
        ),
        ({"error": "invalid marker"}, (None, "invalid marker")),
        ({"error": {"code": "conflict", "message": "is active"}}, ("conflict", "is active")),
        ({"detail": "Not authenticated"}, (None, "Not authenticated")),
        (
            {"detail": [{"loc": ["query", "limit"], "msg": "must be <= 100"}, {"msg": "bad"}]},
            (None, "must be <= 100; bad"),
        ),
        ({"errors": ["x"], "status": 400}, (None, '{"errors": ["x"], "status": 400}')),
        ("just a JSON string", (None, "just a JSON string")),
    ],
)
def test_error_parser_reads_any_plausible_json_shape(body: Any, expected: tuple[Any, str]) -> None:
    assert P.error_parser(400, json.dumps(body).encode()) == expected


def test_error_parser_falls_back_to_the_text() -> None:
    assert P.error_parser(409, b"session is active\n") == (None, "session is active")
    assert P.error_parser(502, b"<html><body>Bad Gateway</body></html>") is None
    assert P.error_parser(500, b"") is None
    assert P.error_parser(500, None) is None
    # Long text is cut.
    code, message = P.error_parser(400, b"x" * 1000) or (None, "")
    assert code is None
    assert len(message) == 200


@given(st.binary(max_size=200))
def test_error_parser_never_raises(body: bytes) -> None:
    result = P.error_parser(500, body)
    assert result is None or isinstance(result[1], str)


# -- states -------------------------------------------------------------------------------------


def test_state_table_matches_the_design() -> None:
    t = SESSION_STATES
    assert t.transient == {"pending"}
    assert t.terminal == {"closed", "failed"}
    assert t.states == {"pending", "active", "idle", "closed", "failed"}
    assert set(READY_STATES) == {"active", "idle"}
    assert set(RELAUNCHABLE_STATES) == {"closed", "failed"}
    assert t.can_reach("pending", "active")
    assert t.can_reach("idle", "active")
    assert t.can_reach("active", "idle")
    assert not t.can_reach("active", "pending")
    assert not t.can_reach("closed", "active")
    assert not t.can_reach("failed", "closed")
    assert t.is_settled("closed")
    assert not t.is_settled("idle")
    assert t.can_reach("draining", "active")  # unknown: anything may come


def test_session_state_of_a_model() -> None:
    assert P.session_state(Session("S1", status=SessionStatus.IDLE)) == "idle"
    assert P.session_state(Session("S1", status="draining")) == "draining"
    assert P.session_state(Session("S1")) == "unknown"
