"""The chat line of an OpenAI-compatible batch service, pure: OpenAI's, with `max_tokens` (the
field every compatible service documents) and images as the only media."""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from typing_extensions import Unpack

from batchling.errors import InputError
from batchling.models import RawRequest
from batchling.providers.wire import openai_format

if TYPE_CHECKING:
    from batchling.providers.base import EncodeArgs

CHAT = "/v1/chat/completions"
COMPATIBLE_PART = openai_format.images_only_part("the OpenAI-compatible service")


def check_batch_model(model: str, *, provider: str, models: Collection[str] = ()) -> None:
    """Refuse a model outside the profile's batch-eligible list (none: any model goes)."""
    if models and model not in models:
        raise InputError(
            f"Model '{model}' is not batch-eligible on {provider}; its profile lists: "
            f"{', '.join(sorted(models))}."
        )


def encode_line(
    request: RawRequest, *, provider: str, models: Collection[str] = (), **line: Unpack[EncodeArgs]
) -> dict[str, Any]:
    check_batch_model(line["model"], provider=provider, models=models)
    service = openai_format.ChatOnlyService(provider, COMPATIBLE_PART)
    return openai_format.chat_only_line(request, service, **line)
