"""An OpenAI-compatible batch service through `openai.AsyncOpenAI` at the service's base URL: the
OpenAI adapter's files + batches calls, with the profile's lines, models and default URL."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from typing_extensions import Unpack

from batchling.models import RawRequest
from batchling.providers.base import EncodeArgs, LineEncoder, ProviderInfo, bound_encode
from batchling.providers.compatible import INFO, wire
from batchling.providers.compatible.profiles import Profile, profiles
from batchling.providers.openai.adapter import OpenAIProvider
from batchling.structured import ResponseFormat

if TYPE_CHECKING:
    from openai import AsyncOpenAI


class CompatibleProvider(OpenAIProvider):
    info: ClassVar[ProviderInfo] = INFO
    default_base_url: ClassVar[str | None] = None
    """The profile's base URL, used when its base URL variable is not set."""
    models: ClassVar[tuple[str, ...]] = ()

    def _new_client(self) -> AsyncOpenAI:
        from openai import AsyncOpenAI

        options = self.client_options()
        options["base_url"] = options["base_url"] or self.default_base_url
        return AsyncOpenAI(**options)

    def encode(self, request: RawRequest, **line: Unpack[EncodeArgs]) -> dict[str, Any]:
        return wire.encode_line(
            request, **line, provider=self.info.display_name, models=self.models
        )

    def line_encoder(
        self, *, model: str, endpoint: str, response_format: ResponseFormat | None = None
    ) -> LineEncoder:
        return bound_encode(self, model=model, endpoint=endpoint, response_format=response_format)


def for_profile(profile: Profile) -> type[CompatibleProvider]:
    return type(
        f"{profile.name.title().replace('-', '')}Provider",
        (CompatibleProvider,),
        {"info": profile.info, "default_base_url": profile.base_url, "models": profile.models},
    )


def adapter_for(name: str) -> type[CompatibleProvider]:
    """The adapter class of profile `name` (the registry's hook for named profiles)."""
    return for_profile(profiles()[name])


Adapter = CompatibleProvider
"""What the registry instantiates for this folder (the generic provider)."""
