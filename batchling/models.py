"""Domain models: what a user describes (requests, experiments) and what comes back (results)."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

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

# Re-exported: Status lives apart so that reading a provider's data imports no pydantic.
from batchling.status import TERMINAL_STATUSES as TERMINAL_STATUSES
from batchling.status import Status as Status

M = TypeVar("M", bound=BaseModel)


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


_DICT = BaseModel.__dict__["__dict__"]
_FIELDS_SET = BaseModel.__dict__["__pydantic_fields_set__"]
_EXTRA = BaseModel.__dict__["__pydantic_extra__"]
_PRIVATE = BaseModel.__dict__["__pydantic_private__"]


def _set_fields(model: BaseModel, values: dict[str, Any], given: set[str]) -> None:
    """What pydantic's __init__ leaves on an instance, for input already known to be valid."""
    _DICT.__set__(model, values)
    _FIELDS_SET.__set__(model, given)
    _EXTRA.__set__(model, None)
    _PRIVATE.__set__(model, None)


class SharedFieldNames(set[str]):
    """The fields set of every model the fast paths build with the same fields (requests, and
    results read back): one object for all of them, not a set each (~200-700 bytes), so the
    cyclic GC has fewer objects to scan as a list of them grows. Never changed in place: a
    model copies it before pydantic adds a field to it (`_unshared_setattr`); copies and
    pickles of it are plain sets."""

    def _in_place(self, *args: Any) -> Any:
        raise TypeError("the fields set of a request is shared: assign the field instead")

    add = update = discard = remove = pop = clear = _in_place
    intersection_update = difference_update = symmetric_difference_update = _in_place
    __ior__ = __iand__ = __isub__ = __ixor__ = _in_place

    def __copy__(self) -> set[str]:
        return set(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> set[str]:
        return set(self)

    def __reduce__(self) -> tuple[Any, ...]:
        return (set, (list(self),))


_SHARED_FIELDS: dict[frozenset[str], SharedFieldNames] = {}


def _shared_field_names(names: Iterable[str]) -> SharedFieldNames:
    key = frozenset(names)
    found = _SHARED_FIELDS.get(key)
    if found is None:
        found = _SHARED_FIELDS[key] = SharedFieldNames(key)
    return found


def _unshared_setattr(model: BaseModel, name: str, value: Any) -> None:
    """pydantic's __setattr__, on a fields set of the model's own (it adds `name` to it)."""
    given = _FIELDS_SET.__get__(model)
    if type(given) is SharedFieldNames:
        _FIELDS_SET.__set__(model, set(given))
    BaseModel.__setattr__(model, name, value)


ROLES = frozenset({"system", "user", "assistant"})


class RawMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)
    role: Literal["system", "user", "assistant"]
    content: str | list[ContentPart] = Field(union_mode="left_to_right")

    if not TYPE_CHECKING:
        # Type checkers keep the signature pydantic declares for the fields.

        def __init__(self, /, **data: Any) -> None:
            # A text message (nearly every one) is valid when these hold, and checking them
            # here is cheaper than pydantic's validator. Anything else gets it, with its errors.
            role, content = data.get("role"), data.get("content")
            if len(data) == 2 and type(role) is str and role in ROLES and type(content) is str:
                _set_fields(self, {"role": role, "content": content}, _MESSAGE_FIELDS_SET)
            else:
                super().__init__(**data)

        __setattr__ = _unshared_setattr

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

    if not TYPE_CHECKING:
        __setattr__ = _unshared_setattr

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

    if not TYPE_CHECKING:

        def __init__(self, /, **data: Any) -> None:
            # Text-only requests with an id, a system prompt and max_tokens are checked here
            # (cheaper than pydantic's validator); any other shape, valid or not, gets it.
            if data.keys() <= _PLAIN_REQUEST_FIELDS:
                messages = _plain_messages(data.get("messages"))
                request_id = data.get("id")
                system = data.get("system_prompt")
                max_tokens = data.get("max_tokens")
                if (
                    messages is not None
                    and (request_id is None or (type(request_id) is str and request_id.strip()))
                    and (system is None or type(system) is str)
                    and (
                        max_tokens is None
                        or (type(max_tokens) is int and 0 < max_tokens <= INT32_MAX)
                    )
                ):
                    values = {**_REQUEST_DEFAULTS, **data}
                    values["messages"] = messages
                    _set_fields(self, values, _shared_field_names(data))
                    return
            super().__init__(**data)

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


