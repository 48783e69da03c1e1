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
    DocumentPart,
    Experiment,
    GenerationParams,
    ImagePart,
    RawMessage,
    RawRequest,
    Result,
    ResultError,
    Status,
    TextPart,
    Usage,
)
from batchling.sync import ExperimentManager

__all__ = [
    "AsyncExperimentManager",
    "BatchRecord",
    "BatchlingError",
    "ConfigurationError",
    "DocumentPart",
    "Experiment",
    "ExperimentExistsError",
    "ExperimentManager",
    "ExperimentNotFoundError",
    "GenerationParams",
    "ImagePart",
    "InputError",
    "InvalidStateError",
    "MissingApiKeyError",
    "ProviderError",
    "RawMessage",
    "RawRequest",
    "Result",
    "ResultError",
    "Status",
    "StoreError",
    "TextPart",
    "Usage",
]
