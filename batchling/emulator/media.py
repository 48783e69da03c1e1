"""Provider-neutral pieces of the emulators' checks of image and document parts: base64, data
URLs, image URLs and inline PDFs. Each provider's own part checks, with its own wording, live in
its folder's `emulator.py`.

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


def is_http(url: Any) -> bool:
    return isinstance(url, str) and url.startswith(("http://", "https://"))


def is_document_url(url: Any) -> bool:
    """A remote URL or a PDF data URL."""
    return is_http(url) or data_url_type(str(url)) == PDF


def image_url_problem(url: Any, where: str) -> str | None:
    if is_http(url):
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


def content_parts(messages: Any) -> Iterator[tuple[int, int, Any]]:
    """Each part of each message's list `content`, after the message's and the part's index."""
    for i, message in enumerate(messages if isinstance(messages, list) else []):
        parts = message.get("content") if isinstance(message, dict) else None
        for j, part in enumerate(parts if isinstance(parts, list) else []):
            yield i, j, part


def pdf_data_problem(file: dict[str, Any], where: str) -> str | None:
    """A file sent inline: a PDF data URL in `file_data`, with its `filename`."""
    if data_url_type(str(file.get("file_data", ""))) == PDF and file.get("filename"):
        return None
    return (
        f"Invalid file data: '{where}.file_data'. Expected a base64-encoded data URL with an "
        "application/pdf MIME type and a 'filename'."
    )
