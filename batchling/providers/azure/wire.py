"""Azure OpenAI's batch lines, pure: OpenAI's chat line with Azure's `url` (no /v1) and the
deployment name as `model` (PROTOCOL.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from typing_extensions import Unpack

from batchling.models import RawRequest
from batchling.providers.wire import openai_format

if TYPE_CHECKING:
    from batchling.providers.base import EncodeArgs

CHAT = "/chat/completions"
# The o-series deployments refuse `max_tokens`; `max_completion_tokens` is in 2024-10-21 and later.
MAX_TOKENS_FIELD = "max_completion_tokens"
# Global Batch takes images (URL or base64) in chat lines, no other media (how-to "FAQ").
AZURE = openai_format.ChatOnlyService(
    "Azure OpenAI",
    openai_format.images_only_part("Azure OpenAI"),
    chat_endpoint=CHAT,
    max_tokens_field=MAX_TOKENS_FIELD,
)


def encode_line(request: RawRequest, **line: Unpack[EncodeArgs]) -> dict[str, Any]:
    return openai_format.chat_only_line(request, AZURE, **line)
