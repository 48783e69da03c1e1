"""The one interface every provider adapter implements, and the data it exchanges with the core."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Protocol

from batchling.models import RawRequest, RequestCounts, Result, Status
from batchling.records import ResultRecord
from batchling.structured import ResponseFormat

UUID_FORM = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
"""An id of the uuid format (Mistral's and Together's specs)."""


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
    result_id_field: str = "custom_id"
    """The field of a result line that names its request."""
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


@dataclass(frozen=True)
class BatchRef:
    """What identifies one submitted batch at the provider."""

    batch_id: str
    input_file_id: str | None = None


@dataclass(frozen=True)
class CreateHint:
    """What the core knows of a batch creation that may have happened: for providers whose
    batches carry no metadata, the only ways to recognise it again."""

    input_file_id: str | None = None
    request_count: int | None = None
    created_after: datetime | None = None
    """When the creation was recorded as started, less a margin for clock differences."""
    exclude: frozenset[str] = frozenset()
    """Batch ids already recorded for other chunks: never this one."""


@dataclass
class BatchSnapshot:
    """One poll's answer, already mapped onto the common vocabulary."""

    status: Status
    provider_status: str
    counts: RequestCounts = field(default_factory=RequestCounts)
    output_file_id: str | None = None
    error_file_id: str | None = None
    errors: list[str] = field(default_factory=list)


LineEncoder = Callable[[RawRequest, str], dict[str, Any]]
"""(request, custom_id) -> one line of the provider's batch input."""


def bound_encode(
    provider: Provider, *, model: str, endpoint: str, response_format: ResponseFormat | None
) -> LineEncoder:
    """The plain `line_encoder`: each request through `provider.encode`."""

    def encode_line(request: RawRequest, custom_id: str) -> dict[str, Any]:
        return provider.encode(
            request,
            custom_id=custom_id,
            model=model,
            endpoint=endpoint,
            response_format=response_format,
        )

    return encode_line


class Provider(Protocol):
    info: ClassVar[ProviderInfo]

    def encode(
        self,
        request: RawRequest,
        *,
        custom_id: str,
        model: str,
        endpoint: str,
        response_format: ResponseFormat | None = None,
    ) -> dict[str, Any]:
        """Pure: one RawRequest to one line of the provider's batch input (with the provider's
        structured-output field when a response format is given)."""
        ...

    def line_encoder(
        self, *, model: str, endpoint: str, response_format: ResponseFormat | None = None
    ) -> LineEncoder:
        """`encode` with one experiment's model, endpoint and response format bound: what the
        manager calls once per request. Lines it returns may share parts that are the same for
        every request (the response format): serialise them, don't modify them."""
        ...

    def decode(self, line: dict[str, Any]) -> Result:
        """Pure: one line of the provider's output (or error) file to a Result."""
        ...

    def decode_record(self, line: dict[str, Any]) -> ResultRecord:
        """`record_of(decode(line))`, what the manager stores: an adapter may build the common
        lines' records directly, which is the download's hot path."""
        ...

    async def upload(self, chunk: Path, *, name: str | None = None) -> str | None:
        """Upload one input file (named `name` at the provider where it takes a name); returns
        its file id, or None where requests go inline."""
        ...

    async def find_file(self, name: str, size: int, created_after: datetime) -> str | None:
        """The id of an input file uploaded as `name` with `size` bytes since `created_after`,
        where the provider can list files: an upload whose answer was never read."""
        ...

    async def create(
        self,
        chunk: Path,
        *,
        file_id: str | None,
        model: str,
        endpoint: str,
        metadata: dict[str, str],
    ) -> str:
        """Create the batch; returns its id."""
        ...

    async def find_batch(
        self, metadata: dict[str, str], hint: CreateHint | None = None
    ) -> str | None:
        """The id of a batch created with this metadata (or, where batches carry none, matching
        the hint), if the provider can tell. Raises AmbiguousBatchError when several could be."""
        ...

    async def poll(self, ref: BatchRef) -> BatchSnapshot: ...

    def results(self, ref: BatchRef, snapshot: BatchSnapshot) -> AsyncIterator[bytes | str]:
        """Stream the output and error lines of a finished batch as they came, undecoded: the
        manager decodes them (batchling.provider_output), since they are untrusted input."""
        ...

    async def cancel(self, ref: BatchRef) -> None: ...

    async def delete_remote(self, ref: BatchRef, snapshot: BatchSnapshot | None) -> None:
        """Delete what the batch left at the provider (files), where the provider allows it."""
        ...

    async def aclose(self) -> None: ...
