"""Together AI Batch API adapter (files + batches), through `together.AsyncTogether`."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from typing_extensions import Unpack

from batchling.models import RawRequest, Result
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
from batchling.providers.together.wire import (
    decode_line,
    encode_line,
    job_of,
    snapshot_of,
)

if TYPE_CHECKING:
    from together import AsyncTogether  # noqa: F401 -- the client type the base class is given


# The storage PUT of an upload goes through the SDK's bare httpx client, which never retries.
UPLOAD_ATTEMPTS = 4


UPLOAD_BACKOFF_SECONDS = 1.0


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
    sdk_client = "AsyncTogether"
    # Together's lines are not OpenAI's: no direct record of a chat line.
    decode_record = ProviderBase.decode_record

    def __init__(self, *, api_key: str, base_url: str | None = None) -> None:
        super().__init__(api_key=api_key, base_url=base_url)
        self._request_totals: dict[str, int | None] = {}

    def encode(self, request: RawRequest, **line: Unpack[EncodeArgs]) -> dict[str, Any]:
        return encode_line(request, **line)

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
