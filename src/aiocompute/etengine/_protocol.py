"""ET Engine batches API, sans I/O: request building and response deciphering.

Plain data in, plain data or models out; no aiohttp, no anyio, no I/O, no credentials.

Bodies are bare JSON (no envelope, no pagination); errors are plain text ("Access denied");
an empty 200 body means success. Where the reference and the servers disagree, both are
read (API-NOTES.md):

- ``GET /batches/<id>`` is documented as the flat counts object; servers have also sent a
  description with the counts (upper-case keys) under ``submitted_jobs``, and the vendor
  documents a list of one. All three are read.
- The job description is documented as a LIST with a trailing comma; a list of one object
  and a bare object are both read.
- Batches are listed with a nested ``batch_tool`` (reference) or a bare ``tool_id``.
- ``POST /tools/<tool_id>`` answers the new batch's id as plain text (or JSON, or nothing).
- The reference documents ``GET /batches/<batch_id>`` twice; the second one, "Deletes the
  specified batch", is really ``DELETE`` (:func:`delete_batch`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from .._core.protocol_kit import NOT_JSON, Request, path_id, read_json
from .._core.serde import Converters, structure
from .._exceptions import NotFoundError, ProtocolError
from .models import Batch, BatchJob, BatchStatus, Hardware, SubmittedBatch

__all__ = [
    "batch_state",
    "converter",
    "create_batch",
    "delete_all_batches",
    "delete_batch",
    "error_parser",
    "get_batch_status",
    "get_job",
    "list_batches",
    "list_jobs",
    "parse_batch_status",
    "parse_batches",
    "parse_created_batch",
    "parse_job",
    "parse_jobs",
]

# --------------------------------------------------------------------------- converters


#: The ET Engine converters: ``converter()`` is the lenient one, ``converter(strict=True)``
#: the strict one (unknown keys and wrong JSON types raise).
converter = Converters(naming="snake")


# --------------------------------------------------------------------------- requests


def list_batches() -> Request:
    """``GET /batches``: every batch of the user."""
    return Request("GET", "/batches", idempotent=True)


def delete_all_batches() -> Request:
    """``DELETE /batches``: delete every batch and job record of the user.

    Running jobs are NOT cancelled. Not retried once sent.
    """
    return Request("DELETE", "/batches", idempotent=False)


def get_batch_status(batch_id: str) -> Request:
    """``GET /batches/<batch_id>``: the batch's status counts."""
    return Request("GET", f"/batches/{path_id(batch_id, 'batch_id')}", idempotent=True)


def delete_batch(batch_id: str) -> Request:
    """``DELETE /batches/<batch_id>`` (documented as a second ``GET``): delete the batch's
    records. Its running jobs are NOT cancelled. Not retried once sent."""
    return Request("DELETE", f"/batches/{path_id(batch_id, 'batch_id')}", idempotent=False)


def list_jobs(batch_id: str) -> Request:
    """``GET /batches/<batch_id>/jobs``."""
    return Request("GET", f"/batches/{path_id(batch_id, 'batch_id')}/jobs", idempotent=True)


def get_job(batch_id: str, job_id: str) -> Request:
    """``GET /batches/<batch_id>/jobs/<job_id>``."""
    batch, job = path_id(batch_id, "batch_id"), path_id(job_id, "job_id")
    return Request("GET", f"/batches/{batch}/jobs/{job}", idempotent=True)


def _json_ready(value: Any, what: str) -> Any:
    problem: str | None = None
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        problem = str(exc)
    except RecursionError:
        problem = "nested too deeply (or it contains itself)"
    if problem is not None:
        raise TypeError(f"{what} must be JSON-serialisable: {problem}")
    return value


