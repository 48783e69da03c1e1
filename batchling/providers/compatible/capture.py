"""Capture rules: the openai SDK's chat calls to an OpenAI-compatible batch service. The SDK
sends the same User-Agent to every base URL, so the service is told by its base URL (host and
path prefix): a named profile's (built-in or the user's; its base URL variable wins, as in the
adapter) or the generic provider's (OPENAI_COMPATIBLE_BASE_URL). Chat only: provider.toml's
endpoints, the one every compatible service documents (PROTOCOL.md)."""

from __future__ import annotations

from batchling.errors import InputError
from batchling.providers.capture_rules import CaptureRules, suffix_route
from batchling.providers.compatible.profiles import profiles, service_at
from batchling.providers.compatible.wire import check_batch_model
from batchling.providers.openai_compatible import capture


def refusal(provider: str, model: str) -> str | None:
    """A profile listing its batch-eligible models has the service refuse any other in a batch
    (e.g. dashscope's "Supported models", https://www.alibabacloud.com/help/en/model-studio/
    batch-interfaces-compatible-with-openai): the experiment path's own check, at the call."""
    profile = profiles().get(provider)
    if profile is None:
        return None
    try:
        check_batch_model(model, provider=profile.display_name or provider, models=profile.models)
    except InputError as error:
        return str(error)
    return None


RULES = CaptureRules(
    hosts=(),
    user_agent=None,
    provider_at=service_at,
    route=suffix_route({"/chat/completions": "/v1/chat/completions"}),
    batch_line=capture.request_line,
    answer=capture.answer,
    refusal=refusal,
)
