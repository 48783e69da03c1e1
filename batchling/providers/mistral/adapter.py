"""Mistral Batch API adapter (files + batch jobs), through the async methods of `mistralai`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from typing_extensions import Unpack

from batchling.errors import ConfigurationError, InputError
from batchling.models import (
    RawRequest,
    RequestCounts,
    Result,
)
from batchling.provider_output import nonblank_lines
from batchling.providers import client_settings
from batchling.providers.base import (
    BatchRef,
    BatchSnapshot,
    CreateHint,
    EncodeArgs,
    NewBatch,
    ProviderBase,
    ProviderInfo,
    remote_file_ids,
)
from batchling.providers.mistral import INFO
from batchling.providers.mistral.wire import (
    CHAT,
    decode_line,
    encode_body,
)
from batchling.providers.wire import openai_format
from batchling.providers.wire.text_input import refuse_response_format

if TYPE_CHECKING:
    import httpx2
    from mistralai.client import Mistral
    from mistralai.client.utils import RetryConfig


# The SDK retries nothing by default; this mirrors the Stainless SDKs' schedule. Retries stop
# after BACKOFF_MAX_ELAPSED_MS rather than after a count (the SDK has no count).
BACKOFF_INITIAL_MS = 500


BACKOFF_MAX_MS = 8_000


BACKOFF_EXPONENT = 2.0


BACKOFF_MAX_ELAPSED_MS = 60_000


# The SDK's default jitter adds up to a whole second to every wait.
BACKOFF_JITTER_MS = 250


JOB_TIMEOUT_HOURS = 24


# CreateBatchJobRequest (https://docs.mistral.ai/api/, shared/specs/mistral.yaml): timeout_hours
# from 1 to 168; metadata keys of 1 to 32 characters, values of 1 to 512.
MIN_TIMEOUT_HOURS = 1


MAX_TIMEOUT_HOURS = 168


MAX_METADATA_KEY_CHARS = 32


MAX_METADATA_VALUE_CHARS = 512


FIND_BATCH_PAGE_SIZE = 100


FIND_BATCH_SCAN_LIMIT = 1000


# Query parameters of GET /v1/batch/jobs: the SDK sends metadata as one parameter per key,
# so a metadata key with one of these names would be read as something else.
LIST_PARAMETERS = frozenset(
    {
        "page",
        "page_size",
        "model",
        "agent_id",
        "created_after",
        "created_by_me",
        "status",
        "order_by",
    }
)


def _http_client() -> httpx2.AsyncClient:
    """The SDK's own async client, except that a server closing without an answer is retried.

    The SDK retries only httpx's NetworkError and TimeoutException; a connection closed before
    any response raises RemoteProtocolError, which it would treat as permanent.
    """
    import httpx2

    class RetryableDisconnects(httpx2.AsyncClient):
        async def send(self, request: httpx2.Request, **kwargs: Any) -> httpx2.Response:
            try:
                return await super().send(request, **kwargs)
            except httpx2.RemoteProtocolError as exc:
                raise httpx2.ReadError(str(exc), request=request) from exc

    return RetryableDisconnects(follow_redirects=True)


def _no_retry() -> RetryConfig:
    from mistralai.client.utils import BackoffStrategy, RetryConfig

    backoff = BackoffStrategy(BACKOFF_INITIAL_MS, BACKOFF_MAX_MS, BACKOFF_EXPONENT, 0)
    return RetryConfig("none", backoff, retry_connection_errors=False)


def check_metadata(metadata: dict[str, str]) -> None:
    """Mistral refuses the whole create over one metadata key or value of the wrong length."""
    for key, value in metadata.items():
        if not 1 <= len(key) <= MAX_METADATA_KEY_CHARS:
            raise InputError(
                f"Mistral batch metadata key {key[:40]!r} must hold 1 to at most "
                f"{MAX_METADATA_KEY_CHARS} characters. Shorten it."
            )
        if not 1 <= len(value) <= MAX_METADATA_VALUE_CHARS:
            raise InputError(
                f"Mistral batch metadata value of {key!r} must hold 1 to at most "
                f"{MAX_METADATA_VALUE_CHARS} characters (it has {len(value)}). Shorten it."
            )


def _is_not_found(exc: Exception) -> bool:
    return getattr(exc, "status_code", None) == 404


class MistralProvider(ProviderBase):
    info: ClassVar[ProviderInfo] = INFO

    def __init__(
        self, *, api_key: str, base_url: str | None = None, timeout_hours: int = JOB_TIMEOUT_HOURS
    ) -> None:
        if not MIN_TIMEOUT_HOURS <= timeout_hours <= MAX_TIMEOUT_HOURS:
            raise ConfigurationError(
                f"Mistral batch timeout_hours={timeout_hours} is not accepted: Mistral takes "
                f"{MIN_TIMEOUT_HOURS} to {MAX_TIMEOUT_HOURS} hours (7 days)."
            )
        super().__init__(api_key=api_key, base_url=base_url)
        self._timeout_hours = timeout_hours
        self._client: Mistral | None = None
        self._http: httpx2.AsyncClient | None = None

    def warm(self) -> None:
        self.client  # noqa: B018 -- built for its side effect

    @property
    def client(self) -> Mistral:
        if self._client is None:
            from mistralai.client import Mistral
            from mistralai.client.utils import BackoffStrategy, RetryConfig
            from mistralai.client.utils.logger import NoOpLogger

            backoff = BackoffStrategy(
                BACKOFF_INITIAL_MS,
                BACKOFF_MAX_MS,
                BACKOFF_EXPONENT,
                BACKOFF_MAX_ELAPSED_MS,
                jitter_ms=BACKOFF_JITTER_MS,
            )
            self._http = _http_client()
            self._client = Mistral(
                api_key=self._api_key,
                # The SDK reads no base-URL variable: the registry's MISTRAL_BASE_URL goes here.
                server_url=self._base_url,
                timeout_ms=int(client_settings.timeout_seconds() * 1000),
                # Without retry_connection_errors a dropped connection is not retried.
                retry_config=RetryConfig("backoff", backoff, retry_connection_errors=True),
                async_client=self._http,
                # MISTRAL_DEBUG would otherwise log every request's headers, the key included.
                debug_logger=NoOpLogger(),
            )
        return self._client

    def encode(self, request: RawRequest, **line: Unpack[EncodeArgs]) -> dict[str, Any]:
        custom_id, endpoint = line["custom_id"], line["endpoint"]
        response_format = line.get("response_format")
        if endpoint != CHAT:
            refuse_response_format(response_format, endpoint=endpoint)
        body = encode_body(request, custom_id=custom_id, endpoint=endpoint)
        openai_format.add_response_format(
            body, response_format, endpoint=endpoint, chat_endpoint=CHAT
        )
        return {"custom_id": custom_id, "body": body}

    def decode(self, line: dict[str, Any]) -> Result:
        return decode_line(line)

    async def upload(self, chunk: Path, *, name: str | None = None) -> str | None:
        with chunk.open("rb") as handle:
            uploaded = await self.client.files.upload_async(
                file={"file_name": name or chunk.name, "content": handle}, purpose="batch"
            )
        return uploaded.id

    async def find_file(self, name: str, size: int, created_after: datetime) -> str | None:
        since = created_after.timestamp()
        page = 0
        while page * FIND_BATCH_PAGE_SIZE < FIND_BATCH_SCAN_LIMIT:
            listing = await self.client.files.list_async(
                page=page, page_size=FIND_BATCH_PAGE_SIZE, purpose="batch", search=name
            )
            files = listing.data or []
            for stored in files:
                if (
                    stored.filename == name
                    and stored.size_bytes == size
                    and stored.created_at >= since
                ):
                    return stored.id
            if len(files) < FIND_BATCH_PAGE_SIZE:
                return None
            page += 1
        return None

    async def create(self, chunk: Path, **new: Unpack[NewBatch]) -> str:
        file_id = new["file_id"]
        model = new["model"]
        endpoint = new["endpoint"]
        metadata = new["metadata"]
        assert file_id is not None
        check_metadata(metadata)
        # One attempt: a retry of a creation that went unanswered could make a second batch;
        # the manager retries, after looking for the first (see AsyncExperimentManager).
        job = await self.client.batch.jobs.create_async(
            input_files=[file_id],
            endpoint=endpoint,  # type: ignore[arg-type]
            model=model,
            metadata=metadata,
            timeout_hours=self._timeout_hours,
            retries=_no_retry(),
        )
        return job.id

    async def find_batch(
        self, metadata: dict[str, str], hint: CreateHint | None = None
    ) -> str | None:
        # The server-side filter narrows the scan where it can be expressed; the match is
        # checked here either way, since the API documents no semantics for it.
        query = metadata if metadata and not (set(metadata) & LIST_PARAMETERS) else None
        seen = 0
        page = 0
        while seen < FIND_BATCH_SCAN_LIMIT:
            listing = await self.client.batch.jobs.list_async(
                page=page, page_size=FIND_BATCH_PAGE_SIZE, metadata=query, order_by="-created"
            )
            jobs = listing.data or []
            for job in jobs:
                found = job.metadata or {}
                if all(found.get(key) == value for key, value in metadata.items()):
                    return job.id
            seen += len(jobs)
            if len(jobs) < FIND_BATCH_PAGE_SIZE or seen >= listing.total:
                break
            page += 1
        return None

    async def poll(self, ref: BatchRef) -> BatchSnapshot:
        job = await self.client.batch.jobs.get_async(job_id=ref.batch_id)
        status = str(job.status)
        return BatchSnapshot(
            status=INFO.map_status(status),
            provider_status=status,
            counts=RequestCounts(
                total=job.total_requests,
                completed=job.succeeded_requests,
                failed=job.failed_requests,
            ),
            output_file_id=job.output_file or None,
            error_file_id=job.error_file or None,
            errors=[
                e.message if not e.count or e.count == 1 else f"{e.message} ({e.count} times)"
                for e in job.errors
            ],
        )

    async def results(self, ref: BatchRef, snapshot: BatchSnapshot) -> AsyncIterator[bytes | str]:
        for file_id in (snapshot.output_file_id, snapshot.error_file_id):
            if not file_id:
                continue
            response = await self.client.files.download_async(file_id=file_id)
            try:
                async for line in nonblank_lines(response.aiter_bytes()):
                    yield line
            finally:
                await response.aclose()

    async def cancel(self, ref: BatchRef) -> None:
        from mistralai.client.errors import SDKError

        try:
            await self.client.batch.jobs.cancel_async(job_id=ref.batch_id)
        except SDKError as exc:
            # A job that ended between our last poll and the cancel has nothing to cancel: its
            # results stay. Any other refusal (an unknown job, a 404) is raised.
            if _is_not_found(exc) or not 400 <= exc.status_code < 500:
                raise
            if not (await self.poll(ref)).status.is_terminal:
                raise

    async def delete_remote(self, ref: BatchRef, snapshot: BatchSnapshot | None) -> None:
        from mistralai.client.errors import SDKError

        for file_id in remote_file_ids(ref, snapshot):
            try:
                await self.client.files.delete_async(file_id=file_id)
            except SDKError as exc:
                if not _is_not_found(exc):
                    raise

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            # The SDK closes its own sync client only as a context manager (or when collected).
            client.__exit__(None, None, None)  # type: ignore[no-untyped-call]
        if self._http is not None:
            http, self._http = self._http, None
            await http.aclose()


Adapter = MistralProvider
"""What the registry instantiates for this folder."""
