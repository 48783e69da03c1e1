"""batchling: the universal client for GenAI Batch APIs."""

from batchling.errors import (
    BatchlingError,
    ConfigurationError,
    ExperimentExistsError,
    ExperimentNotFoundError,
    InputError,
    InvalidStateError,
    MissingApiKeyError,
    ProviderError,
    StoreError,
)
from batchling.manager import AsyncExperimentManager
from batchling.models import (
    BatchRecord,
    Experiment,
    ImagePart,
    RawMessage,
    RawRequest,
    Result,
    ResultError,
    Status,
    TextPart,
    Usage,
)
from batchling.retry import RetryOutcome
from batchling.sync import ExperimentManager

__all__ = [
    "AsyncExperimentManager",
    "BatchRecord",
    "BatchlingError",
    "ConfigurationError",
    "Experiment",
    "ExperimentExistsError",
    "ExperimentManager",
    "ExperimentNotFoundError",
    "ImagePart",
    "InputError",
    "InvalidStateError",
    "MissingApiKeyError",
    "ProviderError",
    "RawMessage",
    "RawRequest",
    "Result",
    "ResultError",
    "RetryOutcome",
    "Status",
    "StoreError",
    "TextPart",
    "Usage",
]
