"""Gemini Developer API batch adapter (Files API + batches), through `google.genai` (`.aio`).

Requests go as a JSONL file of `{"key", "request": GenerateContentRequest}` lines uploaded with the
resumable Files API; the batch's `displayName` carries batchling's metadata so that `find_batch`
can recognise a batch after a crash. Two endpoints: `generateContent` (models/{m}:batchGenerateContent)
and `embedContent` (models/{m}:asyncBatchEmbedContent, which the SDK marks experimental), whose
lines are `{"key", "request": EmbedContentRequest}`.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from typing_extensions import Unpack

from batchling.errors import ConfigurationError
from batchling.models import (
    RawRequest,
    Result,
    Status,
)
from batchling.providers import client_settings
from batchling.providers.base import (
    BatchRef,
    BatchSnapshot,
    CreateHint,
    EncodeArgs,
    LineEncoder,
    NewBatch,
    ProviderBase,
    ProviderInfo,
    bound_encode,
)
from batchling.providers.gemini import INFO
from batchling.providers.gemini.wire import (
    EMBED_CONTENT,
    _timestamp,
    batch_name,
    decode_display_name,
    decode_line,
    encode_display_name,
    encode_embed_request,
    encode_request,
    snapshot_from_operation,
    structured_output_config,
    succeeded_status,
)
from batchling.providers.retrying import Backoff, retrying
from batchling.providers.wire.text_input import refuse_response_format
from batchling.structured import ResponseFormat

if TYPE_CHECKING:
    from google import genai
    from google.genai import types as genai_types
    from google.genai.client import AsyncClient


GENERATE_CONTENT = "generateContent"


# google-genai retries nothing and has no timeout unless told (README "Retries and timeouts").
RETRY_INITIAL_DELAY = 0.5


RETRY_MAX_DELAY = 8.0


RETRY_JITTER = 0.25


UPLOAD_ATTEMPTS = 3


RETRYABLE_CODES = frozenset({408, 429, 500, 502, 503, 504})


FIND_BATCH_SCAN_LIMIT = 1000


LIST_PAGE_SIZE = 100


JSONL_MIME_TYPE = "application/jsonl"


# google-genai 3.x defaults the Developer API to v1; Google documents batches and files only under
# v1beta (https://ai.google.dev/api/all-methods, https://ai.google.dev/api/batch-api).
API_VERSION = "v1beta"


T = TypeVar("T")


class GeminiProvider(ProviderBase):
    info: ClassVar[ProviderInfo] = INFO

    def __init__(self, *, api_key: str, base_url: str | None = None) -> None:
        super().__init__(api_key=api_key, base_url=base_url)
        # Kept for the adapter's lifetime: a dropped genai.Client closes its HTTP client
        # (PROTOCOL.md, "client lifetime").
        self._genai: genai.Client | None = None

    def warm(self) -> None:
        self.client  # noqa: B018 -- built for its side effect

    @property
    def client(self) -> AsyncClient:
        if self._genai is None:
            from google import genai
            from google.genai import types

            self._genai = genai.Client(
                api_key=self._api_key,
                http_options=types.HttpOptions(
                    base_url=self._base_url,
                    api_version=API_VERSION,
                    timeout=int(client_settings.timeout_seconds() * 1000),
                    retry_options=types.HttpRetryOptions(
                        attempts=client_settings.max_retries() + 1,
                        initial_delay=RETRY_INITIAL_DELAY,
                        max_delay=RETRY_MAX_DELAY,
                        exp_base=2,
                        jitter=RETRY_JITTER,
                    ),
                ),
            )
        return self._genai.aio

    def encode(self, request: RawRequest, **line: Unpack[EncodeArgs]) -> dict[str, Any]:
        custom_id, model, endpoint = line["custom_id"], line["model"], line["endpoint"]
        response_format = line.get("response_format")
        _check_endpoint(endpoint)
        if endpoint == EMBED_CONTENT:
            refuse_response_format(response_format, endpoint=endpoint)
            body = encode_embed_request(request, custom_id=custom_id, model=model)
            return {"key": custom_id, "request": body}
        body = encode_request(request, custom_id=custom_id)
        if response_format is not None:
            body.setdefault("generationConfig", {}).update(
                structured_output_config(response_format)
            )
        return {"key": custom_id, "request": body}

    def line_encoder(
        self, *, model: str, endpoint: str, response_format: ResponseFormat | None = None
    ) -> LineEncoder:
        if response_format is None or endpoint != GENERATE_CONTENT:
            return bound_encode(
                self, model=model, endpoint=endpoint, response_format=response_format
            )
        # Converted once: the same fields go in every line.
        fields = structured_output_config(response_format)

        def encode_line(request: RawRequest, custom_id: str) -> dict[str, Any]:
            body = encode_request(request, custom_id=custom_id)
            body.setdefault("generationConfig", {}).update(fields)
            return {"key": custom_id, "request": body}

        return encode_line

    def decode(self, line: dict[str, Any]) -> Result:
        return decode_line(line)

    async def upload(self, chunk: Path, *, name: str | None = None) -> str | None:
        # The SDK retries the upload start, not the POST of the bytes: a failed one restarts.
        uploaded = await _retrying(
            lambda: self.client.files.upload(
                file=chunk,
                config={"mime_type": JSONL_MIME_TYPE, "display_name": name or chunk.name},
            ),
            attempts=min(UPLOAD_ATTEMPTS, client_settings.max_retries() + 1),
        )
        return uploaded.name

    async def find_file(self, name: str, size: int, created_after: datetime) -> str | None:
        seen = 0
        async for stored in await self.client.files.list(config={"page_size": LIST_PAGE_SIZE}):
            if (
                stored.display_name == name
                and stored.size_bytes == size
                and stored.name
                and (stored.create_time is None or stored.create_time >= created_after)
            ):
                return stored.name
            seen += 1
            if seen >= FIND_BATCH_SCAN_LIMIT:
                break
        return None

    async def create(self, chunk: Path, **new: Unpack[NewBatch]) -> str:
        file_id = new["file_id"]
        model = new["model"]
        endpoint = new["endpoint"]
        metadata = new["metadata"]
        _check_endpoint(endpoint)
        if file_id is None:
            raise ConfigurationError("Gemini batches need an uploaded input file: upload first.")
        # One attempt: a retry of a creation that went unanswered could make a second batch;
        # the manager retries, after looking for the first (see AsyncExperimentManager).
        if endpoint == EMBED_CONTENT:
            job = await self._create_embeddings(file_id, model=model, metadata=metadata)
        else:
            job = await self.client.batches.create(
                model=model, src=file_id, config=_create_config(metadata)
            )
        if not job.name:
            raise RuntimeError("Gemini answered the batch creation without a batch name.")
        return job.name

    async def _create_embeddings(
        self, file_id: str, *, model: str, metadata: dict[str, str]
    ) -> genai_types.BatchJob:
        from google.genai import _common

        # The SDK warns on every call that the method is experimental; batchling documents it.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", _common.ExperimentalWarning)
            return await self.client.batches.create_embeddings(
                model=model, src={"file_name": file_id}, config=_create_config(metadata)
            )

    async def find_batch(
        self, metadata: dict[str, str], hint: CreateHint | None = None
    ) -> str | None:
        seen = 0
        pager = await self.client.batches.list(config={"page_size": LIST_PAGE_SIZE})
        async for job in pager:
            carried = decode_display_name(job.display_name)
            if (
                carried is not None
                and job.name
                and all(carried.get(k) == v for k, v in metadata.items())
            ):
                return job.name
            seen += 1
            if seen >= FIND_BATCH_SCAN_LIMIT:
                break
        return None

    async def poll(self, ref: BatchRef) -> BatchSnapshot:
        name = batch_name(ref.batch_id)
        # The SDK's BatchJob drops batchStats and the job error on the Developer API, so read
        # the Operation as sent, through the SDK's own (retrying, timed) request path.
        api_client = getattr(self.client, "_api_client", None)
        if api_client is None or not hasattr(api_client, "async_request"):
            return await self._poll_typed(name)
        response = await _retrying(
            lambda: api_client.async_request("get", name, {}, None), retry_if=_is_disconnect
        )
        return snapshot_from_operation(json.loads(response.body) if response.body else {})

    async def _poll_typed(self, name: str) -> BatchSnapshot:
        job = await self.client.batches.get(name=name)
        raw = job.state.value if job.state is not None else "JOB_STATE_UNSPECIFIED"
        status = INFO.map_status(raw)
        if status == Status.COMPLETED:
            dest = job.dest
            has_output = dest is not None and bool(
                dest.file_name or dest.inlined_responses or dest.inlined_embed_content_responses
            )
            ended = _timestamp(job.end_time) or _timestamp(job.update_time)
            status = succeeded_status(name, has_output, ended)
        return BatchSnapshot(
            status=status,
            provider_status=raw,
            output_file_id=job.dest.file_name if job.dest else None,
            errors=[job.error.message] if job.error and job.error.message else [],
        )

    async def results(self, ref: BatchRef, snapshot: BatchSnapshot) -> AsyncIterator[bytes | str]:
        if not snapshot.output_file_id:
            return
        # The SDK streams the download to a file; lines are then read from disk one at a time.
        handle, temp_name = tempfile.mkstemp(prefix="batchling-gemini-", suffix=".jsonl")
        os.close(handle)
        temp = Path(temp_name)
        try:
            file_name = snapshot.output_file_id
            await _retrying(lambda: self.client.files.download(file=file_name, destination=temp))
            with temp.open("rb") as lines:
                for raw in lines:
                    if raw.strip():
                        yield raw
        finally:
            temp.unlink(missing_ok=True)

    async def cancel(self, ref: BatchRef) -> None:
        from google.genai import errors

        try:
            await _retrying(
                lambda: self.client.batches.cancel(name=batch_name(ref.batch_id)),
                retry_if=_is_disconnect,
            )
        except errors.ClientError as error:
            # A batch that ended meanwhile cannot be cancelled; there is nothing left to stop.
            if error.status != "FAILED_PRECONDITION":
                raise

    async def delete_remote(self, ref: BatchRef, snapshot: BatchSnapshot | None) -> None:
        from google.genai import errors

        names = [ref.input_file_id, snapshot.output_file_id if snapshot else None]
        for name in filter(None, names):
            try:
                await self.client.files.delete(name=name)
            except errors.ClientError as error:
                if error.code != 404:
                    raise

    async def aclose(self) -> None:
        if self._genai is not None:
            await self._genai.aio.aclose()
            self._genai.close()
            self._genai = None


Adapter = GeminiProvider
"""What the registry instantiates for this folder."""


def _check_endpoint(endpoint: str) -> None:
    if endpoint not in INFO.endpoints:
        raise ConfigurationError(
            f"Provider 'gemini' does not accept endpoint '{endpoint}' for batches. "
            f"Accepted: {', '.join(sorted(INFO.endpoints))}."
        )


def _is_transient(error: Exception) -> bool:
    from google.genai import errors

    if isinstance(error, errors.APIError):
        return error.code in RETRYABLE_CODES
    if isinstance(error, asyncio.TimeoutError):
        return True
    # httpx/httpx2 TransportError covers connect, read and timeout errors; aiohttp has its own.
    return any(
        (cls.__module__.split(".")[0] in {"httpx", "httpx2"} and cls.__name__ == "TransportError")
        or (cls.__module__.split(".")[0] == "aiohttp" and cls.__name__ == "ClientConnectionError")
        for cls in type(error).__mro__
    )


def _is_disconnect(error: Exception) -> bool:
    """What google-genai does not retry itself: over httpx a connection closed without an
    answer (it retries timeouts and refused connections); over aiohttp, which it uses for its
    async client whenever aiohttp is installed, a timeout, which aiohttp raises as the builtin
    TimeoutError (google-genai 3.6.1 `_api_client.py`: `_AIOHTTP_TRANSIENT_EXC` is
    ClientConnectorError, ClientOSError and ServerDisconnectedError only)."""
    if isinstance(error, asyncio.TimeoutError):
        return True
    return any(
        cls.__module__.split(".")[0] in {"httpx", "httpx2"}
        and cls.__name__ in {"ReadError", "WriteError", "RemoteProtocolError"}
        for cls in type(error).__mro__
    )


def _create_config(metadata: dict[str, str]) -> Any:
    """A batch creation's config: its display name, and a single attempt (the per-call retry
    options replace the client's)."""
    return {
        "display_name": encode_display_name(metadata),
        "http_options": {"retry_options": {"attempts": 1}},
    }


async def _retrying(
    call: Callable[[], Awaitable[T]],
    *,
    attempts: int | None = None,
    retry_if: Callable[[Exception], bool] = _is_transient,
) -> T:
    """Retry what google-genai does not retry itself: the upload's bytes, the download, and
    (with retry_if=_is_disconnect) dropped connections on the other calls."""
    return await retrying(
        call,
        attempts=attempts or client_settings.max_retries() + 1,
        retry_if=retry_if,
        backoff=Backoff(RETRY_INITIAL_DELAY, RETRY_MAX_DELAY, RETRY_JITTER),
    )
