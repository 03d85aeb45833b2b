"""The emulated Workbench API's declarations and request conventions (see
:mod:`aiocompute.emulator.workbench`): the method table, application errors, callers'
identities, the time formats, ``kwparams`` and ``--emu-*`` parsing, the answers' envelopes
and the ``get_compute_envs`` listing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import attrs
from aiohttp import web

#: API name, the first part of every stats / fault key (``"workbench.get_session"``).
API = "workbench"
#: Where the API is mounted on the emulator.
PREFIX = "/workbench"
#: The API's base URL under the prefix (a Workbench server's address: methods are below it).
API_ROOT = ""
#: Every method of the reference.
METHODS = (
    "launch_session",
    "launch_job",
    "launch_audited_job",
    "get_session",
    "get_historical_session",
    "resume_session",
    "get_compute_envs",
    "get_job_output",
    "get_audited_job_output",
    "get_audited_job_details",
    "stop_session",
    "stop_job",
    "stop_audited_job",
    "version",
    "get_users",
)
#: Methods that also answer GET (they have no required parameter).
GET_METHODS = frozenset({"version", "get_users", "get_compute_envs"})
#: IDE names launch_session accepts.
WORKBENCHES = ("RStudio", "Positron", "JupyterLab", "Jupyter Notebook", "VS Code")

_ADMIN_ROLES = frozenset({"admin", "super-admin"})
_CLUSTERS = ("Local", "Kubernetes")
_PROFILES: Mapping[str, tuple[str, ...]] = {
    "Local": ("custom", "default"),
    "Kubernetes": ("custom", "default", "small", "medium", "large"),
}
_K8S_IMAGES = ("posit/r-base:4.3-jammy", "posit/workbench-session:2024.12.1-ubuntu2204")
_R_IDES = frozenset({"RStudio"})


class RpcError(Exception):
    """An application error, answered as HTTP 200 ``{"error": {"code", "message"}}``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _denied() -> RpcError:
    return RpcError(401, "Permission denied")


@attrs.frozen
class Identity:
    """Who is calling: the token's (or RPC cookie's) user and role."""

    username: str
    role: str
    via_cookie: bool = False

    @property
    def is_admin(self) -> bool:
        """Admin or super-admin: may read and stop other users' sessions and jobs."""
        return self.role in _ADMIN_ROLES


# -- time formatting -----------------------------------------------------------------------


def _utc(wall: float) -> datetime:
    return datetime.fromtimestamp(wall, tz=timezone.utc)


def _iso_z(wall: float) -> str:
    """Launcher job style: ``2024-10-01T20:49:32.294130Z``."""
    return _utc(wall).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _iso_naive(wall: float) -> str:
    """Historical session style: ``2025-07-26T05:30:21.424300`` (no zone)."""
    return _utc(wall).strftime("%Y-%m-%dT%H:%M:%S.%f")


def _iso_seconds(wall: float) -> str:
    """Historical ``last_used`` style: ``2025-07-26T05:42:56``."""
    return _utc(wall).strftime("%Y-%m-%dT%H:%M:%S")


def _ms(wall: float) -> int:
    return int(wall * 1000)


