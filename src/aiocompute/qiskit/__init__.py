"""Qiskit Runtime sessions and jobs (IBM Quantum Platform): the async client, its resources
and models."""

from ._auth import DEFAULT_IAM_URL, IAMAuth
from .client import (
    DEFAULT_API_VERSION,
    DEFAULT_URL,
    QISKIT_RETRY,
    QiskitRuntimeClient,
    SessionsResource,
)
from .jobs import DEFAULT_MAX_RESULT_BYTES, JobsResource
from .models import (
    Job,
    JobList,
    JobMetrics,
    JobProgram,
    JobState,
    JobStatus,
    Session,
    SessionMode,
    SessionState,
    StateTimestamp,
)

__all__ = [
    "DEFAULT_API_VERSION",
    "DEFAULT_IAM_URL",
    "DEFAULT_MAX_RESULT_BYTES",
    "DEFAULT_URL",
    "QISKIT_RETRY",
    "IAMAuth",
    "Job",
    "JobList",
    "JobMetrics",
    "JobProgram",
    "JobState",
    "JobStatus",
    "JobsResource",
    "QiskitRuntimeClient",
    "Session",
    "SessionMode",
    "SessionState",
    "SessionsResource",
    "StateTimestamp",
]
