"""Together AI Batch API adapter (files + batches), through `together.AsyncTogether`."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from typing_extensions import Unpack

from batchling.errors import InputError
from batchling.models import ImagePart, RawRequest, RequestCounts, Result, Status
from batchling.providers import client_settings
from batchling.providers.base import (
    BatchRef,
    BatchSnapshot,
    CreateHint,
    EncodeArgs,
    NewBatch,
    ProviderBase,
    ProviderInfo,
)
from batchling.providers.openai_compatible.client import FilesAndBatchesProvider
from batchling.providers.retrying import Backoff, retrying
from batchling.providers.together import INFO
from batchling.providers.wire import openai_format
from batchling.structured import ResponseFormat

if TYPE_CHECKING:
    from together import AsyncTogether
    from together.types import BatchJob

CHAT = "/v1/chat/completions"


# The storage PUT of an upload goes through the SDK's bare httpx client, which never retries.
UPLOAD_ATTEMPTS = 4
UPLOAD_BACKOFF_SECONDS = 1.0
MAX_CUSTOM_ID_CHARS = 64
# A bigger line passes validation and then fails at run time, after the batch was paid for.
MAX_LINE_BYTES = 10_000_000
TOGETHER_PART = openai_format.images_only_part("Together")
# "Models not available for batch" (https://docs.together.ai/docs/inference/batch/overview,
# 2026-12-06): "Batch jobs that target these models will fail". The list there goes on (MiniMax
# models); these are the ones our copy of the page names in full.
NOT_FOR_BATCH = frozenset(
    {"deepseek-ai/DeepSeek-R1", "deepseek-ai/DeepSeek-V3.1", "deepseek-ai/DeepSeek-V4-Pro"}
)


def map_status(raw: str) -> Status:
    return INFO.status_map.get(raw, Status.UNKNOWN)


# encode


def encode_line(
    request: RawRequest,
    *,
    custom_id: str,
    model: str,
    endpoint: str,
    response_format: ResponseFormat | None = None,
) -> dict[str, Any]:
    """One Together chat batch line: OpenAI's body, but no `method` or `url`."""
    name = f"Request '{request.id or custom_id}'"
    if model in NOT_FOR_BATCH:
        raise InputError(
            f"Together's '{model}' is not available for batch processing (a batch of it would "
            "fail). Choose another model."
        )
    if endpoint != CHAT:
        raise InputError(
            f"{name}: Together batches are encoded for {CHAT} only, not '{endpoint}'. "
            f"Use --endpoint {CHAT}."
        )
    if len(custom_id) > MAX_CUSTOM_ID_CHARS:
        raise InputError(
            f"{name}: Together accepts custom ids of at most {MAX_CUSTOM_ID_CHARS} characters, "
            f"this one has {len(custom_id)}. Give the request a shorter 'id'."
        )
    for message in request.messages:
        if isinstance(message.content, str):
            continue
        for part in message.content:
            if isinstance(part, ImagePart) and part.detail:
                raise InputError(
                    f"{name}: Together has no image 'detail' setting. Remove 'detail' from "
                    "its image parts."
                )
    line = {
        "custom_id": custom_id,
        "body": openai_format.add_response_format(
            openai_format.encode_chat_body(
                request,
                model=model,
                custom_id=custom_id,
                provider="Together",
                encode_part=TOGETHER_PART,
            ),
            response_format,
            endpoint=endpoint,
            chat_endpoint=CHAT,
        ),
    }
    size = len(json.dumps(line).encode())
    if size > MAX_LINE_BYTES:
        raise InputError(
            f"{name} is {size / 1e6:.1f} MB once encoded; Together takes at most "
            f"{MAX_LINE_BYTES // 1_000_000} MB a line (inline images included). "
            "Use smaller images or image URLs."
        )
    return line


# decode


def decode_line(line: dict[str, Any]) -> Result:
    """An output line (`response.status_code` + `body`) or an error line (`error`)."""
    error = line.get("error")
    if not (isinstance(error, dict) and error.get("code") is not None):
        return openai_format.decode_line(line)
    # The common ResultError takes a string code; keep `raw` exactly as it came.
    readable = {**line, "error": {**error, "code": str(error["code"])}}
    return openai_format.decode_line(readable).model_copy(update={"raw": line})


def job_of(response: Any) -> BatchJob:
    """The batch job, whether the service wrapped it in `{"job": ...}` or sent it bare."""
    from together.types import BatchJob

    job = getattr(response, "job", None)
    if isinstance(job, BatchJob):
        return job
    if isinstance(job, dict):
        return BatchJob.model_validate(job)
    if isinstance(response, BatchJob):
        return response
    return BatchJob.model_validate(response.to_dict())


def snapshot_of(job: BatchJob, total: int | None) -> BatchSnapshot:
    """Together reports progress as a percentage only; counts need the request total."""
    status = job.status or ""
    counts = RequestCounts()
    if total is not None:
        done = total if status == "COMPLETED" else round(total * (job.progress or 0.0) / 100)
        # Successes and per-request failures are told apart only by the result files.
        counts = RequestCounts(total=total, completed=min(done, total))
    return BatchSnapshot(
        status=map_status(status),
        provider_status=status,
        counts=counts,
        output_file_id=job.output_file_id or None,
        error_file_id=job.error_file_id or None,
        errors=[job.error] if job.error else [],
    )


