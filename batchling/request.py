"""The request models under the module path batchling 0.0.x had (`from batchling.request import
RawRequest, RawMessage`); new code imports them from `batchling`."""

from __future__ import annotations

from batchling.models import (
    DocumentPart,
    GenerationParams,
    ImagePart,
    RawMessage,
    RawRequest,
    TextPart,
)

__all__ = ["DocumentPart", "GenerationParams", "ImagePart", "RawMessage", "RawRequest", "TextPart"]
