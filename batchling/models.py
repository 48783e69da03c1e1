"""Domain models: what a user describes (requests, experiments) and what comes back (results)."""

from __future__ import annotations

import enum
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictInt,
    Tag,
    field_validator,
    model_validator,
)
from typing_extensions import Self

from batchling.bounds import INT32_MAX, INT64_MAX, INT64_MIN


class Status(str, enum.Enum):
    """The common status vocabulary, shared by experiments and batches of every provider."""

    CREATED = "created"
    SUBMITTING = "submitting"
    VALIDATING = "validating"
    QUEUED = "queued"
    RUNNING = "running"
    FINALIZING = "finalizing"
    CANCELLING = "cancelling"
    COMPLETED = "completed"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES

    def __str__(self) -> str:
        return self.value


TERMINAL_STATUSES = frozenset({Status.COMPLETED, Status.FAILED, Status.EXPIRED, Status.CANCELLED})


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)
    type: Literal["text"] = "text"
    text: str


class _MediaPart(BaseModel):
    """Bytes given one of three ways: `url` (http(s) or a data URL), a local `path` (read and
    base64-encoded when the request is encoded), or base64 `data` with its `media_type`."""

    model_config = ConfigDict(extra="forbid", defer_build=True)
    url: str | None = None
    path: str | None = None
    data: str | None = None
    media_type: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        given = [name for name in ("url", "path", "data") if getattr(self, name)]
        if len(given) != 1:
            raise ValueError(
                f"{self.type_name()} part needs exactly one of 'url', 'path' or 'data'"
                + (f", got {' and '.join(given)}" if given else "")
            )
        if self.data and not self.media_type:
            raise ValueError(f"{self.type_name()} part with 'data' needs its 'media_type'")
        return self

    @classmethod
    def type_name(cls) -> str:
        """'an image' or 'a document', for messages."""
        name = str(cls.model_fields["type"].default)
        return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


class ImagePart(_MediaPart):
    """An image given as an http(s) URL, a data URL, a local file path, or base64 data."""

    type: Literal["image"] = "image"
    detail: Literal["auto", "low", "high"] | None = None


class DocumentPart(_MediaPart):
    """A document (a PDF, or plain text where the provider takes it), given like an image."""

    type: Literal["document"] = "document"
    filename: str | None = None


def _part_type(value: Any) -> str:
    """A part's `type`; a dict without one is text when it has 'text', else an image."""
    if isinstance(value, dict):
        return str(value.get("type") or ("text" if "text" in value else "image"))
    return str(getattr(value, "type", ""))


ContentPart = Annotated[
    Annotated[TextPart, Tag("text")]
    | Annotated[ImagePart, Tag("image")]
    | Annotated[DocumentPart, Tag("document")],
    Discriminator(_part_type),
]
MediaPart = ImagePart | DocumentPart


class RawMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)
    role: Literal["system", "user", "assistant"]
    content: str | list[ContentPart] = Field(union_mode="left_to_right")

    @field_validator("content")
    @classmethod
    def _content_not_empty(cls, value: str | list[ContentPart]) -> str | list[ContentPart]:
        if isinstance(value, list) and not value:
            raise ValueError("content must not be an empty list")
        return value

    def text(self) -> str:
        """The message's text, with the text parts joined."""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(part.text for part in self.content if isinstance(part, TextPart))


ReasoningLevel = Literal["low", "medium", "high"]
MAX_TEMPERATURE = 2.0