def create_batch(
    tool_id: str,
    *,
    fixed_args: Mapping[str, Any] | None = None,
    variable_args: Sequence[Mapping[str, Any]] | None = None,
    hardware: Hardware | None = None,
) -> Request:
    """``POST /tools/<tool_id>``: run the tool as a batch.

    Every job gets ``fixed_args``; there is one job per ``variable_args`` entry (its own
    arguments), or a single job if there are none. ``hardware`` defaults to 1 CPU, 256 MB
    and no filesystems. Not idempotent: a repeated call starts a second batch.
    """
    tool = path_id(tool_id, "tool_id")
    fixed: dict[str, Any] = {}
    if fixed_args is not None:
        if not isinstance(fixed_args, Mapping):
            raise TypeError(f"fixed_args must be a mapping, got {type(fixed_args).__name__}")
        fixed = {str(k): v for k, v in fixed_args.items()}
    variable: list[dict[str, Any]] = []
    if variable_args is not None:
        if isinstance(variable_args, (str, bytes, Mapping)):
            raise TypeError("variable_args must be a sequence of mappings (one per job)")
        for i, entry in enumerate(variable_args):
            if not isinstance(entry, Mapping):
                raise TypeError(f"variable_args[{i}] must be a mapping, got {type(entry).__name__}")
            variable.append({str(k): v for k, v in entry.items()})
    hw = hardware if hardware is not None else Hardware()
    if not isinstance(hw, Hardware):
        raise TypeError(f"hardware must be a Hardware, got {type(hw).__name__}")
    body = {
        "fixed_args": _json_ready(fixed, "fixed_args"),
        "variable_args": _json_ready(variable, "variable_args"),
        "hardware": {"cpu": hw.cpu, "memory": hw.memory, "filesystems": list(hw.filesystems)},
    }
    return Request("POST", f"/tools/{tool}", body=body, idempotent=False)


def n_jobs_of(request: Request) -> int:
    """How many jobs a :func:`create_batch` request starts: ``max(1, len(variable_args))``."""
    return max(1, len(request.body["variable_args"]))


# --------------------------------------------------------------------------- responses


def _one(data: Any, what: str) -> Any:
    """An object, or the only element of a list of one (both are seen)."""
    if isinstance(data, list):
        if not data:
            raise NotFoundError(f"{what}: the server answered an empty list", status=200)
        if len(data) > 1:
            raise ProtocolError(f"could not read {what}: $: expected one object, got {len(data)}")
        return data[0]
    return data


def _list(data: Any, what: str) -> list[Any]:
    if not isinstance(data, list):
        kind = "null" if data is None else type(data).__name__
        raise ProtocolError(f"could not read {what}: $: expected an array, got {kind}")
    return data


def parse_batches(data: Any, *, strict: bool = False) -> list[Batch]:
    """``GET /batches`` -> list of :class:`Batch`."""
    batches: list[Batch] = structure(
        converter(strict), _list(data, "batch list"), list[Batch], what="batch list"
    )
    return batches


_COUNT_KEYS = ("submitted", "pending", "runnable", "starting", "running", "succeeded", "failed")


