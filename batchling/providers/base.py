"""The one interface every provider adapter implements, and the data it exchanges with the core."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypedDict, TypeVar, cast

from typing_extensions import NotRequired, Unpack

from batchling.models import RawRequest, RequestCounts, Result, Status
from batchling.providers import client_settings

# Re-exported: a provider's data is read without importing the models (providers/info.py).
from batchling.providers.info import BatchLimits as BatchLimits
from batchling.providers.info import ProviderInfo as ProviderInfo
from batchling.providers.info import load_info as load_info
from batchling.records import ResultRecord, record_of
from batchling.structured import ResponseFormat


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


class Encodes(Protocol):
    def encode(self, request: RawRequest, **line: Unpack[EncodeArgs]) -> dict[str, Any]: ...


def bound_encode(
    provider: Encodes, *, model: str, endpoint: str, response_format: ResponseFormat | None
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


def remote_file_ids(ref: BatchRef, snapshot: BatchSnapshot | None) -> list[str]:
    """The files a batch left at a provider that stores them: its input, output and errors."""
    file_ids = [ref.input_file_id]
    if snapshot is not None:
        file_ids += [snapshot.output_file_id, snapshot.error_file_id]
    return [file_id for file_id in file_ids if file_id]


class EncodeArgs(TypedDict):
    """What `encode` is told about the line to make (keywords, see Provider.encode)."""

    custom_id: str
    model: str
    endpoint: str
    response_format: NotRequired[ResponseFormat | None]


class NewBatch(TypedDict):
    """What `create` is told about the batch to make (keywords, see Provider.create)."""

    file_id: str | None
    model: str
    endpoint: str
    metadata: dict[str, str]


class Provider(Protocol):
    info: ClassVar[ProviderInfo]

    def encode(self, request: RawRequest, **line: Unpack[EncodeArgs]) -> dict[str, Any]:
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

    def decode_record(self, line: dict[str, Any], text: str | None = None) -> ResultRecord:
        """`record_of(decode(line))`, what the manager stores: an adapter may build the common
        lines' records directly, which is the download's hot path, and store `text` (the line
        as it came) as their `raw` instead of serialising `line` again."""
        ...

    async def upload(self, chunk: Path, *, name: str | None = None) -> str | None:
        """Upload one input file (named `name` at the provider where it takes a name); returns
        its file id, or None where requests go inline."""
        ...

    async def find_file(self, name: str, size: int, created_after: datetime) -> str | None:
        """The id of an input file uploaded as `name` with `size` bytes since `created_after`,
        where the provider can list files: an upload whose answer was never read."""
        ...

    def warm(self) -> None:
        """Import the SDK and build its client now: a start does it before claiming the
        experiment, so the import cannot stall the claim's renewals."""
        ...

    async def create(self, chunk: Path, **new: Unpack[NewBatch]) -> str:
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


class ProviderBase:
    """The defaults most adapters share: requests encoded one at a time, records built from the
    decoded Result, no lookup of input files. An adapter overrides what its provider does
    better (a faster line encoder, a direct record, a file search)."""

    info: ClassVar[ProviderInfo]

    def __init__(self, *, api_key: str, base_url: str | None = None) -> None:
        self._api_key = api_key
        self._base_url = base_url

    def decode(self, line: dict[str, Any]) -> Result:
        raise NotImplementedError

    def line_encoder(
        self, *, model: str, endpoint: str, response_format: ResponseFormat | None = None
    ) -> LineEncoder:
        encoder = cast(Encodes, self)  # every adapter defines encode
        return bound_encode(
            encoder, model=model, endpoint=endpoint, response_format=response_format
        )

    def decode_record(self, line: dict[str, Any], text: str | None = None) -> ResultRecord:
        return record_of(self.decode(line))

    async def find_file(self, name: str, size: int, created_after: datetime) -> str | None:
        return None

    def warm(self) -> None:
        """Import the SDK and build its client now rather than at the first call (adapters
        with an SDK client override it)."""


class AsyncClosable(Protocol):
    async def close(self) -> None: ...


ClientT = TypeVar("ClientT", bound=AsyncClosable)


class SdkClientProvider(ProviderBase, Generic[ClientT]):
    """An adapter over an SDK client built at first use (so that a pure encode needs no SDK)
    with batchling's timeout and retry settings, and closed by `aclose`."""

    def __init__(self, *, api_key: str, base_url: str | None = None) -> None:
        super().__init__(api_key=api_key, base_url=base_url)
        self._client: ClientT | None = None

    @property
    def client(self) -> ClientT:
        if self._client is None:
            self._client = self._new_client()
        return self._client

    def warm(self) -> None:
        self.client  # noqa: B018 -- built for its side effect

    def _new_client(self) -> ClientT:
        """The SDK's client, its module imported here: `client_options()` is what it takes."""
        raise NotImplementedError

    def client_options(self) -> dict[str, Any]:
        """The keyword arguments a Stainless-generated SDK client (openai, anthropic, groq,
        together) takes for the key, the base URL and batchling's timeout and retries."""
        return {
            "api_key": self._api_key,
            "base_url": self._base_url,
            "max_retries": client_settings.max_retries(),
            "timeout": client_settings.timeout_seconds(),
        }

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()
