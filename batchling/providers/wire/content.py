"""Image and document parts resolved to what a provider can carry: a remote URL or base64 bytes.

Pure apart from reading a local `path`, which happens here, when the request is encoded.
Every error names the request and the part (`messages[i].content[j]`) and says what to do.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import mimetypes
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from batchling.errors import InputError
from batchling.models import ContentPart, DocumentPart, ImagePart, MediaPart, TextPart

PDF = "application/pdf"
PLAIN_TEXT = "text/plain"
# What OpenAI, Anthropic, Groq, Mistral and Together all take as images.
COMMON_IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
_DATA_URL = re.compile(r"^data:(?P<media_type>[^;,]*)(?P<params>(;[^;,]*)*),(?P<payload>.*)$", re.S)

PartEncoder = Callable[[MediaPart, str], dict[str, Any]]


@dataclass(frozen=True)
class Media:
    """One image or document, either at a remote `url` or as base64 `data`."""

    kind: str
    media_type: str | None
    url: str | None = None
    data: str | None = None
    filename: str | None = None

    @property
    def is_remote(self) -> bool:
        return self.url is not None

    @property
    def data_url(self) -> str:
        return f"data:{self.media_type};base64,{self.data}"


def request_name(request_id: str | None, custom_id: str) -> str:
    return f"Request '{request_id or custom_id}'"


def part_where(name: str, message_index: int, part_index: int) -> str:
    return f"{name}, messages[{message_index}].content[{part_index}]"


def resolve(part: MediaPart, where: str) -> Media:
    """The part's bytes (base64) or remote URL, and its media type; a local file is read here."""
    kind = part.type
    if part.path:
        media = _from_path(part, where)
    elif part.data:
        media = Media(kind, part.media_type, data=_checked_base64(part.data, where))
    else:
        media = _from_url(part, str(part.url), where)
    if isinstance(part, DocumentPart) and part.filename:
        media = dataclasses.replace(media, filename=part.filename)
    if (
        isinstance(part, ImagePart)
        and media.media_type
        and not media.media_type.startswith("image/")
    ):
        raise InputError(
            f"{where}: an image part holds '{media.media_type}', not an image. Give documents "
            'as {"type": "document", ...}.'
        )
    return media


def _from_path(part: MediaPart, where: str) -> Media:
    path = Path(str(part.path)).expanduser()
    if not path.is_file():
        raise InputError(
            f"{where}: {part.type} file not found: {path}. Fix the 'path' (relative paths are "
            "read from the current directory)."
        )
    media_type = part.media_type or mimetypes.guess_type(path.name)[0]
    if media_type is None:
        raise InputError(
            f"{where}: cannot tell the type of {path} from its name. Set 'media_type' "
            "(such as image/png or application/pdf)."
        )
    data = base64.b64encode(path.read_bytes()).decode()
    return Media(part.type, media_type, data=data, filename=path.name)


def _from_url(part: MediaPart, url: str, where: str) -> Media:
    if url.startswith("data:"):
        match = _DATA_URL.match(url)
        if match is None:
            raise InputError(f"{where}: malformed data URL (expected data:<type>;base64,<data>).")
        params = match["params"].split(";")
        payload = match["payload"]
        if "base64" in params:
            payload = _checked_base64(payload, where)
        else:
            payload = base64.b64encode(urllib.parse.unquote_to_bytes(payload)).decode()
        media_type = part.media_type or match["media_type"]
        if not media_type:
            raise InputError(f"{where}: the data URL names no type; set 'media_type'.")
        return Media(part.type, media_type, data=payload)
    if not url.startswith(("http://", "https://")):
        raise InputError(
            f"{where}: '{url[:80]}' is neither an http(s) URL nor a data URL. Give a local file "
            "as 'path' instead."
        )
    name = PurePosixPath(urllib.parse.urlparse(url).path).name or None
    return Media(part.type, part.media_type or _remote_type(name), url=url, filename=name)


def _remote_type(name: str | None) -> str | None:
    """A URL's type from its extension, when that names an image or a document: a page like
    `image.php?id=3` says nothing of what it serves."""
    guessed = mimetypes.guess_type(name)[0] if name else None
    if guessed and (guessed.startswith("image/") or guessed in (PDF, PLAIN_TEXT)):
        return guessed
    return None


def _checked_base64(data: str, where: str) -> str:
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InputError(
            f"{where}: the data is not valid base64. Check 'data' (or the data URL)."
        ) from None
    return data


def require_type(media: Media, accepted: frozenset[str], *, provider: str, where: str) -> None:
    """Refuse a known media type the provider does not take (a remote URL's may be unknown)."""
    if media.media_type is None or media.media_type in accepted:
        return
    raise InputError(
        f"{where}: {provider} does not take {media.kind}s of type '{media.media_type}'. "
        f"Convert it to one of: {', '.join(sorted(accepted))}."
    )


def unsupported(part: MediaPart, *, provider: str, where: str) -> InputError:
    return InputError(
        f"{where}: {provider} batches take no {part.type} parts. Remove it, or use a provider "
        "that takes them (see the README's multimodal table)."
    )


def encode_parts(
    parts: list[ContentPart],
    message_index: int,
    *,
    name: str,
    text: Callable[[TextPart], dict[str, Any]],
    media: PartEncoder,
) -> list[dict[str, Any]]:
    """A message's parts in order, text and media each through the provider's encoder."""
    return [
        text(part)
        if isinstance(part, TextPart)
        else media(part, part_where(name, message_index, index))
        for index, part in enumerate(parts)
    ]
