"""Mistral Batch API adapter (files + batch jobs), through the async methods of `mistralai`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from typing_extensions import Unpack

from batchling.errors import ConfigurationError, InputError
from batchling.models import (
    GENERATION_FIELDS,
    DocumentPart,
    ImagePart,
    MediaPart,
    RawMessage,
    RawRequest,
    RequestCounts,
    Result,
    ResultError,
    Status,
)
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
from batchling.providers.wire import content, openai_format
from batchling.providers.wire.text_input import embedding_text, refuse_response_format

if TYPE_CHECKING:
    import httpx2
    from mistralai.client import Mistral
    from mistralai.client.utils import RetryConfig

CHAT = "/v1/chat/completions"
EMBEDDINGS = "/v1/embeddings"
MODERATIONS = "/v1/moderations"
CHAT_MODERATIONS = "/v1/chat/moderations"
OCR = "/v1/ocr"


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
_GENERATION_FIELDS = GENERATION_FIELDS
# Mistral reads documents (PDFs) from `document_url` parts; images are OpenAI-style.
DOCUMENT_TYPES = frozenset({content.PDF})
_TOP_LEVEL_ERROR_KINDS = {
    "batch_expired": "expired",
    "timeout_exceeded": "expired",
    "batch_cancelled": "cancelled",
    "cancelled": "cancelled",
}


def map_status(raw: str) -> Status:
    return INFO.status_map.get(raw, Status.UNKNOWN)


# encode


def _request_name(request: RawRequest, custom_id: str) -> str:
    return f"Request '{request.id or custom_id}'"


def check_message_order(request: RawRequest, custom_id: str) -> None:
    """Mistral's chat rules, checked here rather than failing the request (3230) in the batch."""
    name = _request_name(request, custom_id)
    last = request.messages[-1].role
    if last != "user":
        raise InputError(
            f"{name}: Mistral requires the last message to be a user message, but it is "
            f"'{last}'. End the conversation with a user turn (or drop the trailing message)."
        )
    previous = "system" if request.system_prompt else None
    for message in request.messages:
        if message.role == "system" and previous == "assistant":
            raise InputError(
                f"{name}: Mistral does not accept a system message after an assistant message. "
                "Move it before the first assistant turn, or put it in system_prompt."
            )
        previous = message.role


def _check_parts(message: RawMessage, name: str) -> None:
    if message.role == "user" or isinstance(message.content, str):
        return
    if any(isinstance(part, (ImagePart, DocumentPart)) for part in message.content):
        raise InputError(
            f"{name}: Mistral takes images only in user messages (documents too), not in a "
            f"'{message.role}' message. Move them to a user message."
        )


def mistral_part(part: MediaPart, where: str) -> dict[str, Any]:
    """Images as `image_url`, documents as `document_url` (an http(s) URL or a data URL)."""
    media = content.resolve(part, where)
    if isinstance(part, ImagePart):
        content.require_type(media, content.COMMON_IMAGE_TYPES, provider="Mistral", where=where)
        return openai_format.image_url_part(part, where)
    content.require_type(media, DOCUMENT_TYPES, provider="Mistral", where=where)
    encoded: dict[str, Any] = {
        "type": "document_url",
        "document_url": media.url or media.data_url,
    }
    if media.filename:
        encoded["document_name"] = media.filename
    return encoded


def encode_chat_body(request: RawRequest, custom_id: str) -> dict[str, Any]:
    check_message_order(request, custom_id)
    name = _request_name(request, custom_id)
    for message in request.messages:
        _check_parts(message, name)
    # The model is set on the job, so the body leaves it out.
    body: dict[str, Any] = {
        "messages": openai_format.encode_messages(
            request, custom_id=custom_id, encode_part=mistral_part
        )
    }
    if request.max_tokens is not None:
        body["max_tokens"] = request.max_tokens
    for name_ in ("temperature", "top_p", "stop"):
        value = getattr(request, name_)
        if value is not None:
            body[name_] = value
    if request.seed is not None:
        body["random_seed"] = request.seed
    effort = openai_format.reasoning_effort(request, provider="Mistral", custom_id=custom_id)
    if effort is not None:
        body["reasoning_effort"] = effort
    return body


def _check_text_only(request: RawRequest, custom_id: str, endpoint: str) -> None:
    """Endpoints that classify or embed text take no generation settings and no images."""
    name = _request_name(request, custom_id)
    given = [field for field in _GENERATION_FIELDS if getattr(request, field) is not None]
    if given:
        raise InputError(
            f"{name}: {endpoint} takes no generation settings; remove {', '.join(given)}."
        )
    for message in request.messages:
        if not isinstance(message.content, str) and any(
            isinstance(part, (ImagePart, DocumentPart)) for part in message.content
        ):
            raise InputError(
                f"{name}: {endpoint} takes no images or documents; remove those parts."
            )