class GenerationParams(BaseModel):
    """How to generate: on a request, or as an experiment's defaults for all its requests.

    `reasoning` is a level ("low", "medium", "high") or a thinking budget in tokens; each
    provider adapter maps it (README, "Multimodal inputs and generation parameters").
    `dimensions` and `task_type` apply to embeddings endpoints (README, "Endpoints beyond chat")."""

    # Bounded so that every provider's JSON and SQLite can hold them (issue 17, class 5).
    model_config = ConfigDict(extra="forbid", defer_build=True, allow_inf_nan=False)
    max_tokens: int | None = Field(default=None, gt=0, le=INT32_MAX)
    temperature: float | None = Field(default=None, ge=0, le=MAX_TEMPERATURE)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stop: list[str] | None = None
    seed: int | None = Field(default=None, ge=INT64_MIN, le=INT64_MAX)
    reasoning: ReasoningLevel | Annotated[StrictInt, Field(ge=0, le=INT32_MAX)] | None = None
    # Embeddings only: the vector size, and the task the vector is for (Gemini).
    dimensions: int | None = Field(default=None, gt=0, le=INT32_MAX)
    task_type: str | None = Field(default=None, min_length=1)

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_as_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("stop")
    @classmethod
    def _stop_not_empty(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not all(value):
            raise ValueError("stop sequences must not be empty strings")
        return value


GENERATION_FIELDS = tuple(GenerationParams.model_fields)


class RawRequest(GenerationParams):
    """One request, the same for every provider. Provider adapters encode it into their format."""

    id: str | None = None
    system_prompt: str | None = None
    messages: list[RawMessage] = Field(min_length=1)

    def with_defaults(self, defaults: GenerationParams | None) -> RawRequest:
        """This request, with each generation setting it leaves unset taken from `defaults`."""
        if defaults is None:
            return self
        unset = {
            name: getattr(defaults, name)
            for name in GENERATION_FIELDS
            if getattr(self, name) is None and getattr(defaults, name) is not None
        }
        return self.model_copy(update=unset) if unset else self

    @field_validator("id")
    @classmethod
    def _id_not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("id must not be blank")
        return value


class RequestCounts(BaseModel):
    model_config = ConfigDict(defer_build=True)

    total: int = 0
    completed: int = 0
    failed: int = 0


class Experiment(BaseModel):
    """A user's unit of work: a set of requests run on one provider and model."""

    model_config = ConfigDict(defer_build=True)

    name: str
    title: str | None = None
    description: str | None = None
    provider: str
    model: str
    endpoint: str
    base_url: str | None = None
    status: Status = Status.CREATED
    provider_status: str | None = None
    request_counts: RequestCounts = Field(default_factory=RequestCounts)
    batch_count: int = 0
    processed_file_path: Path
    results_file_path: Path
    error: str | None = None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None
    study: str | None = None

    @property
    def is_finished(self) -> bool:
        return self.status.is_terminal


class Usage(BaseModel):
    model_config = ConfigDict(defer_build=True)

    input_tokens: int = 0
    output_tokens: int = 0


ResultStatus = Literal["succeeded", "failed", "expired", "cancelled"]


class ResultError(BaseModel):
    model_config = ConfigDict(defer_build=True)

    kind: Literal["provider", "expired", "cancelled", "parse"] = "provider"
    message: str
    code: str | None = None


class Result(BaseModel):
    """One request's outcome, in the same shape whatever the provider."""

    model_config = ConfigDict(defer_build=True)

    custom_id: str
    status: ResultStatus
    text: str | None = None
    parsed: Any = None
    embedding: list[float] | None = None
    usage: Usage | None = None
    error: ResultError | None = None
    raw: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"


class BatchRecord(BaseModel):
    """One chunk of an experiment and what the provider said of it, as stored locally."""

    model_config = ConfigDict(defer_build=True)

    chunk: int
    path: Path
    request_count: int
    bytes: int
    step: str = "pending"
    file_id: str | None = None
    batch_id: str | None = None
    status: Status = Status.CREATED
    provider_status: str | None = None
    completed: int = 0
    failed: int = 0
    output_file_id: str | None = None
    error_file_id: str | None = None
    errors: list[str] = Field(default_factory=list)
    results_stored: bool = False
    attempt: int = 1
    """1 for the first run, then one more for each retry."""
    updated_at: datetime | None = None
    """When the row last changed: while a step is in progress, when that step started."""
    warnings: list[str] = Field(default_factory=list)
    """Result lines its download ignored: unreadable, for no request of this batch, repeated."""
