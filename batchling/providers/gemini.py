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
import random
import tempfile
import urllib.parse
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from batchling.errors import ConfigurationError, InputError
from batchling.models import (
    ContentPart,
    ImagePart,
    MediaPart,
    RawMessage,
    RawRequest,
    RequestCounts,
    Result,
    ResultError,
    Status,
    TextPart,
    Usage,
)
from batchling.providers import client_settings, content
from batchling.providers.base import (
    BatchLimits,
    BatchRef,
    BatchSnapshot,
    CreateHint,
    LineEncoder,
    ProviderInfo,
    bound_encode,
)
from batchling.providers.text_input import embedding_text, refuse_response_format
from batchling.records import ResultRecord, record_of
from batchling.structured import ResponseFormat

if TYPE_CHECKING:
    from google import genai
    from google.genai import types as genai_types
    from google.genai.client import AsyncClient

GENERATE_CONTENT = "generateContent"
EMBED_CONTENT = "embedContent"

INFO = ProviderInfo(
    name="gemini",
    display_name="Google Gemini",
    api_key_env=("GEMINI_API_KEY", "GOOGLE_API_KEY"),
    base_url_env=("GEMINI_BASE_URL", "GOOGLE_GEMINI_BASE_URL"),
    # The endpoint names the model method each line is run with (models/{m}:batchGenerateContent).
    endpoints=frozenset({GENERATE_CONTENT, EMBED_CONTENT}),
    default_endpoint=GENERATE_CONTENT,
    # gemini.md gives no request-count limit, only the 2 GB input file; the count bounds one
    # chunk's download and polling work.
    limits=BatchLimits(max_requests=100_000, max_bytes=2_000_000_000),
    sdk="google-genai",
    embedding_options={EMBED_CONTENT: frozenset({"dimensions", "task_type"})},
    result_id_field="key",
)
# The EmbedContentRequest task types (proto enum TaskType), checked before a batch is sent.
EMBEDDING_TASK_TYPES = (
    "RETRIEVAL_QUERY",
    "RETRIEVAL_DOCUMENT",
    "SEMANTIC_SIMILARITY",
    "CLASSIFICATION",
    "CLUSTERING",
    "QUESTION_ANSWERING",
    "FACT_VERIFICATION",
    "CODE_RETRIEVAL_QUERY",
)

# The REST API sends BATCH_STATE_*; the SDK's typed objects hand out JOB_STATE_*. Both are mapped.
STATUS_MAP: dict[str, Status] = {
    "BATCH_STATE_PENDING": Status.QUEUED,
    "BATCH_STATE_RUNNING": Status.RUNNING,
    "BATCH_STATE_SUCCEEDED": Status.COMPLETED,
    "BATCH_STATE_FAILED": Status.FAILED,
    "BATCH_STATE_CANCELLED": Status.CANCELLED,
    "BATCH_STATE_EXPIRED": Status.EXPIRED,
    "BATCH_STATE_UNSPECIFIED": Status.UNKNOWN,
    "JOB_STATE_QUEUED": Status.QUEUED,
    "JOB_STATE_PENDING": Status.QUEUED,
    "JOB_STATE_RUNNING": Status.RUNNING,
    "JOB_STATE_UPDATING": Status.RUNNING,
    "JOB_STATE_PAUSED": Status.QUEUED,
    "JOB_STATE_CANCELLING": Status.CANCELLING,
    "JOB_STATE_SUCCEEDED": Status.COMPLETED,
    "JOB_STATE_PARTIALLY_SUCCEEDED": Status.COMPLETED,
    "JOB_STATE_FAILED": Status.FAILED,
    "JOB_STATE_CANCELLED": Status.CANCELLED,
    "JOB_STATE_EXPIRED": Status.EXPIRED,
    "JOB_STATE_UNSPECIFIED": Status.UNKNOWN,
}

# google-genai retries nothing and has no timeout unless told (README "Retries and timeouts").
RETRY_INITIAL_DELAY = 0.5
RETRY_MAX_DELAY = 8.0
RETRY_JITTER = 0.25
UPLOAD_ATTEMPTS = 3
RETRYABLE_CODES = frozenset({408, 429, 500, 502, 503, 504})
FIND_BATCH_SCAN_LIMIT = 1000
LIST_PAGE_SIZE = 100
JSONL_MIME_TYPE = "application/jsonl"
DISPLAY_NAME_PREFIX = "batchling:"
ROLE_NAMES = {"user": "user", "assistant": "model"}
FILES_API_URL = "https://generativelanguage.googleapis.com/"

