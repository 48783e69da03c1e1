"""Together's batch lines, pure: OpenAI's chat body without method or url, Together's limits on it,
a result line as a Result, a batch job as a BatchSnapshot."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from typing_extensions import Unpack

from batchling.errors import InputError
from batchling.models import ImagePart, RawRequest, RequestCounts, Result
from batchling.providers.base import BatchSnapshot, EncodeArgs
from batchling.providers.together import INFO
from batchling.providers.wire import openai_format

if TYPE_CHECKING:
    from together.types import BatchJob


CHAT = "/v1/chat/completions"


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


def encode_line(request: RawRequest, **line: Unpack[EncodeArgs]) -> dict[str, Any]:
    """One Together chat batch line: OpenAI's body, but no `method` or `url`."""
    custom_id, model, endpoint = line["custom_id"], line["model"], line["endpoint"]
    response_format = line.get("response_format")
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
    encoded = {
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
    size = len(json.dumps(encoded).encode())
    if size > MAX_LINE_BYTES:
        raise InputError(
            f"{name} is {size / 1e6:.1f} MB once encoded; Together takes at most "
            f"{MAX_LINE_BYTES // 1_000_000} MB a line (inline images included). "
            "Use smaller images or image URLs."
        )
    return encoded


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
        status=INFO.map_status(status),
        provider_status=status,
        counts=counts,
        output_file_id=job.output_file_id or None,
        error_file_id=job.error_file_id or None,
        errors=[job.error] if job.error else [],
    )
