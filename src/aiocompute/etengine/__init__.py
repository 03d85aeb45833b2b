"""ET Engine batches: the async client, its resources and models."""

from .client import DEFAULT_URL, BatchesResource, ETEngineClient, JobsResource
from .models import (
    Batch,
    BatchHardware,
    BatchJob,
    BatchStatus,
    Filesystem,
    Hardware,
    JobArgument,
    JobHardware,
    JobStatus,
    SubmittedBatch,
    Tool,
)

__all__ = [
    "DEFAULT_URL",
    "Batch",
    "BatchHardware",
    "BatchJob",
    "BatchStatus",
    "BatchesResource",
    "ETEngineClient",
    "Filesystem",
    "Hardware",
    "JobArgument",
    "JobHardware",
    "JobStatus",
    "JobsResource",
    "SubmittedBatch",
    "Tool",
]
