"""A provider's data (settings, limits, statuses, prices: its folder's `provider.toml`), read
without importing the models or an SDK: `batchling list` prices experiments from it."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources

from batchling.quotas import QuotaLimits, parse_limits
from batchling.status import Status


@dataclass(frozen=True)
class BatchLimits:
    max_requests: int
    max_bytes: int
    custom_id_pattern: str | None = None


@dataclass(frozen=True)
class ProviderInfo:
    """What the core and the CLI need to know about a provider, as data."""

    name: str
    display_name: str
    api_key_env: tuple[str, ...]
    base_url_env: tuple[str, ...]
    endpoints: frozenset[str]
    default_endpoint: str
    limits: BatchLimits
    discount: float = 0.5
    sdk: str = ""
    # Embeddings endpoint -> the embedding options (`dimensions`, `task_type`) it takes.
    embedding_options: Mapping[str, frozenset[str]] = field(default_factory=dict)
    inline_requests: bool = False
    """True where requests go in the create call itself (no input file is uploaded)."""
    result_id_field: str = "custom_id"
    """The field of a result line that names its request."""
    status_map: Mapping[str, Status] = field(default_factory=dict)
    """The provider's batch statuses -> the common vocabulary."""
    demo_model: str = ""
    """The model `batchling demo` and the tests run on the emulator."""
    doctor_model: str = ""
    """The cheapest current chat model, for `batchling doctor`'s live check."""
    id_forms: Mapping[str, str] = field(default_factory=dict)
    """'file' / 'batch' -> the regular expression the provider's documented ids match."""
    batch_prices: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    """model -> (input, output) USD per 1M tokens at batch prices (see batchling.price_table)."""
    long_context_prices: Mapping[str, tuple[int, float, float]] = field(default_factory=dict)
    """model -> (input tokens above which the tier applies, input, output) at batch prices."""
    quotas: Mapping[str, QuotaLimits] = field(default_factory=dict)
    """model (or quotas.ALL) -> the documented limits on what may wait at the provider at once."""
    batch_metadata: bool = True
    """False where a batch keeps nothing the caller chose (no metadata): creations of that
    provider's batches then take turns across processes (see Repository.enter_creation)."""
    media: frozenset[str] = frozenset()
    """The media parts a batch line takes: image_url, image_data, document_url, document_data
    (an image or a document by URL, or inline from a file or data)."""

    def map_status(self, raw: str) -> Status:
        return self.status_map.get(raw, Status.UNKNOWN)


def load_info(package: str) -> ProviderInfo:
    """The `provider.toml` beside a provider folder's `__init__.py` (package `package`), as
    ProviderInfo: a provider's settings, limits, statuses and prices are data, not code."""
    text = resources.files(package).joinpath("provider.toml").read_text(encoding="utf-8")
    data = tomllib.loads(text)
    return ProviderInfo(
        name=data["name"],
        display_name=data["display_name"],
        api_key_env=tuple(data["api_key_env"]),
        base_url_env=tuple(data["base_url_env"]),
        endpoints=frozenset(data["endpoints"]),
        default_endpoint=data["default_endpoint"],
        limits=BatchLimits(**data["limits"]),
        discount=float(data.get("discount", 0.5)),
        sdk=data.get("sdk", ""),
        embedding_options={
            endpoint: frozenset(options)
            for endpoint, options in data.get("embedding_options", {}).items()
        },
        inline_requests=bool(data.get("inline_requests", False)),
        result_id_field=data.get("result_id_field", "custom_id"),
        status_map={raw: Status(common) for raw, common in data["statuses"].items()},
        demo_model=data.get("demo_model", ""),
        doctor_model=data.get("doctor_model", ""),
        id_forms=dict(data.get("id_forms", {})),
        batch_prices={
            model: (float(given), float(got))
            for model, (given, got) in data.get("batch_prices", {}).items()
        },
        long_context_prices={
            model: (int(threshold), float(given), float(got))
            for model, (threshold, given, got) in data.get("long_context_prices", {}).items()
        },
        quotas=parse_limits(data.get("quotas", {})),
        batch_metadata=bool(data.get("batch_metadata", True)),
        media=frozenset(data.get("media", ())),
    )