T = TypeVar("T")


def map_status(raw: str) -> Status:
    return STATUS_MAP.get(raw, Status.UNKNOWN)


# encode


def _media_part(part: MediaPart, where: str) -> dict[str, Any]:
    """Bytes go inline; a URL only when it names a file already in Gemini's Files API."""
    if isinstance(part, ImagePart) and part.detail not in (None, "auto"):
        raise InputError(
            f"{where}: Gemini has no per-image 'detail' setting; "
            f"remove detail='{part.detail}' from the image part."
        )
    media = content.resolve(part, where)
    if media.url is None:
        return {"inlineData": {"mimeType": media.media_type, "data": media.data}}
    if not media.url.startswith(FILES_API_URL):
        # The batch input takes inline bytes; gemini.md documents no fetching of other URLs.
        raise InputError(
            f"{where}: Gemini batch requests cannot fetch {media.kind}s from URLs "
            f"({media.url[:80]}); download it and give it as a local 'path' or a data URL "
            f"(URLs of files uploaded to Gemini's Files API, {FILES_API_URL}..., are taken)."
        )
    if media.media_type is None:
        raise InputError(
            f"{where}: Gemini needs the type of the file at {media.url[:80]}; set 'media_type'."
        )
    return {"fileData": {"mimeType": media.media_type, "fileUri": media.url}}


def _parts(
    content_: str | list[ContentPart], custom_id: str, message_index: int = 0
) -> list[dict[str, Any]]:
    if isinstance(content_, str):
        return [{"text": content_}]
    return content.encode_parts(
        content_,
        message_index,
        name=f"Request '{custom_id}'",
        text=lambda part: {"text": part.text},
        media=_media_part,
    )


def _system_parts(request: RawRequest, custom_id: str) -> list[dict[str, Any]]:
    """The system prompt plus any leading system messages: Gemini has one system instruction."""
    parts = [{"text": request.system_prompt}] if request.system_prompt else []
    for message in _leading_system_messages(request.messages):
        if not isinstance(message.content, str) and any(
            not isinstance(p, TextPart) for p in message.content
        ):
            raise InputError(
                f"Request '{custom_id}': Gemini's system instruction takes text only; "
                "move the image or document to a user message."
            )
        parts.append({"text": message.text()})
    return parts


def _leading_system_messages(messages: list[RawMessage]) -> list[RawMessage]:
    leading = []
    for message in messages:
        if message.role != "system":
            break
        leading.append(message)
    return leading


def _contents(request: RawRequest, custom_id: str) -> list[dict[str, Any]]:
    first = len(_leading_system_messages(request.messages))
    contents = []
    for index, message in enumerate(request.messages[first:], start=first):
        if message.role == "system":
            raise InputError(
                f"Request '{custom_id}': Gemini takes system instructions only before the "
                "conversation; move this system message to 'system_prompt' or to the start."
            )
        contents.append(
            {
                "role": ROLE_NAMES[message.role],
                "parts": _parts(message.content, custom_id, index),
            }
        )
    if not contents:
        raise InputError(
            f"Request '{custom_id}': Gemini needs at least one user or assistant message "
            "besides the system instruction."
        )
    return contents


def _generation_config(request: RawRequest) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if request.max_tokens is not None:
        config["maxOutputTokens"] = request.max_tokens
    if request.temperature is not None:
        config["temperature"] = request.temperature
    if request.top_p is not None:
        config["topP"] = request.top_p
    if request.stop:
        config["stopSequences"] = list(request.stop)
    if request.seed is not None:
        config["seed"] = request.seed
    if request.reasoning is not None:
        config["thinkingConfig"] = thinking_config(request.reasoning)
    return config


def thinking_config(reasoning: str | int) -> dict[str, Any]:
    """A level as `thinkingLevel` (Gemini 3), a budget as `thinkingBudget` (0 turns it off)."""
    if isinstance(reasoning, str):
        return {"thinkingLevel": reasoning.upper()}
    return {"thinkingBudget": reasoning}


def encode_request(request: RawRequest, *, custom_id: str) -> dict[str, Any]:
    """One RawRequest as a GenerateContentRequest in proto JSON (lowerCamelCase)."""
    body: dict[str, Any] = {"contents": _contents(request, custom_id)}
    system_parts = _system_parts(request, custom_id)
    if system_parts:
        body["systemInstruction"] = {"parts": system_parts}
    config = _generation_config(request)
    if config:
        body["generationConfig"] = config
    return body


