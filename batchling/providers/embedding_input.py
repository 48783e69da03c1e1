"""The one text an embeddings request embeds, taken from a RawRequest and checked, for every adapter.

An embeddings request is a RawRequest with exactly one user message whose content is text (a
string or text parts): that text is embedded into one vector (`Result.embedding`). Anything
meant for generation (system prompt, more messages, images, sampling settings) is refused
before anything is sent, rather than silently dropped.
"""

from __future__ import annotations

from batchling.errors import InputError
from batchling.models import RawRequest, TextPart
from batchling.structured import ResponseFormat

_ALLOWED_FIELDS = frozenset({"id", "messages"})


def embedding_text(request: RawRequest, *, custom_id: str, endpoint: str) -> str:
    name = f"Request '{request.id or custom_id}'"
    extra = sorted(set(request.model_dump(exclude_none=True)) - _ALLOWED_FIELDS)
    if extra:
        raise InputError(
            f"{name}: {endpoint} embeds one text and takes no generation settings; "
            f"remove {', '.join(extra)}."
        )
    if len(request.messages) != 1 or request.messages[0].role != "user":
        raise InputError(
            f"{name}: {endpoint} embeds one text: give exactly one user message "
            f"(got {len(request.messages)} message(s)); put each text in its own request."
        )
    content = request.messages[0].content
    if not isinstance(content, str) and not all(isinstance(p, TextPart) for p in content):
        raise InputError(f"{name}: {endpoint} embeds text only; remove the non-text parts.")
    text = request.messages[0].text()
    if not text.strip():
        raise InputError(f"{name}: {endpoint} cannot embed an empty text.")
    return text


def refuse_response_format(fmt: ResponseFormat | None, *, endpoint: str) -> None:
    if fmt is not None:
        raise InputError(
            f"A response format (structured output) does not apply to {endpoint}: it answers "
            "vectors or verdicts, not text. Create the experiment without one."
        )
