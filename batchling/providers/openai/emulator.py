"""OpenAI's files + batches protocol (PROTOCOL.md), served under /openai/v1."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, overload

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from batchling.emulator import answers, chat, direct, media
from batchling.emulator.engine import EmulatedBatch, EmulatorState, StoredFile
from batchling.emulator.routing import ProviderRoutes
from batchling.providers.openai_compatible import emulator as protocol

PROVIDER = "openai"
PREFIX = "/openai"
ENDPOINTS = {
    "/v1/chat/completions",
    "/v1/responses",
    "/v1/embeddings",
    "/v1/completions",
    "/v1/moderations",
}
DEFAULT_EMBEDDING_DIMENSIONS = 1536
# The published output sizes (https://platform.openai.com/docs/guides/embeddings).
EMBEDDING_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
MODERATION_CATEGORIES = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)


def exports(base: str) -> dict[str, str]:
    return {"OPENAI_BASE_URL": f"{base}{PREFIX}/v1", "OPENAI_API_KEY": "emulator-key"}


def file_object(stored: StoredFile) -> dict[str, Any]:
    return protocol.file_fields(stored) | {
        "status": "processed",
        "expires_at": stored.created_at + 30 * 86400,
        "status_details": None,
    }


def batch_object(state: EmulatorState, batch: EmulatedBatch) -> dict[str, Any]:
    obj = protocol.batch_fields(state, batch, status=protocol.STATUS[batch.phase]) | {
        "model": batch.extra.get("model"),
        "expires_at": int(batch.created_at) + 86400,
    }
    if batch.phase.terminal and batch.outcomes:
        obj["usage"] = batch.extra.get("usage")
    return obj


class StoredLines(Sequence[dict[str, Any]]):
    """The valid lines of an input file, read again from disk whenever iterated: a batch of a
    million requests is not held in memory."""

    def __init__(self, stored: StoredFile, custom_ids: list[str]) -> None:
        self.stored = stored
        self.custom_ids = custom_ids

    def __len__(self) -> int:
        return len(self.custom_ids)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        # Only iterated for batches whose every line was valid (others fail without output).
        return self.stored.iter_lines()

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[dict[str, Any]]: ...
    def __getitem__(self, index: int | slice) -> Any:
        lines = list(self)
        return lines[index]


ORGANIZATION = "org-emulator"
# Files API reference (https://platform.openai.com/docs/api-reference/files/create): "The Batch
# API only supports .jsonl files up to 200 MB in size"; the live refusal is a 400 "File is too
# large." (quoted in bespokelabsai/curator#111).
MAX_BATCH_FILE_BYTES = 200_000_000


WORDING = protocol.FileWording(
    too_many=lambda count, limit: (
        f"The batch input file holds {count:,} requests; a batch takes at most {limit:,}."
    )
)


def _line_problem(line: Any, endpoint: str, seen: set[str]) -> protocol.Problem | None:
    """(code, message, param) of a line that fails the batch, or None."""
    custom_id = line.get("custom_id") if isinstance(line, dict) else None
    if not isinstance(custom_id, str):
        return "missing_required_parameter", "Missing required parameter: 'custom_id'.", "custom_id"
    if custom_id in seen:
        return "duplicate_custom_id", f"The custom_id '{custom_id}' is duplicated.", "custom_id"
    if line.get("method") != "POST":
        return "invalid_value", "Only POST is supported.", "method"
    if line.get("url") != endpoint:
        message = f"The url '{line.get('url')}' does not match the batch endpoint '{endpoint}'."
        return "mismatched_url", message, "url"
    if not isinstance(line.get("body"), dict):
        return "missing_required_parameter", "Missing required parameter: 'body'.", "body"
    return None


def _validate_lines(
    stored: StoredFile, endpoint: str
) -> tuple[StoredLines, list[dict[str, Any]], str | None]:
    """(the valid lines, the errors, the first line's model), streaming through the file."""
    custom_ids: list[str] = []
    models: list[str | None] = []
    seen: set[str] = set()

    def accept(line: dict[str, Any], number: int) -> bool:
        seen.add(line["custom_id"])
        if not custom_ids:
            models.append(line["body"].get("model"))
        custom_ids.append(line["custom_id"])
        return True

    errors = protocol.file_errors(
        stored,
        lambda line: _line_problem(line, endpoint, seen),
        accept,
        wording=WORDING,
        loads=orjson.loads,
    )
    return StoredLines(stored, custom_ids), errors, models[0] if models else None


def enqueued_tokens(lines: Iterable[dict[str, Any]]) -> int:
    """The input tokens a batch enqueues, as the emulator counts prompts."""
    total = 0
    for line in lines:
        body = line.get("body") or {}
        if isinstance(body.get("messages"), list):
            total += chat.prompt_tokens(body["messages"])
        else:
            total += answers.count_tokens(json.dumps(body.get("input", "")))
    return total


def token_limit_error(model: str, limit: int) -> dict[str, Any]:
    # The live protocol.error as quoted in openai/openai-python#2084: a batch failed in validation.
    return {
        "code": "token_limit_exceeded",
        "line": None,
        "param": None,
        "message": f"Enqueued token limit reached for {model} in organization {ORGANIZATION}. "
        f"Limit: {limit:,} enqueued tokens. Please try again once some in_progress batches "
        "have been completed.",
    }


def moderation_body(body: dict[str, Any], *, custom_id: str) -> dict[str, Any]:
    """Nothing is ever flagged: one clean verdict per input text."""
    given = body.get("input")
    count = len(given) if isinstance(given, list) else 1
    verdict = {
        "flagged": False,
        "categories": dict.fromkeys(MODERATION_CATEGORIES, False),
        "category_scores": dict.fromkeys(MODERATION_CATEGORIES, 0.0),
        "category_applied_input_types": {name: ["text"] for name in MODERATION_CATEGORIES},
    }
    return {
        "id": chat.short_id("modr-", custom_id),
        "model": body.get("model"),
        "results": [verdict] * count,
    }


def responses_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON Schema of a Responses API `text: {"format": {"type": "json_schema", ...}}`."""
    text = body.get("text")
    fmt = text.get("format") if isinstance(text, dict) else None
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        return None
    schema = fmt.get("schema")
    return schema if isinstance(schema, dict) else None


def responses_body(
    body: dict[str, Any], *, custom_id: str, created: int, invalid_json_rate: float = 0.0
) -> dict[str, Any]:
    """A Response object with every field the OpenAPI spec requires."""
    prompt = body.get("input")
    text_in = prompt if isinstance(prompt, str) else chat.last_user_text(prompt or [])
    schema = responses_schema(body)
    if schema is not None:
        reply = answers.structured_reply(
            schema, custom_id=custom_id, invalid_json_rate=invalid_json_rate
        )
    else:
        reply = answers.reply_to(text_in)
    reply, truncated = answers.truncate_to_tokens(reply, body.get("max_output_tokens"))
    in_tokens = answers.count_tokens(str(body.get("instructions") or "")) + (
        answers.count_tokens(text_in)
        if isinstance(prompt, str)
        else chat.prompt_tokens([m for m in prompt or [] if isinstance(m, dict)])
    )
    out_tokens = answers.count_tokens(reply)
    text_part = {"type": "output_text", "text": reply, "annotations": [], "logprobs": []}
    return {
        "id": chat.short_id("resp_", custom_id),
        "object": "response",
        "created_at": created,
        "model": body.get("model"),
        "status": "incomplete" if truncated else "completed",
        "incomplete_details": {"reason": "max_output_tokens"} if truncated else None,
        "error": None,
        "instructions": body.get("instructions"),
        "metadata": body.get("metadata") or {},
        "temperature": body.get("temperature", 1.0),
        "top_p": body.get("top_p", 1.0),
        "max_output_tokens": body.get("max_output_tokens"),
        "reasoning": body.get("reasoning"),
        "tools": [],
        "tool_choice": "auto",
        "parallel_tool_calls": True,
        "text": body.get("text") or {"format": {"type": "text"}},
        "output": [
            {
                "type": "message",
                "id": chat.short_id("msg_", custom_id),
                "role": "assistant",
                "status": "incomplete" if truncated else "completed",
                "content": [text_part],
            }
        ],
        "usage": {
            "input_tokens": in_tokens,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": out_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": in_tokens + out_tokens,
        },
    }


def response_body(
    endpoint: str,
    body: dict[str, Any],
    *,
    custom_id: str,
    created: int,
    invalid_json_rate: float = 0.0,
) -> dict[str, Any]:
    if endpoint == "/v1/embeddings":
        inputs = body.get("input")
        inputs = inputs if isinstance(inputs, list) else [inputs]
        dims = body.get("dimensions") or answers.embedding_dimensions(
            body.get("model"), EMBEDDING_DIMENSIONS, DEFAULT_EMBEDDING_DIMENSIONS
        )
        tokens = sum(answers.count_tokens(str(text)) for text in inputs)
        return {
            "object": "list",
            "model": body.get("model"),
            "data": [
                {"object": "embedding", "index": i, "embedding": answers.embedding(str(text), dims)}
                for i, text in enumerate(inputs)
            ],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    if endpoint == "/v1/moderations":
        return moderation_body(body, custom_id=custom_id)
    if endpoint == "/v1/responses":
        return responses_body(
            body, custom_id=custom_id, created=created, invalid_json_rate=invalid_json_rate
        )
    answer = chat.chat_completion(
        body, custom_id=custom_id, created=created, invalid_json_rate=invalid_json_rate
    )
    # OpenAI's spec requires `refusal` on the message (ChatCompletionResponseMessage), null
    # when the model did not refuse.
    answer["choices"][0]["message"]["refusal"] = None
    return answer


# Embedding models that give vectors of one size only.
FIXED_SIZE_EMBEDDING_MODELS = frozenset({"text-embedding-ada-002"})


def invalid_parts(line: dict[str, Any]) -> str | None:
    url = line.get("url")
    body = line["body"]
    if url == "/v1/responses":
        return responses_problem(body)
    if url == "/v1/embeddings":
        return embeddings_problem(body)
    if url != "/v1/chat/completions":
        return None
    return protocol.chat_parts_problem(body, files=True)


def embeddings_problem(body: dict[str, Any]) -> str | None:
    dimensions = body.get("dimensions")
    if dimensions is None:
        return None
    if body.get("model") in FIXED_SIZE_EMBEDDING_MODELS:
        return "This model does not support specifying dimensions."
    if not isinstance(dimensions, int) or dimensions < 1:
        return f"Invalid value for 'dimensions' = {dimensions}. Must be a positive integer."
    return None


def render(state: EmulatorState, batch: EmulatedBatch) -> None:
    """Write the output and error files of a batch that just ended."""
    created = int(state.clock())
    endpoint = batch.extra["endpoint"]
    usage = {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
    # Parts the API would refuse: checked once, so both files agree (few, so held by index).
    refused = {
        index: problem
        for index, (line, outcome) in enumerate(zip(batch.lines, batch.outcomes, strict=True))
        if outcome == "succeeded" and (problem := invalid_parts(line)) is not None
    }

    # Both files are streamed to disk line by line; only the outcomes are held in memory.
    def output() -> Iterator[dict[str, Any]]:
        for index, (line, outcome) in enumerate(zip(batch.lines, batch.outcomes, strict=True)):
            if outcome != "succeeded" or index in refused:
                continue
            custom_id = line["custom_id"]
            body = response_body(
                endpoint,
                line["body"],
                custom_id=custom_id,
                created=created,
                invalid_json_rate=state.json_break_rate(batch, custom_id),
            )
            u = body.get("usage") or {}
            usage["input_tokens"] += u.get("prompt_tokens", u.get("input_tokens", 0))
            usage["output_tokens"] += u.get("completion_tokens", u.get("output_tokens", 0))
            yield {
                "id": f"batch_req_{batch.id}_{index}",
                "custom_id": custom_id,
                "response": {"status_code": 200, "request_id": f"req_{index}", "body": body},
                "error": None,
            }

    def failed() -> Iterator[dict[str, Any]]:
        for index, (custom_id, outcome) in enumerate(
            zip(batch.custom_ids, batch.outcomes, strict=True)
        ):
            if index in refused:
                body = chat.error_body(refused[index], code="invalid_value")
                yield {
                    "id": f"batch_req_{batch.id}_{index}",
                    "custom_id": custom_id,
                    "response": {"status_code": 400, "request_id": f"req_{index}", "body": body},
                    "error": None,
                }
            elif outcome != "succeeded":
                yield _failed_line(batch, index, custom_id, outcome)

    if any(
        outcome == "succeeded" and index not in refused
        for index, outcome in enumerate(batch.outcomes)
    ):
        batch.output_file_id = protocol.write_result_file(
            state, batch, "output", output(), prefix=protocol.file_id
        )
    if refused or any(outcome != "succeeded" for outcome in batch.outcomes):
        batch.error_file_id = protocol.write_result_file(
            state, batch, "error", failed(), prefix=protocol.file_id
        )
    usage["total_tokens"] = usage["input_tokens"] + usage["output_tokens"]
    batch.extra["usage"] = {
        **usage,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens_details": {"reasoning_tokens": 0},
    }


def _failed_line(batch: EmulatedBatch, index: int, custom_id: str, outcome: str) -> dict[str, Any]:
    base = {"id": f"batch_req_{batch.id}_{index}", "custom_id": custom_id}
    if outcome == "failed":
        body = chat.error_body(
            f"Emulated failure for request '{custom_id}'.",
            type_="server_error",
            code="emulated_failure",
        )
        return {
            **base,
            "response": {"status_code": 500, "request_id": f"req_{index}", "body": body},
            "error": None,
        }
    return {**base, "response": None, "error": protocol.not_run_error(outcome)}


def purpose_problem(purpose: object) -> str | None:
    """Any purpose is taken (fine-tune, vision, ...); only a missing one is refused."""
    if isinstance(purpose, str) and purpose:
        return None
    return "Missing required parameter: 'purpose'."


def routes(state: EmulatorState) -> list[Route]:
    served = ProviderRoutes(state, PROVIDER, render)

    def not_found(what: str) -> Response:
        message = "No such File object." if what == "File" else "No batch found with that id."
        return protocol.error(404, message, retry=False)

    refreshed = served.refreshed
    step = served.step

    async def create_batch(request: Request, payload: dict[str, Any], endpoint: str) -> Response:
        if payload.get("completion_window") != "24h":
            return protocol.error(
                400, "completion_window must be '24h'.", param="completion_window", retry=False
            )
        stored = state.get_file(PROVIDER, str(payload.get("input_file_id")))
        if stored is None:
            return protocol.missing_input_file(payload)
        metadata = payload.get("metadata") or {}
        if len(metadata) > 16:
            return protocol.error(
                400, "metadata may hold at most 16 pairs.", param="metadata", retry=False
            )
        lines, errors, model = _validate_lines(stored, endpoint)
        limit = state.config.enqueued_token_limit
        tokens = enqueued_tokens(lines) if limit is not None and not errors else 0
        if limit is not None and not errors:
            queued = sum(
                b.extra.get("enqueued_tokens", 0)
                for b in state.list_batches(PROVIDER)
                if b.extra.get("model") == model and not refreshed(b).phase.terminal
            )
            if queued + tokens > limit:
                errors = [token_limit_error(str(model), limit)]
                state.calls[(PROVIDER, "quota_refused")] += 1
        batch = protocol.new_batch(
            state,
            PROVIDER,
            lines,
            errors,
            custom_ids=lines.custom_ids,
            metadata=metadata,
            prefix=protocol.batch_id,
            extra={
                "endpoint": endpoint,
                "input_file_id": stored.id,
                "model": model,
                "enqueued_tokens": tokens,
            },
        )
        return JSONResponse(batch_object(state, batch))

    @step("list")
    async def list_files(request: Request) -> Response:
        limit = max(1, min(10_000, int(request.query_params.get("limit", 10_000))))
        after = request.query_params.get("after")
        purpose = request.query_params.get("purpose")
        files = sorted(
            (f for f in state.files.values() if f.provider == PROVIDER),
            key=lambda f: f.id,
            reverse=request.query_params.get("order", "desc") == "desc",
        )
        files = [f for f in files if not purpose or f.purpose == purpose]
        if after:
            ids = [f.id for f in files]
            files = files[ids.index(after) + 1 :] if after in ids else []
        page = [file_object(f) for f in files[:limit]]
        return protocol.list_page(page, has_more=len(files) > limit)

    return [
        *protocol.all_routes(
            served,
            "/v1",
            file_object=file_object,
            batch_object=batch_object,
            not_found=not_found,
            max_bytes=lambda request: MAX_BATCH_FILE_BYTES,
            file_prefix=protocol.file_id,
            list_files=list_files,
            endpoints=ENDPOINTS,
            create_batch=create_batch,
            purpose_problem=purpose_problem,
        ),
    ]


def _direct(endpoint: str) -> direct.Direct:
    needs = ("model", "messages") if endpoint == "/v1/chat/completions" else ("model",)
    return direct.Direct(
        PROVIDER,
        f"{PREFIX}{endpoint}",
        direct.bearer,
        lambda _, body: (
            direct.required(body, *needs) or invalid_parts({"url": endpoint, "body": body})
        ),
        lambda _, body, cid: response_body(endpoint, body, custom_id=cid, created=direct.now()),
        protocol.refusal,
    )


# The synchronous endpoints a capture passes calls to:
# https://platform.openai.com/docs/api-reference/chat/create (and .../chat-streaming,
# .../embeddings, .../responses, .../moderations).
DIRECT = tuple(
    _direct(endpoint)
    for endpoint in ("/v1/chat/completions", "/v1/embeddings", "/v1/responses", "/v1/moderations")
)


RESPONSES_EFFORTS = frozenset({"none", "minimal", "low", "medium", "high", "xhigh"})
# Chat-completions parameters a Responses API body refuses by name.
RESPONSES_UNKNOWN = ("stop", "seed", "max_tokens", "max_completion_tokens", "reasoning_effort")


def responses_problem(body: dict[str, Any]) -> str | None:
    """A Responses API body: its input parts (`input_text`, `input_image`, `input_file`) and
    generation parameters, with OpenAI's wording."""
    for name in RESPONSES_UNKNOWN:
        if name in body:
            return f"Unknown parameter: '{name}'."
    reasoning = body.get("reasoning")
    if reasoning is not None:
        effort = reasoning.get("effort") if isinstance(reasoning, dict) else None
        if effort not in RESPONSES_EFFORTS:
            supported = ", ".join(f"'{e}'" for e in sorted(RESPONSES_EFFORTS))
            return f"Invalid value: '{effort}'. Supported values are: {supported}."
    for i, j, part in media.content_parts(body.get("input")):
        problem = _responses_part_problem(part, f"input[{i}].content[{j}]")
        if problem is not None:
            return problem
    return None


def _responses_part_problem(part: Any, where: str) -> str | None:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "input_text":
        ok = isinstance(part.get("text"), str)
        return None if ok else f"Missing required parameter: '{where}.text'."
    if kind == "input_image":
        if part.get("file_id"):
            return None
        return media.image_url_problem(part.get("image_url"), f"{where}.image_url")
    if kind == "input_file":
        if part.get("file_id") or media.is_http(part.get("file_url")):
            return None
        return media.pdf_data_problem(part, where)
    supported = "'input_file', 'input_image', 'input_text'"
    return f"Invalid value: '{kind}'. Supported values are: {supported}."