def encode_embed_request(request: RawRequest, *, custom_id: str) -> dict[str, Any]:
    """One RawRequest as an EmbedContentRequest: its single user text as the content."""
    text = embedding_text(
        request,
        custom_id=custom_id,
        endpoint=EMBED_CONTENT,
        accepts=INFO.embedding_options[EMBED_CONTENT],
    )
    body: dict[str, Any] = {"content": {"parts": [{"text": text}]}}
    if request.task_type is not None:
        body["taskType"] = embedding_task_type(request.task_type, request.id or custom_id)
    if request.dimensions is not None:
        body["outputDimensionality"] = request.dimensions
    return body


def embedding_task_type(task_type: str, name: str) -> str:
    upper = task_type.strip().upper()
    if upper not in EMBEDDING_TASK_TYPES:
        raise InputError(
            f"Request '{name}': Gemini has no embedding task_type '{task_type}'. Use one of: "
            f"{', '.join(EMBEDDING_TASK_TYPES)}."
        )
    return upper


# decode


def _embedding_values(response: dict[str, Any]) -> list[float] | None:
    """The vector of an EmbedContentResponse (`embedding.values`, or the first of `embeddings`)."""
    embedding = response.get("embedding")
    if not isinstance(embedding, dict):
        many = response.get("embeddings")
        embedding = many[0] if isinstance(many, list) and many else None
    values = embedding.get("values") if isinstance(embedding, dict) else None
    return [float(v) for v in values] if isinstance(values, list) else None


def _response_text(response: dict[str, Any]) -> str | None:
    candidates = response.get("candidates") or []
    if not candidates or not isinstance(candidates[0], dict):
        return None
    parts = (candidates[0].get("content") or {}).get("parts") or []
    # Thought summaries are not the answer.
    texts = [
        p["text"]
        for p in parts
        if isinstance(p, dict) and isinstance(p.get("text"), str) and not p.get("thought")
    ]
    return "".join(texts) if texts else None


def _response_usage(response: dict[str, Any]) -> Usage | None:
    usage = response.get("usageMetadata")
    if not isinstance(usage, dict):
        return None
    # Thinking tokens are billed as output tokens.
    output = int(usage.get("candidatesTokenCount") or 0) + int(usage.get("thoughtsTokenCount") or 0)
    return Usage(input_tokens=int(usage.get("promptTokenCount") or 0), output_tokens=output)


def _line_key(line: dict[str, Any]) -> str:
    metadata = line.get("metadata")
    key = line.get("key")
    if key is None and isinstance(metadata, dict):
        key = metadata.get("key")
    return str(key)


def decode_line(line: dict[str, Any]) -> Result:
    """A results-file line (`key`) or an inline response (`metadata.key`) as a Result."""
    custom_id = _line_key(line)
    error = line.get("error")
    if error:
        error = error if isinstance(error, dict) else {"message": str(error)}
        status = error.get("status")
        code = status or (str(error["code"]) if error.get("code") is not None else None)
        message = str(error.get("message") or status or "Unknown error")
        # google.rpc CANCELLED (1) is the only per-request status that says the request never ran.
        if status == "CANCELLED" or error.get("code") == 1:
            return Result(
                custom_id=custom_id,
                status="cancelled",
                raw=line,
                error=ResultError(kind="cancelled", message=message, code=code),
            )
        return Result(
            custom_id=custom_id,
            status="failed",
            raw=line,
            error=ResultError(kind="provider", message=message, code=code),
        )
    response = line.get("response")
    if not isinstance(response, dict):
        return Result(
            custom_id=custom_id,
            status="failed",
            raw=line,
            error=ResultError(
                kind="provider", message="The result line has neither 'response' nor 'error'."
            ),
        )
    vector = _embedding_values(response)
    if vector is not None:
        # usageMetadata per the REST reference; the SDK's own type calls it tokenCount.
        tokens = (response.get("usageMetadata") or {}).get("promptTokenCount")
        tokens = response.get("tokenCount") if tokens is None else tokens
        return Result(
            custom_id=custom_id,
            status="succeeded",
            embedding=vector,
            usage=Usage(input_tokens=int(tokens)) if isinstance(tokens, int | str) else None,
            raw=line,
        )
    feedback = response.get("promptFeedback") or {}
    if not response.get("candidates") and feedback.get("blockReason"):
        reason = str(feedback["blockReason"])
        return Result(
            custom_id=custom_id,
            status="failed",
            raw=line,
            usage=_response_usage(response),
            error=ResultError(
                kind="provider", message=f"The prompt was blocked: {reason}.", code=reason
            ),
        )
    return Result(
        custom_id=custom_id,
        status="succeeded",
        text=_response_text(response),
        usage=_response_usage(response),
        raw=line,
    )


