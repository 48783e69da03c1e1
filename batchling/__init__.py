"""batchling: the universal client for GenAI Batch APIs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from batchling.capturing import capture
    from batchling.compare import Comparison
    from batchling.errors import (
        BatchlingError,
        ConfigurationError,
        CostLimitError,
        DryRun,
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

# Names resolved on first use: `batchling --help` and `import batchling.cli` need none of them.
_EXPORTS: dict[str, str] = {
    "AsyncExperimentManager": "batchling.manager",
    "BatchRecord": "batchling.models",
    "BatchlingError": "batchling.errors",
    "Comparison": "batchling.compare",
    "DryRun": "batchling.errors",
    "capture": "batchling.capturing",
    "ConfigurationError": "batchling.errors",
    "CostLimitError": "batchling.errors",
    "DocumentPart": "batchling.models",
    "Experiment": "batchling.models",
    "ExperimentCost": "batchling.pricing",
    "ExperimentExistsError": "batchling.errors",
    "ExperimentManager": "batchling.sync",
    "ExperimentNotFoundError": "batchling.errors",
    "GenerationParams": "batchling.models",
    "ImagePart": "batchling.models",
    "InputError": "batchling.errors",
    "InvalidStateError": "batchling.errors",
    "MissingApiKeyError": "batchling.errors",
    "ProviderError": "batchling.errors",
    "RawMessage": "batchling.models",
    "RawRequest": "batchling.models",
    "Result": "batchling.models",
    "ResultError": "batchling.models",
    "RetryOutcome": "batchling.retry",
    "Status": "batchling.models",
    "StoreError": "batchling.errors",
    "StudyNotFoundError": "batchling.errors",
    "TextPart": "batchling.models",
    "Usage": "batchling.models",
}

__all__ = [
    "AsyncExperimentManager",
    "BatchRecord",
    "BatchlingError",
    "Comparison",
    "ConfigurationError",
    "CostLimitError",
    "DocumentPart",
    "DryRun",
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
    "capture",
]


if not TYPE_CHECKING:
    # Only at run time: type checkers see the imports above, and a misspelt name stays an error.

    def __getattr__(name: str) -> Any:
        module = _EXPORTS.get(name)
        if module is None:
            raise AttributeError(f"module 'batchling' has no attribute {name!r}")
        import importlib

        value = getattr(importlib.import_module(module), name)
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted([*globals(), *__all__])
