"""The texts that embeddings and moderations requests carry, taken from a RawRequest and checked.

An embeddings request is a RawRequest with exactly one user message whose content is text (a
string or text parts): that text is embedded into one vector (`Result.embedding`). A moderations
request classifies the text of each of its user messages. Anything meant for generation (system
prompt, assistant turns, images, sampling settings) is refused before anything is sent, rather
than silently dropped. The embedding options (`dimensions`, `task_type`) go only where the
provider's `ProviderInfo.embedding_options` says its endpoint takes them.
"""

from __future__ import annotations

from batchling.errors import InputError
from batchling.models import RawRequest, TextPart
from batchling.providers.base import ProviderInfo
from batchling.structured import ResponseFormat

_ALLOWED_FIELDS = frozenset({"id", "messages"})
EMBEDDING_OPTIONS = ("dimensions", "task_type")


def check_embedding_options(
    request: RawRequest, *, info: ProviderInfo, endpoint: str, custom_id: str
) -> None:
    """Refuse `dimensions` or `task_type` where the endpoint would silently drop them."""
    if request.dimensions is None and request.task_type is None:
        return  # the common case, checked once per request
    accepted = info.embedding_options.get(endpoint, frozenset())
    given = [f for f in EMBEDDING_OPTIONS if getattr(request, f) is not None and f not in accepted]
    if not given:
        return
    name = f"Request '{request.id or custom_id}'"
    options = " and ".join(given)
    if endpoint in info.embedding_options:
        takes = ", ".join(sorted(accepted)) or "no embedding options"
        raise InputError(
            f"{name}: {info.display_name} {endpoint} takes no {options} (it takes: {takes}); "
            "remove it."
        )
    embedders = ", ".join(sorted(info.embedding_options)) or "none"
    raise InputError(
        f"{name}: {options} appl{'y' if len(given) > 1 else 'ies'} to embeddings only "
        f"({info.display_name}: {embedders}), not to {endpoint}; remove it."
    )


def embedding_text(
    request: RawRequest,
    *,
    custom_id: str,
    endpoint: str,
    accepts: frozenset[str] = frozenset(),
) -> str:
    """The one text to embed; `accepts` names the embedding options the endpoint takes."""
    name = f"Request '{request.id or custom_id}'"
    given = set(request.model_dump(exclude_none=True))
    refused = sorted((given & set(EMBEDDING_OPTIONS)) - accepts)
    if refused:
        raise InputError(f"{name}: {endpoint} takes no {' or '.join(refused)}; remove it.")
    extra = sorted(given - _ALLOWED_FIELDS - set(EMBEDDING_OPTIONS))
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


def moderation_texts(request: RawRequest, *, custom_id: str, endpoint: str) -> list[str]:
    """The texts a moderations request classifies: one per user message, text only."""
    name = f"Request '{request.id or custom_id}'"
    extra = sorted(set(request.model_dump(exclude_none=True)) - _ALLOWED_FIELDS)
    if extra:
        raise InputError(f"{name}: {endpoint} classifies text only; remove {', '.join(extra)}.")
    texts = []
    for message in request.messages:
        if message.role != "user":
            raise InputError(
                f"{name}: {endpoint} takes only user text, not a '{message.role}' message."
            )
        if not isinstance(message.content, str) and not all(
            isinstance(part, TextPart) for part in message.content
        ):
            raise InputError(f"{name}: {endpoint} takes text only; remove the non-text parts.")
        texts.append(message.text())
    return texts


def refuse_response_format(fmt: ResponseFormat | None, *, endpoint: str) -> None:
    if fmt is not None:
        raise InputError(
            f"A response format (structured output) does not apply to {endpoint}: it answers "
            "vectors or verdicts, not text. Create the experiment without one."
        )