def _input_texts(request: RawRequest, custom_id: str, endpoint: str) -> list[str]:
    """The texts to embed or moderate: one per user message."""
    _check_text_only(request, custom_id, endpoint)
    name = _request_name(request, custom_id)
    if request.system_prompt:
        raise InputError(f"{name}: {endpoint} takes only user text; remove system_prompt.")
    for message in request.messages:
        if message.role != "user":
            raise InputError(
                f"{name}: {endpoint} takes only user text, not a '{message.role}' message."
            )
    return [message.text() for message in request.messages]


def ocr_document(request: RawRequest, custom_id: str) -> dict[str, Any]:
    """What an OCR request reads: the single image or PDF part of its single user message."""
    name = _request_name(request, custom_id)
    extra = sorted(set(request.model_dump(exclude_none=True)) - {"id", "messages"})
    if extra:
        raise InputError(f"{name}: {OCR} reads one image or PDF; remove {', '.join(extra)}.")
    content_ = request.messages[0].content
    if (
        len(request.messages) != 1
        or request.messages[0].role != "user"
        or isinstance(content_, str)
        or len(content_) != 1
        or not isinstance(content_[0], (ImagePart, DocumentPart))
    ):
        raise InputError(
            f"{name}: {OCR} reads one image or PDF: give one user message whose content is a "
            "single image or document part (a URL, a data URL or a local path)."
        )
    part = content_[0]
    where = content.part_where(name, 0, 0)
    if isinstance(part, ImagePart):
        return {"type": "image_url", "image_url": openai_format.image_url(part, where)}
    return mistral_part(part, where)


def encode_body(request: RawRequest, *, custom_id: str, endpoint: str) -> dict[str, Any]:
    if endpoint == CHAT:
        return encode_chat_body(request, custom_id)
    if endpoint == EMBEDDINGS:
        text = embedding_text(
            request,
            custom_id=custom_id,
            endpoint=endpoint,
            accepts=INFO.embedding_options[endpoint],
        )
        body: dict[str, Any] = {"input": [text]}
        if request.dimensions is not None:
            body["output_dimension"] = request.dimensions
        return body
    if endpoint == MODERATIONS:
        return {"input": _input_texts(request, custom_id, endpoint)}
    if endpoint == CHAT_MODERATIONS:
        # A conversation to classify may well end with the assistant's reply: no order rules.
        _check_text_only(request, custom_id, endpoint)
        return {"input": openai_format.encode_messages(request)}
    if endpoint == OCR:
        return {"document": ocr_document(request, custom_id)}
    accepted = ", ".join(sorted(INFO.endpoints))
    raise ConfigurationError(
        f"batchling cannot encode requests for Mistral endpoint '{endpoint}'. Use one of: "
        f"{accepted}."
    )


# decode


def _error_body_fields(body: Any) -> tuple[str | None, str | None]:
    """(message, code) from Mistral's `{"object": "error", ...}`, OpenAI's nested form or 422."""
    if not isinstance(body, dict):
        return (body if isinstance(body, str) and body else None), None
    nested = body.get("error")
    if isinstance(nested, dict):
        body = nested
    detail = body.get("detail")
    if isinstance(detail, list) and detail:
        messages = [str(d.get("msg", d)) if isinstance(d, dict) else str(d) for d in detail]
        return "; ".join(messages), "422"
    if isinstance(detail, str):
        return detail, None
    code = body.get("code") or body.get("type")
    message = body.get("message")
    return (str(message) if message else None), (str(code) if code is not None else None)


def decode_line(line: dict[str, Any]) -> Result:
    """An output or error file line; `error` may be an object or a bare string."""
    custom_id = str(line.get("custom_id"))
    error = line.get("error")
    response = line.get("response") or {}
    status_code = int(response.get("status_code") or 200)
    body = response.get("body")
    if error or status_code >= 400:
        body_message, body_code = _error_body_fields(body) if status_code >= 400 else (None, None)
        if isinstance(error, dict):
            message = error.get("message") or body_message
            code = error.get("code") or body_code
        else:
            message, code = (str(error) if error else body_message), body_code
        code = str(code) if code is not None else (str(status_code) if status_code >= 400 else None)
        kind = _TOP_LEVEL_ERROR_KINDS.get(str(code).lower(), "provider")
        status = kind if kind in ("expired", "cancelled") else "failed"
        return Result(
            custom_id=custom_id,
            status=status,  # type: ignore[arg-type]
            error=ResultError(
                kind=kind,  # type: ignore[arg-type]
                message=message or f"HTTP {status_code}",
                code=code,
            ),
            raw=line,
        )
    body = body if isinstance(body, dict) else {}
    pages = body.get("pages")
    if isinstance(pages, list):
        # An OCR answer: the text is the pages' markdown, in page order.
        markdown = [p.get("markdown") or "" for p in pages if isinstance(p, dict)]
        return Result(custom_id=custom_id, status="succeeded", text="\n\n".join(markdown), raw=line)
    return Result(
        custom_id=custom_id, status="succeeded", raw=line, **openai_format.success_fields(body)
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
            status=map_status(status),
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
                async for line in response.aiter_lines():
                    if line.strip():
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
