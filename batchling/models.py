"""Domain models: what a user describes (requests, experiments) and what comes back (results)."""

from __future__ import annotations

import enum
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


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
    model_config = ConfigDict(extra="forbid")
    type: Literal["text"] = "text"
    text: str


class ImagePart(BaseModel):
    """An image given as an http(s) URL, a data URL, or a local file path."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["image"] = "image"
    url: str | None = None
    path: str | None = None
    detail: Literal["auto", "low", "high"] | None = None


ContentPart = TextPart | ImagePart


class RawMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
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


class RawRequest(BaseModel):
    """One request, the same for every provider. Provider adapters encode it into their format."""

    model_config = ConfigDict(extra="forbid")
    id: str | None = None
    system_prompt: str | None = None
    messages: list[RawMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, gt=0)
    temperature: float | None = Field(default=None, ge=0)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stop: list[str] | None = None
    seed: int | None = None

    @field_validator("id")
    @classmethod
    def _id_not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("id must not be blank")
        return value


class RequestCounts(BaseModel):
    total: int = 0
    completed: int = 0
    failed: int = 0


class Experiment(BaseModel):
    """A user's unit of work: a set of requests run on one provider and model."""

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

    @property
    def is_finished(self) -> bool:
        return self.status.is_terminal


class Usage(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0


ResultStatus = Literal["succeeded", "failed", "expired", "cancelled"]


class ResultError(BaseModel):
    kind: Literal["provider", "expired", "cancelled", "parse"] = "provider"
    message: str
    code: str | None = None


class Result(BaseModel):
    """One request's outcome, in the same shape whatever the provider."""

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
