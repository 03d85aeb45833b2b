"""LakeSail models against every JSON example of the reference (strict mode), and the request
builders against the reference's request examples."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from aiocompute import ProtocolError
from aiocompute._core.serde import structure
from aiocompute.lakesail import _protocol as P
from aiocompute.lakesail.models import (
    EndpointType,
    Session,
    SessionConfig,
    SessionList,
    SessionStatus,
    SessionToken,
    WorkloadConfig,
    WorkloadConfigList,
    WorkloadSettings,
)

FIXTURES = Path(__file__).parent / "fixtures" / "lakesail"
UTC = timezone.utc


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


# Every response example -> (its parser, the model it must become).
RESPONSES: dict[str, tuple[Any, type]] = {
    "list_sessions.response.json": (P.parse_session_list, SessionList),
    "create_session.response.json": (P.parse_session, Session),
    "get_session.response.json": (P.parse_session, Session),
    "relaunch_session.response.json": (P.parse_session, Session),
    "issue_session_token.response.json": (P.parse_session_token, SessionToken),
    "list_workload_configs.response.json": (P.parse_workload_config_list, WorkloadConfigList),
    "create_workload_config.response.json": (P.parse_workload_config, WorkloadConfig),
    "get_workload_config.response.json": (P.parse_workload_config, WorkloadConfig),
}
REQUESTS = {
    "create_session.request.json",
    "issue_session_token.request.json",
    "create_workload_config.request.json",
}


def test_every_fixture_is_covered() -> None:
    on_disk = {p.name for p in FIXTURES.glob("*.json")}
    assert on_disk == set(RESPONSES) | REQUESTS
    # The reference documents nine endpoints; DELETE is the only one without a JSON example.
    assert len(P.OPERATIONS) == 9


@pytest.mark.parametrize("name", sorted(RESPONSES))
@pytest.mark.parametrize("strict", [True, False])
def test_every_response_example_reads(name: str, strict: bool) -> None:
    parse, model = RESPONSES[name]
    data = load(name)
    obj = parse(data, strict=strict)
    assert isinstance(obj, model)
    assert obj.raw == data  # the whole object is kept


@pytest.mark.parametrize("name", sorted(RESPONSES))
def test_strict_mode_rejects_an_unknown_key_that_lenient_mode_keeps(name: str) -> None:
    parse, _ = RESPONSES[name]
    data = load(name)
    data["brandNewField"] = {"x": 1}
    with pytest.raises(ProtocolError, match="brandNewField"):
        parse(data, strict=True)
    assert parse(data, strict=False).raw["brandNewField"] == {"x": 1}


def test_session_example_fields() -> None:
    s = P.parse_session(load("get_session.response.json"), strict=True)
    assert s.id == "A1B2C3D4E5"
    assert s.name == "Production Cluster"
    # Placeholders: unknown status/endpoint values stay strings, "string" stays a string.
    assert s.status == "string"
    assert s.state == "string"
    assert s.endpoint_type == "string"
    assert s.created_at == "string"
    assert s.connection_info is not None
    assert s.connection_info.grpc_endpoint == "string"
    assert s.config == SessionConfig(0, 0, 0)
    assert s.metadata == {"additionalProperties": "string"}
    assert s.compute_instance_id is None  # only list pages carry it
    assert not s.is_terminal
    assert not s.is_ready


def test_list_example_is_joined_with_included() -> None:
    page = P.parse_session_list(load("list_sessions.response.json"), strict=True)
    assert page.total == 0
    assert page.marker == "string"
    assert [s.id for s in page.sessions] == ["A1B2C3D4E5"]
    session = page.sessions[0]
    assert session.name == "Production Cluster"
    assert session.compute_instance_id == "A1B2C3D4E5"  # from the item reference
    assert page.refs[0].member_id == "A1B2C3D4E5"
    member = page.member("A1B2C3D4E5")
    assert member is not None
    assert member.email == "alice@example.com"
    assert member.is_enabled is True
    assert member.account_type == "managed"
    account = page.service_account("A1B2C3D4E5")
    assert account is not None
    assert account.username == "ci-deploy-bot"
    workload = page.workload("A1B2C3D4E5")
    assert workload is not None
    assert workload.endpoints == {"additionalProperties": "string"}
    config = page.workload_config("A1B2C3D4E5")
    assert config is not None
    assert config.endpoint_limits == {"spark_connect": 0}
    assert page.session("A1B2C3D4E5") is session
    assert page.session("NOPE") is None


def test_workload_config_example_is_fully_typed() -> None:
    cfg = P.parse_workload_config(load("get_workload_config.response.json"), strict=True)
    assert cfg.config is not None
    sail = cfg.config.sail
    assert sail is not None
    assert sail.execution_mode == "standalone"
    assert sail.compute is not None
    driver, worker = sail.compute.driver, sail.compute.worker
    assert driver is not None
    assert worker is not None
    assert driver.instance_type == "c8g.2xlarge"
    assert driver.ebs_config is not None
    assert driver.ebs_config.volume_size == 100
    assert driver.ebs_config.delete_on_termination is True
    assert worker.max_nodes == 4
    assert worker.capacity_type == "on-demand"
    assert sail.libraries is not None
    lib = sail.libraries[0]
    assert lib.pypi is not None
    assert lib.pypi.package == "string"
    assert lib.requirements is not None
    assert lib.whl == "string"
    assert sail.extra_env == {"additionalProperties": "string"}


def test_token_example_and_token_is_not_in_repr() -> None:
    token = P.parse_session_token(load("issue_session_token.response.json"), strict=True)
    assert token.token == "string"
    assert token.expires_at == "string"
    secret = P.parse_session_token({"token": "eyJhbGciOi.secret-part.sig", "expiresAt": None})
    assert "secret-part" not in repr(secret)


def test_empty_token_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="token"):
        P.parse_session_token({"token": "", "expiresAt": "2025-01-01T00:00:00Z"})


# -- requests against the reference's request examples -----------------------------------------


def test_create_session_builder_matches_the_example() -> None:
    example = load("create_session.request.json")
    request = P.create_session(
        endpoint_type="string",
        name="Production Cluster",
        team_id="A1B2C3D4E5",
        member_id="A1B2C3D4E5",
        service_account_id="A1B2C3D4E5",
        notebook_id="A1B2C3D4E5",
        config=SessionConfig(0, 0, 0),
        metadata={"additionalProperties": "string"},
        workload_config_id="A1B2C3D4E5",
        allow_shared=False,
    )
    assert request.body == example
    assert (request.method, request.path, request.idempotent) == (
        "POST",
        "/workloads/sessions",
        False,
    )


def test_create_workload_config_builder_matches_the_example() -> None:
    example = load("create_workload_config.request.json")
    settings = structure(P.converter(strict=True), example["config"], WorkloadSettings, what="x")
    request = P.create_workload_config(
        "Production Cluster",
        workload_type="string",
        cluster_id="A1B2C3D4E5",
        team_id="A1B2C3D4E5",
        config=settings,
        endpoint_limits={"spark_connect": 0},
    )
    assert request.body == example
    # A plain mapping is sent as given.
    as_mapping = P.create_workload_config(
        "Production Cluster",
        workload_type="string",
        cluster_id="A1B2C3D4E5",
        team_id="A1B2C3D4E5",
        config=copy.deepcopy(example["config"]),
        endpoint_limits={"spark_connect": 0},
    )
    assert as_mapping.body == example


def test_issue_token_builder_matches_the_example() -> None:
    example = load("issue_session_token.request.json")
    request = P.issue_session_token("A1B2C3D4E5", duration_seconds=28800)
    assert request.body == example
    assert request.path == "/workloads/sessions/A1B2C3D4E5/token"
    assert request.idempotent is False


# -- leniency ----------------------------------------------------------------------------------


def test_known_values_become_enums_and_timestamps_datetimes() -> None:
    s = P.parse_session(
        {
            "id": "S1",
            "status": "active",
            "endpointType": "spark_connect",
            "createdAt": "2025-07-23T10:11:12.345Z",
            "idleSince": "2025-07-23T10:11:12+02:00",
        },
        strict=True,
    )
    assert s.status is SessionStatus.ACTIVE
    assert s.endpoint_type is EndpointType.SPARK_CONNECT
    assert s.created_at == datetime(2025, 7, 23, 10, 11, 12, 345000, tzinfo=UTC)
    assert isinstance(s.idle_since, datetime)
    assert s.idle_since.utcoffset() is not None
    assert s.is_ready


def test_unknown_status_is_kept_as_a_string() -> None:
    s = P.parse_session({"id": "S1", "status": "draining"})
    assert s.status == "draining"
    assert s.state == "draining"
    assert not s.is_terminal


def test_epoch_ms_is_read_in_lenient_mode_only() -> None:
    data = {"id": "S1", "createdAt": 1_700_000_000_000}
    s = P.parse_session(data)
    assert s.created_at == datetime.fromtimestamp(1_700_000_000, tz=UTC)
    with pytest.raises(ProtocolError, match="createdAt"):
        P.parse_session(data, strict=True)


def test_lenient_mode_tolerates_nulls_and_coerces_numbers() -> None:
    s = P.parse_session(
        {"id": "S1", "metadata": None, "config": {"idleTimeoutSeconds": "30"}, "closedAt": None}
    )
    assert s.metadata == {}
    assert s.config is not None
    assert s.config.idle_timeout_seconds == 30
    assert s.closed_at is None


def test_wrong_types_are_protocol_errors_with_a_path() -> None:
    with pytest.raises(ProtocolError, match=r"\$\.config\.idleTimeoutSeconds"):
        P.parse_session({"id": "S1", "config": {"idleTimeoutSeconds": "soon"}})
    with pytest.raises(ProtocolError, match=r"\$\.id"):
        P.parse_session({"name": "no id"})
    with pytest.raises(ProtocolError, match="expected a JSON object"):
        P.parse_session(["not", "an", "object"])