def _lower_keys(counts: Mapping[str, Any], what: str, path: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in counts.items():
        name = str(key).lower()
        if name in out:
            raise ProtocolError(f"could not read {what}: {path}: status {name!r} appears twice")
        out[name] = value
    return out


def _opt_int(value: Any, what: str, path: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError(f"could not read {what}: {path}: expected an integer, got {value!r}")
    return value


def parse_batch_status(
    data: Any, *, batch_id: str | None = None, strict: bool = False
) -> BatchStatus:
    """``GET /batches/<id>`` -> :class:`BatchStatus`.

    Reads the flat counts of the reference (keys in any case), a description holding the
    counts under ``submitted_jobs`` (with ``batch_id`` / ``n_jobs``), or a list of one of
    either. Counts of unknown statuses are kept (:attr:`BatchStatus.other`); in strict mode
    they raise like any unknown key.
    """
    what = "batch status"
    obj = _one(data, what)
    if not isinstance(obj, Mapping):
        kind = "null" if obj is None else type(obj).__name__
        raise ProtocolError(f"could not read {what}: $: expected an object, got {kind}")
    extra: dict[str, Any] = {}
    nested = obj.get("submitted_jobs")
    if isinstance(nested, Mapping):
        counts = _lower_keys(nested, what, "$.submitted_jobs")
        path = "$.submitted_jobs"
        sent_id = obj.get("batch_id")
        if isinstance(sent_id, str) and sent_id:
            extra["batch_id"] = sent_id
        n_jobs = _opt_int(obj.get("n_jobs"), what, "$.n_jobs")
        if n_jobs is not None:
            extra["n_jobs"] = n_jobs
    else:
        counts = _lower_keys(obj, what, "$")
        path = "$"
    if not strict:
        # Unknown statuses are reachable through .other (read from raw), not as fields.
        allowed = {*_COUNT_KEYS, "batch_id", "n_jobs"}
        counts = {k: v for k, v in counts.items() if k in allowed and v is not None}
    status: BatchStatus = structure(converter(strict), counts, BatchStatus, what=what, path=path)
    if batch_id is not None and status.batch_id is None:
        extra["batch_id"] = batch_id
    status = attrs.evolve(status, **extra)
    object.__setattr__(status, "raw", obj)  # the answer as sent, not the lower-cased copy
    return status


def parse_jobs(data: Any, *, strict: bool = False) -> list[BatchJob]:
    """``GET /batches/<id>/jobs`` -> list of :class:`BatchJob`."""
    jobs: list[BatchJob] = structure(
        converter(strict), _list(data, "job list"), list[BatchJob], what="job list"
    )
    return jobs


def parse_job(data: Any, *, strict: bool = False) -> BatchJob:
    """``GET /batches/<id>/jobs/<job_id>`` -> :class:`BatchJob` (a list of one, as the
    reference shows, or a bare object). An empty list raises NotFoundError."""
    obj = _one(data, "job")
    path = "$[0]" if isinstance(data, list) else "$"
    job: BatchJob = structure(converter(strict), obj, BatchJob, what="job", path=path)
    return job


_PLAIN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$")


def parse_created_batch(body: bytes | str, *, tool_id: str, n_jobs: int) -> SubmittedBatch:
    """``POST /tools/<tool_id>``'s answer -> :class:`SubmittedBatch`.

    The batch id comes as plain text, a JSON string, an object with ``batch_id``, or a list
    of one such object; an empty body is a success that names no batch (``batch_id`` None).
    """
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = text.strip()
    if not text:
        return SubmittedBatch(None, tool_id, n_jobs)
    data, problem = read_json(text)
    if problem == NOT_JSON:
        data = text  # plain text: the id itself
    elif problem is not None:
        raise ProtocolError(
            f"could not read the answer to POST /tools/<tool_id>: {problem}",
            status=200,
            body=text,
        )
    if isinstance(data, list) and len(data) == 1:
        data = data[0]
    if isinstance(data, Mapping):
        data = data.get("batch_id")
    if isinstance(data, int) and not isinstance(data, bool):
        data = str(data)
    if isinstance(data, str) and _PLAIN_ID.match(data.strip()):
        return SubmittedBatch(data.strip(), tool_id, n_jobs)
    raise ProtocolError(
        "could not read the new batch's id from the answer to POST /tools/<tool_id>",
        status=200,
        body=text,
    )


def batch_state(status: BatchStatus) -> str:
    """The state a wait decides on: :attr:`BatchStatus.state`."""
    return status.state


def error_parser(
    status: int, body: bytes | str | None, headers: Any = None
) -> tuple[Any, str] | None:
    """For the transport: ``(None, text)`` from ET Engine's plain-text errors.

    ``"Access denied"`` -> ``(None, "Access denied")``. A JSON body's ``message`` (or
    ``error``) is read too, in case the gateway answers in JSON. An HTML page or an empty
    body gives None, so the transport reports the status itself.
    """
    del status, headers
    if not body:
        return None
    text = (body.decode("utf-8", "replace") if isinstance(body, bytes) else body).strip()
    if not text or text.startswith("<"):
        return None
    obj, problem = read_json(text)
    if problem == NOT_JSON:
        return None, " ".join(text.split())[:500]
    if problem is not None:
        return None  # nested too deeply: the transport reports the status with an excerpt
    if isinstance(obj, str) and obj.strip():
        return None, obj.strip()
    if isinstance(obj, Mapping):
        for key in ("message", "Message", "error", "errorMessage"):
            value = obj.get(key)
            if isinstance(value, str) and value.strip():
                return obj.get("code"), value.strip()
    return None