# metadata in the display name


def encode_display_name(metadata: dict[str, str]) -> str:
    return DISPLAY_NAME_PREFIX + urllib.parse.urlencode(sorted(metadata.items()))


def decode_display_name(display_name: str | None) -> dict[str, str] | None:
    if not display_name or not display_name.startswith(DISPLAY_NAME_PREFIX):
        return None
    return dict(
        urllib.parse.parse_qsl(display_name[len(DISPLAY_NAME_PREFIX) :], keep_blank_values=True)
    )


def batch_name(batch_id: str) -> str:
    """The SDK refuses a bare id (quirk 6): batches are always `batches/<id>`."""
    return batch_id if batch_id.startswith("batches/") else f"batches/{batch_id}"


def _count(stats: dict[str, Any], key: str) -> int:
    # int64 counters arrive as strings.
    try:
        return int(stats.get(key) or 0)
    except (TypeError, ValueError):
        return 0


def snapshot_from_operation(operation: dict[str, Any]) -> BatchSnapshot:
    """A batch Operation as sent on the wire (`metadata` is the GenerateContentBatch)."""
    metadata = operation.get("metadata") or {}
    raw_state = str(metadata.get("state") or "BATCH_STATE_UNSPECIFIED")
    stats = metadata.get("batchStats") or {}
    output = metadata.get("output") or (operation.get("response") or {})
    error = operation.get("error") or metadata.get("error")
    errors = [str(error.get("message") or error)] if isinstance(error, dict) else []
    return BatchSnapshot(
        status=map_status(raw_state),
        provider_status=raw_state,
        counts=RequestCounts(
            total=_count(stats, "requestCount"),
            completed=_count(stats, "successfulRequestCount"),
            failed=_count(stats, "failedRequestCount"),
        ),
        output_file_id=output.get("responsesFile") if isinstance(output, dict) else None,
        errors=errors,
    )


class GeminiProvider:
    info: ClassVar[ProviderInfo] = INFO

    def __init__(self, *, api_key: str, base_url: str | None = None) -> None:
        self._api_key = api_key
        self._base_url = base_url
        # Kept for the adapter's lifetime: a dropped genai.Client closes its HTTP client (quirk 5).
        self._genai: genai.Client | None = None

    @property
    def client(self) -> AsyncClient:
        if self._genai is None:
            from google import genai
            from google.genai import types

            self._genai = genai.Client(
                api_key=self._api_key,
                http_options=types.HttpOptions(
                    base_url=self._base_url,
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

    def encode(
        self,
        request: RawRequest,
        *,
        custom_id: str,
        model: str,
        endpoint: str,
        response_format: ResponseFormat | None = None,
    ) -> dict[str, Any]:
        _check_endpoint(endpoint)
        if endpoint == EMBED_CONTENT:
            refuse_response_format(response_format, endpoint=endpoint)
            return {"key": custom_id, "request": encode_embed_request(request, custom_id=custom_id)}
        body = encode_request(request, custom_id=custom_id)
        if response_format is not None:
            config = body.setdefault("generationConfig", {})
            config["responseMimeType"] = "application/json"
            config["responseJsonSchema"] = response_format.schema
        return {"key": custom_id, "request": body}

    def line_encoder(
        self, *, model: str, endpoint: str, response_format: ResponseFormat | None = None
    ) -> LineEncoder:
        return bound_encode(self, model=model, endpoint=endpoint, response_format=response_format)

    def decode(self, line: dict[str, Any]) -> Result:
        return decode_line(line)

    def decode_record(self, line: dict[str, Any]) -> ResultRecord:
        return record_of(self.decode(line))

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

    async def create(
        self,
        chunk: Path,
        *,
        file_id: str | None,
        model: str,
        endpoint: str,
        metadata: dict[str, str],
    ) -> str:
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
        return BatchSnapshot(
            status=map_status(raw),
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
    """A connection closed without an answer: google-genai retries timeouts and refused
    connections, but not this."""
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
    attempts = attempts or client_settings.max_retries() + 1
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except Exception as error:
            if attempt == attempts or not retry_if(error):
                raise
            delay = min(RETRY_MAX_DELAY, RETRY_INITIAL_DELAY * 2 ** (attempt - 1))
            await asyncio.sleep(delay + random.uniform(0, RETRY_JITTER))
    raise AssertionError("unreachable")