def _parse_iso(name: str, value: Any) -> float | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise RpcError(400, f"{name} must be an ISO-8601 date-time string")
    text = value.strip()
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise RpcError(400, f"{name} is not an ISO-8601 date-time: {value!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


# -- request parameters and answers ---------------------------------------------------


def _emu_options(args: list[str]) -> dict[str, float | int | bool]:
    """Parse the ``--emu-*`` job args (see module docs)."""
    ints = {"chunks", "bytes", "stderr-every", "exit"}
    floats = {"interval", "duration", "pending"}
    flags = {"fail", "split-lines"}
    out: dict[str, float | int | bool] = {}
    for arg in args:
        if not arg.startswith("--emu-"):
            continue
        name, has_value, value = arg[len("--emu-") :].partition("=")
        if name in flags:
            if has_value:
                raise RpcError(400, f"emulator option {arg!r} takes no value")
            out[name] = True
            continue
        if name not in ints and name not in floats:
            raise RpcError(400, f"unknown emulator option {arg!r} in job args")
        try:
            number: float = int(value) if name in ints else float(value)
        except ValueError:
            kind = "an integer" if name in ints else "a number"
            raise RpcError(400, f"emulator option {arg!r} needs {kind} value") from None
        if not math.isfinite(number) or (name != "exit" and number < 0):
            raise RpcError(400, f"emulator option {arg!r} must be >= 0")
        out[name] = number
    return out


def _first(mapping: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        if name in mapping and mapping[name] is not None:
            return mapping[name]
    return None


def _opt_str(kw: Mapping[str, Any], name: str) -> str | None:
    value = kw.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise RpcError(400, f"parameter {name!r} must be a string")
    return value


def _req_str(kw: Mapping[str, Any], name: str) -> str:
    value = _opt_str(kw, name)
    if value is None:
        raise RpcError(400, f"parameter {name!r} is required")
    return value


def _opt_bool(kw: Mapping[str, Any], name: str, default: bool = False) -> bool:
    value = kw.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise RpcError(400, f"parameter {name!r} must be a boolean")
    return value


def _opt_list(kw: Mapping[str, Any], name: str, where: str = "") -> list[Any]:
    value = kw.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise RpcError(400, f"parameter {where}{name!r} must be an array")
    return value


def _id_list(value: Any, name: str) -> list[str] | None:
    """A comma-separated id string (or, leniently, a list of ids); None when absent."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        items = value
    else:
        raise RpcError(400, f"parameter {name!r} must be a comma-separated string of ids")
    return list(dict.fromkeys(item.strip() for item in items if item.strip()))


def _unauthorized() -> web.Response:
    return web.Response(
        status=401,
        text="<html><head><title>401 Unauthorized</title></head>"
        "<body><h1>401 Unauthorized</h1></body></html>",
        content_type="text/html",
    )


def _ok(result: Any) -> web.Response:
    return web.json_response({"result": result})


def _role_rank(role: str) -> int:
    return ("user", "admin", "super-admin").index(role)


def _compute_envs() -> dict[str, Any]:
    ides = {
        name: {"supports_interactive_sessions": True, "supports_adhoc_jobs": True}
        for name in ("RStudio", "Positron", "JupyterLab", "Jupyter Notebook", "VS Code")
    }
    local = {
        "supportsContainers": False,
        "queues": [],
        "config": [],
        "resourceLimits": [],
        "placementConstraints": [],
        "resourceProfiles": [],
        "name": "Local",
        "type": "Local",
        "workbenches": ides,
        "images": [],
    }
    kubernetes = {
        "supportsContainers": True,
        "queues": [],
        "config": [{"name": "cpu-request-ratio", "value": "1.0", "valueType": "float"}],
        "resourceLimits": [
            {"type": "cpuCount", "value": "1", "max_value": "8", "default_value": "1"},
            {"type": "memory", "value": "2048", "max_value": "16384", "default_value": "2048"},
        ],
        "placementConstraints": [],
        "resourceProfiles": [
            {"name": "small", "displayName": "Small (1 CPU, 2 GB)", "cpus": 1, "memoryMb": 2048},
            {"name": "medium", "displayName": "Medium (2 CPU, 8 GB)", "cpus": 2, "memoryMb": 8192},
            {"name": "large", "displayName": "Large (4 CPU, 16 GB)", "cpus": 4, "memoryMb": 16384},
        ],
        "name": "Kubernetes",
        "type": "Kubernetes",
        "workbenches": ides,
        "images": list(_K8S_IMAGES),
    }
    lang = {
        "RStudio": ("R", True),
        "Positron": ("Positron", True),
        "JupyterLab": ("Jupyter", True),
        "Jupyter Notebook": ("Jupyter", True),
        "VS Code": ("code-server", True),
    }
    return {
        "clusters": [local, kubernetes],
        "workbenches": {
            name: {
                "default_cluster": "Local",
                "default_image": "",
                "lang": {"name": lang_name, "available": available},
            }
            for name, (lang_name, available) in lang.items()
        },
    }