@contextmanager
def jsonl_path(chunk: Path, name: str | None = None) -> Iterator[Path]:
    """The chunk under the file name to upload it as (the SDK sends the path's name, and picks
    the file type from the extension: only .jsonl for batches)."""
    wanted = name or (chunk.name if chunk.suffix == ".jsonl" else f"{chunk.stem}.jsonl")
    if wanted == chunk.name:
        yield chunk
        return
    with tempfile.TemporaryDirectory(prefix="batchling-together-") as folder:
        link = Path(folder) / wanted
        try:
            link.symlink_to(chunk.resolve())
        except OSError:
            shutil.copyfile(chunk, link)
        yield link


def count_lines(chunk: Path) -> int:
    with chunk.open("rb") as handle:
        return sum(1 for raw in handle if raw.strip())


def _is_transient_upload_error(error: Exception) -> bool:
    import httpx
    from together import APIStatusError

    if isinstance(error, httpx.TransportError):
        return True
    if isinstance(error, APIStatusError):
        storage_put = error.response.request.method == "PUT"
        return storage_put and (error.status_code == 429 or error.status_code >= 500)
    return False


class TogetherProvider(FilesAndBatchesProvider["AsyncTogether"]):
    info: ClassVar[ProviderInfo] = INFO

    sdk_module = "together"
    # Together's lines are not OpenAI's: no direct record of a chat line.
    decode_record = ProviderBase.decode_record

    def __init__(self, *, api_key: str, base_url: str | None = None) -> None:
        super().__init__(api_key=api_key, base_url=base_url)
        self._request_totals: dict[str, int | None] = {}

    def _new_client(self) -> AsyncTogether:
        from together import AsyncTogether

        return AsyncTogether(**self.client_options())

    def encode(self, request: RawRequest, **line: Unpack[EncodeArgs]) -> dict[str, Any]:
        custom_id, model, endpoint = line["custom_id"], line["model"], line["endpoint"]
        response_format = line.get("response_format")
        return encode_line(
            request,
            custom_id=custom_id,
            model=model,
            endpoint=endpoint,
            response_format=response_format,
        )

    def decode(self, line: dict[str, Any]) -> Result:
        return decode_line(line)

    async def upload(self, chunk: Path, *, name: str | None = None) -> str | None:
        # Sent as the file's name: the service answers a second upload of the same file name and
        # content with the file it already holds, so an upload is never stored twice.

        async def upload_once() -> str:
            with jsonl_path(chunk, name) as path:
                # check=False: our encoder wrote every line, and the SDK's check re-reads the
                # whole file synchronously on the event loop.
                uploaded = await self.client.files.upload(path, purpose="batch-api", check=False)
            return uploaded.id

        return await retrying(
            upload_once,
            attempts=min(UPLOAD_ATTEMPTS, client_settings.max_retries() + 1),
            retry_if=_is_transient_upload_error,
            backoff=Backoff(UPLOAD_BACKOFF_SECONDS, UPLOAD_BACKOFF_SECONDS * 8),
        )

    async def create(self, chunk: Path, **new: Unpack[NewBatch]) -> str:
        file_id = new["file_id"]
        model = new["model"]
        endpoint = new["endpoint"]
        assert file_id is not None
        # One attempt: a retry of a creation that went unanswered could make a second batch;
        # the manager retries, after looking for the first (see AsyncExperimentManager).
        response = await self.client.with_options(max_retries=0).batches.create(
            input_file_id=file_id,
            endpoint=endpoint,  # type: ignore[arg-type]
            completion_window="24h",
            model_id=model,
        )
        job = job_of(response)
        assert job.id is not None, "Together answered the batch creation without a job id"
        self._request_totals[job.id] = await asyncio.to_thread(count_lines, chunk)
        return job.id

    async def find_batch(
        self, metadata: dict[str, str], hint: CreateHint | None = None
    ) -> str | None:
        # Together batch jobs carry no metadata, but each names its input file, which was
        # uploaded for this chunk alone and recorded before the creation started.
        if hint is None or hint.input_file_id is None:
            return None
        for job in await self.client.batches.list():
            if (
                job.input_file_id == hint.input_file_id
                and job.id is not None
                and job.id not in hint.exclude
            ):
                return job.id
        return None

    async def poll(self, ref: BatchRef) -> BatchSnapshot:
        job = job_of(await self.client.batches.retrieve(ref.batch_id))
        return snapshot_of(job, await self._request_total(ref))

    async def _request_total(self, ref: BatchRef) -> int | None:
        """From create() in this process, else once from the input file's validation report."""
        if ref.batch_id not in self._request_totals:
            self._request_totals[ref.batch_id] = await self._lines_in_file(ref.input_file_id)
        return self._request_totals[ref.batch_id]

    async def _lines_in_file(self, file_id: str | None) -> int | None:
        from together import NotFoundError

        if not file_id:
            return None
        try:
            stored = await self.client.files.retrieve(file_id)
        except NotFoundError:
            return None
        report = stored.validation_report
        return report.nlines if report is not None else None


Adapter = TogetherProvider
"""What the registry instantiates for this folder."""
