"""Checks of image and document parts as each provider receives them, with its own wording.

A provider runs a batch line and fails that one request when a part is malformed; the emulator
does the same, so tests see on the wire that parts arrive in the provider's own shape.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from typing import Any

IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
PDF = "application/pdf"
GEMINI_INLINE_TYPES = IMAGE_TYPES | {
    "image/heic",
    "image/heif",
    PDF,
    "text/plain",
    "text/html",
    "text/csv",
    "text/markdown",
    "audio/wav",
    "audio/mp3",
    "audio/mpeg",
    "video/mp4",
}
GEMINI_FILES_URL = "https://generativelanguage.googleapis.com/"
ANTHROPIC_MIN_THINKING_BUDGET = 1024
_DATA_URL = re.compile(r"^data:(?P<media_type>[^;,]+);base64,(?P<data>.*)$", re.S)


def is_base64(data: Any) -> bool:
    if not isinstance(data, str) or not data:
        return False
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def data_url_type(url: str) -> str | None:
    """The media type of a well-formed base64 data URL, else None."""
    match = _DATA_URL.match(url)
    if match is None or not is_base64(match["data"]):
        return None
    return match["media_type"]


def _is_http(url: Any) -> bool:
    return isinstance(url, str) and url.startswith(("http://", "https://"))


def _image_url_problem(url: Any, where: str) -> str | None:
    if _is_http(url):
        return None
    if not isinstance(url, str) or not url.startswith("data:"):
        return f"Invalid image URL: '{where}'. Expected a valid URL or a base64 data URL."
    media_type = data_url_type(url)
    if media_type not in IMAGE_TYPES:
        return (
            f"Invalid image URL: '{where}'. Expected a base64-encoded data URL with an image "
            f"MIME type (e.g. 'data:image/png;base64,aW1n'), but got "
            f"{repr(media_type) if media_type else 'a malformed data URL'}."
        )
    return None


def _content_parts(messages: Any) -> Iterator[tuple[int, int, Any]]:
    """Each part of each message's list `content`, after the message's and the part's index."""
    for i, message in enumerate(messages if isinstance(messages, list) else []):
        parts = message.get("content") if isinstance(message, dict) else None
        for j, part in enumerate(parts if isinstance(parts, list) else []):
            yield i, j, part


def _pdf_data_problem(file: dict[str, Any], where: str) -> str | None:
    """A file sent inline: a PDF data URL in `file_data`, with its `filename`."""
    if data_url_type(str(file.get("file_data", ""))) == PDF and file.get("filename"):
        return None
    return (
        f"Invalid file data: '{where}.file_data'. Expected a base64-encoded data URL with an "
        "application/pdf MIME type and a 'filename'."
    )


def openai_chat_problem(
    body: dict[str, Any], *, files: bool, documents: bool = False
) -> str | None:
    """OpenAI-style chat parts: `image_url` everywhere, `file` (PDF data) on OpenAI, and
    `document_url` on Mistral. The message is OpenAI's way of saying what is wrong."""
    allowed = {"text", "image_url"} | ({"file"} if files else set())
    allowed |= {"document_url"} if documents else set()
    for i, j, part in _content_parts(body.get("messages")):
        where = f"messages[{i}].content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in allowed:
            supported = ", ".join(f"'{k}'" for k in sorted(allowed))
            return f"Invalid value: '{kind}'. Supported values are: {supported}."
        problem = _openai_part_problem(part, kind, where)
        if problem is not None:
            return problem
    return None


def _openai_part_problem(part: dict[str, Any], kind: str, where: str) -> str | None:
    if kind == "text":
        ok = isinstance(part.get("text"), str)
        return None if ok else f"Missing required parameter: '{where}.text'."
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        return _image_url_problem(url, f"{where}.image_url.url")
    if kind == "file":
        found = part.get("file")
        file: dict[str, Any] = found if isinstance(found, dict) else {}
        return None if file.get("file_id") else _pdf_data_problem(file, f"{where}.file")
    url = part.get("document_url")
    if _is_http(url) or data_url_type(str(url)) == PDF:
        return None
    return f"Invalid document URL: '{where}.document_url'. Expected a URL or a PDF data URL."


RESPONSES_EFFORTS = frozenset({"none", "minimal", "low", "medium", "high", "xhigh"})
# Chat-completions parameters a Responses API body refuses by name.
RESPONSES_UNKNOWN = ("stop", "seed", "max_tokens", "max_completion_tokens", "reasoning_effort")


def openai_responses_problem(body: dict[str, Any]) -> str | None:
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
    for i, j, part in _content_parts(body.get("input")):
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
        return _image_url_problem(part.get("image_url"), f"{where}.image_url")
    if kind == "input_file":
        if part.get("file_id") or _is_http(part.get("file_url")):
            return None
        return _pdf_data_problem(part, where)
    supported = "'input_file', 'input_image', 'input_text'"
    return f"Invalid value: '{kind}'. Supported values are: {supported}."