_PLAIN_REQUEST_FIELDS = frozenset({"id", "system_prompt", "messages", "max_tokens"})
# Every field in declaration order (the order pydantic's __init__ leaves them in).
_REQUEST_DEFAULTS = {
    name: None if name == "messages" else field.default
    for name, field in RawRequest.model_fields.items()
}


def _plain_messages(value: Any) -> list[RawMessage] | None:
    """A new list of the messages when every one is a text message (a RawMessage or its dict),
    else None."""
    if type(value) is not list or not value:
        return None
    messages = []
    for item in value:
        if type(item) is RawMessage:
            if type(item.content) is not str:
                return None
            messages.append(item)
        elif type(item) is dict and item.keys() == _MESSAGE_FIELDS:
            role, content = item["role"], item["content"]
            if type(role) is not str or role not in ROLES or type(content) is not str:
                return None
            messages.append(RawMessage(**item))
        else:
            return None
    return messages


_MESSAGE_FIELDS = frozenset({"role", "content"})
_MESSAGE_FIELDS_SET = _shared_field_names(_MESSAGE_FIELDS)


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

    if not TYPE_CHECKING:
        __setattr__ = _unshared_setattr

    input_tokens: int = 0
    output_tokens: int = 0


ResultStatus = Literal["succeeded", "failed", "expired", "cancelled"]


class ResultError(BaseModel):
    model_config = ConfigDict(defer_build=True)

    if not TYPE_CHECKING:
        __setattr__ = _unshared_setattr

    kind: Literal["provider", "expired", "cancelled", "parse"] = "provider"
    message: str
    code: str | None = None


class Result(BaseModel):
    """One request's outcome, in the same shape whatever the provider."""

    model_config = ConfigDict(defer_build=True)

    if not TYPE_CHECKING:
        __setattr__ = _unshared_setattr

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

    @property
    def answer(self) -> Any:
        """The answer: `parsed` with a response format, the embedding of an embeddings request,
        else the text (None for a failed request)."""
        if self.parsed is not None:
            return self.parsed
        if self.embedding is not None:
            return self.embedding
        return self.text

    @property
    def provider_id(self) -> str | None:
        """The provider's own id for this answer, when its line has one (OpenAI's `batch_req_...`)."""
        value = self.raw.get("id") if self.raw else None
        return value if isinstance(value, str) else None

    def __getitem__(self, key: str) -> Any:
        """Read access as a dict, as batchling 0.0.x results were read: `r["custom_id"]`,
        `r["id"]` (`provider_id`), `r["result"]` (`answer`), or any field by its name."""
        if key == "result":
            return self.answer
        if key == "id":
            return self.provider_id
        if key in type(self).model_fields:
            return getattr(self, key)
        raise KeyError(key)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (`json.dumps` takes them): `id`, `custom_id`, `result`, then every
        field (`parsed` of a response class as its JSON)."""
        return {
            "id": self.provider_id,
            "custom_id": self.custom_id,
            "result": _json_value(self.answer),
            **self.model_dump(mode="json"),
        }


def _json_value(value: Any) -> Any:
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else value


def stored(cls: type[M], values: dict[str, Any]) -> M:
    """A model from values known to be valid (read back from the store), every field given:
    what pydantic's __init__ would leave, without validating them again."""
    model = cls.__new__(cls)
    _set_fields(model, values, _shared_field_names(values))
    return model


class SubmitStep(enum.StrEnum):
    """How far the submission of one batch got: recorded before each provider call, so a run
    that died mid-way resumes from the step it was in (see resume.py)."""

    PENDING = "pending"
    UPLOADING = "uploading"
    UPLOADED = "uploaded"
    CREATING = "creating"
    SUBMITTED = "submitted"


class BatchRecord(BaseModel):
    """One chunk of an experiment and what the provider said of it, as stored locally."""

    model_config = ConfigDict(defer_build=True)

    chunk: int
    path: Path
    request_count: int
    bytes: int
    step: SubmitStep = SubmitStep.PENDING
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
