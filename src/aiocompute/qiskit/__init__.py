"""Qiskit Runtime sessions (IBM Quantum Platform): the async client, its resource and models."""

from ._auth import DEFAULT_IAM_URL, IAMAuth
from .client import (
    DEFAULT_API_VERSION,
    DEFAULT_URL,
    QISKIT_RETRY,
    QiskitRuntimeClient,
    SessionsResource,
)
from .models import Session, SessionMode, SessionState, StateTimestamp

__all__ = [
    "DEFAULT_API_VERSION",
    "DEFAULT_IAM_URL",
    "DEFAULT_URL",
    "QISKIT_RETRY",
    "IAMAuth",
    "QiskitRuntimeClient",
    "Session",
    "SessionMode",
    "SessionState",
    "SessionsResource",
    "StateTimestamp",
]
