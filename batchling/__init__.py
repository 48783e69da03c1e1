"""batchling: the universal client for GenAI Batch APIs."""

from batchling.compare import Comparison
from batchling.errors import (
    BatchlingError,
    ConfigurationError,
    CostLimitError,
    ExperimentExistsError,
    ExperimentNotFoundError,
    InputError,
    InvalidStateError,
    MissingApiKeyError,
    ProviderError,
    StoreError,
    StudyNotFoundError,
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
from batchling.pricing import ExperimentCost
from batchling.retry import RetryOutcome
from batchling.sync import ExperimentManager

__all__ = [
    "AsyncExperimentManager",
    "BatchRecord",
    "BatchlingError",
    "Comparison",
    "ConfigurationError",
    "CostLimitError",
    "DocumentPart",
    "Experiment",
    "ExperimentCost",
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
    "RetryOutcome",
    "Status",
    "StoreError",
    "StudyNotFoundError",
    "TextPart",
    "Usage",
]