def mistral_ocr_problem(body: dict[str, Any]) -> str | None:
    """A /v1/ocr body's `document`: an `image_url` or a `document_url` chunk (URL or data URL)."""
    document = body.get("document")
    kind = document.get("type") if isinstance(document, dict) else None
    if kind == "image_url":
        image = document.get("image_url") if isinstance(document, dict) else None
        url = image.get("url") if isinstance(image, dict) else image
        return _image_url_problem(url, "document.image_url")
    if kind == "document_url":
        url = document.get("document_url") if isinstance(document, dict) else None
        if _is_http(url) or data_url_type(str(url)) == PDF:
            return None
        return "Invalid document URL: 'document.document_url'. Expected a URL or a PDF data URL."
    if kind == "file":
        return None
    return f"Invalid value: '{kind}'. Supported values are: 'document_url', 'file', 'image_url'."


def anthropic_problem(params: dict[str, Any]) -> str | None:
    """Anthropic's image and document blocks, and its extended-thinking rules."""
    for i, j, block in _content_parts(params.get("messages")):
        problem = _anthropic_block_problem(block, f"messages.{i}.content.{j}")
        if problem is not None:
            return problem
    return _thinking_problem(params)


def _anthropic_block_problem(block: Any, where: str) -> str | None:
    kind = block.get("type") if isinstance(block, dict) else None
    if kind == "text":
        return None
    if kind not in ("image", "document"):
        return f"{where}.type: Input tag '{kind}' does not match any of the expected tags"
    found = block.get("source")
    source: dict[str, Any] = found if isinstance(found, dict) else {}
    source_type = source.get("type")
    if source_type == "url":
        return None if _is_http(source.get("url")) else f"{where}.source.url: invalid URL"
    if kind == "document" and source_type == "text":
        ok = source.get("media_type") == "text/plain" and isinstance(source.get("data"), str)
        return None if ok else f"{where}.source.text: expected media_type 'text/plain' and data"
    if source_type != "base64":
        return f"{where}.source.type: Input tag '{source_type}' does not match the expected tags"
    accepted = IMAGE_TYPES if kind == "image" else frozenset({PDF})
    if source.get("media_type") not in accepted:
        names = " or ".join(f"'{t}'" for t in sorted(accepted))
        return f"{where}.source.base64.media_type: Input should be {names}"
    if not is_base64(source.get("data")):
        return f"{where}.source.base64.data: The {kind} data is not valid base64."
    return None


def _thinking_problem(params: dict[str, Any]) -> str | None:
    thinking = params.get("thinking")
    if not isinstance(thinking, dict) or thinking.get("type") != "enabled":
        return None
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int) or budget < ANTHROPIC_MIN_THINKING_BUDGET:
        return (
            "thinking.enabled.budget_tokens: Input should be greater than or equal to "
            f"{ANTHROPIC_MIN_THINKING_BUDGET}"
        )
    if not isinstance(params.get("max_tokens"), int) or params["max_tokens"] <= budget:
        return "`max_tokens` must be greater than `thinking.budget_tokens`."
    if params.get("temperature") not in (None, 1):
        return "`temperature` may only be set to 1 when thinking is enabled."
    return None


def gemini_problem(request: dict[str, Any]) -> str | None:
    """Gemini's parts (one of text, inlineData, fileData each) and its thinking config."""
    for i, content in enumerate(request.get("contents") or []):
        parts = content.get("parts") if isinstance(content, dict) else None
        for j, part in enumerate(parts if isinstance(parts, list) else []):
            problem = _gemini_part_problem(part, f"contents[{i}].parts[{j}]")
            if problem is not None:
                return problem
    config = request.get("generationConfig") or {}
    thinking = config.get("thinkingConfig") if isinstance(config, dict) else None
    if isinstance(thinking, dict) and "thinkingBudget" in thinking and "thinkingLevel" in thinking:
        return "You can only set only one of thinking budget and thinking level."
    return None


def _gemini_part_problem(part: Any, where: str) -> str | None:
    if not isinstance(part, dict):
        return f"Invalid JSON payload received. '{where}' must be an object."
    inline = part.get("inlineData", part.get("inline_data"))
    file_data = part.get("fileData", part.get("file_data"))
    if isinstance(inline, dict):
        mime = inline.get("mimeType", inline.get("mime_type"))
        if not is_base64(inline.get("data")):
            return (
                f"Invalid value at '{where}.inline_data.data' (TYPE_BYTES), Base64 decoding failed."
            )
        if mime not in GEMINI_INLINE_TYPES:
            return f"Unsupported MIME type: {mime}"
    elif isinstance(file_data, dict):
        uri = file_data.get("fileUri", file_data.get("file_uri"))
        if not isinstance(uri, str) or not uri.startswith(GEMINI_FILES_URL):
            return f"Invalid or unsupported file uri: {uri}"
        if not file_data.get("mimeType", file_data.get("mime_type")):
            return f"* GenerateContentRequest.{where}.file_data.mime_type: mime_type is required"
    elif not isinstance(part.get("text"), str):
        return (
            f"* GenerateContentRequest.{where}.data: required oneof field 'data' must have one "
            "initialized field"
        )
    return None
