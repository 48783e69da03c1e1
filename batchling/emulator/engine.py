"""Provider-neutral state of the emulator: stored files, batch lifecycles, knobs and faults.

Each provider module (openai.py, anthropic.py, ...) translates its wire protocol to and from
this engine; the engine never knows a provider's formats.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from starlette.responses import JSONResponse, Response

from batchling.emulator.answers import is_failure
from batchling.emulator.connection import (
    NoResponse,
    client_gone,
    drop_connection,
    read_request_body,
)
from batchling.emulator.ids import IdFormat
from batchling.emulator.recording import Exchange


class Phase(str, enum.Enum):
    VALIDATING = "validating"
    RUNNING = "running"
    FINALIZING = "finalizing"
    CANCELLING = "cancelling"
    COMPLETED = "completed"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in {Phase.COMPLETED, Phase.FAILED, Phase.EXPIRED, Phase.CANCELLED}


Outcome = str  # "succeeded" | "failed" | "expired" | "cancelled"


@dataclass
class EmulatorConfig:
    """The knobs. Change them on a running emulator through `Emulator.config`."""

    processing_seconds: float = 0.0
    """Time from batch creation to completion (validating, running, finalizing in between)."""
    failure_rate: float = 0.0
    """Fraction of requests answered with a per-request error (chosen by custom id and batch)."""
    expire_after_seconds: float | None = None
    """When set, a batch still running after this long ends expired; finished work is kept."""
    latency_seconds: float = 0.0
    """Added to every HTTP response."""
    cancel_seconds: float = 0.0
    """How long a batch stays `cancelling` before it is `cancelled`."""
    seed: int = 0
    invalid_json_rate: float = 0.0
    """Fraction of structured-output requests (chosen by custom id and batch) answered with
    broken JSON."""
    fixed_failures: bool = False
    """When True, failures and broken JSON are chosen by custom id alone, so the same requests
    fail in every batch and a retry never recovers them (for tests that pin which requests fail).
    By default each batch draws them anew, as a transient failure at a provider would."""
    enqueued_token_limit: int | None = None
    """Input tokens one model may have in unfinished batches. OpenAI: a batch that would go past
    it fails in validation with `token_limit_exceeded`; Gemini and Together refuse its creation
    with 429."""
    batch_limit: int | None = None
    """Gemini: unfinished batches a project may have ("concurrent batch requests"); one more
    is refused with 429 RESOURCE_EXHAUSTED."""
    queued_request_limit: int | None = None
    """Anthropic: requests of unfinished batches a workspace may have ("batch requests in
    processing queue"); a batch that would go past it is refused with 429 rate_limit_error."""
    file_processing_seconds: float = 0.0
    """Azure OpenAI: how long an uploaded file stays `pending` before it is `processed` (a batch
    is refused on a pending file)."""
    gemini_output_lag_polls: int | None = None
    """Gemini: polls of a batch just SUCCEEDED that still show no output. None: 1 poll for about
    half the batches (chosen by their first request's id), as the live service sometimes does."""


@dataclass
class Fault:
    """An injected fault at a lifecycle step (upload, create, poll, download, ...).

    `kind` is an HTTP status (429 with `retry_after`, 500, 503, ...), 'drop' (the TCP connection
    is closed without any response), 'slow' (the request waits `slow_seconds` before it is
    handled; if the client gave up meanwhile it is never handled, as behind a gateway timeout,
    unless `handle_abandoned`, as a server that finishes work nobody waits for any more) or
    'doctored' (step 'download' only: a batch's results file is served as `edit` returns its
    lines, each without its newline: provider output batchling must not trust).
    It hits the next `times` matching requests.
    """

    step: str
    kind: int | str
    times: int = 1
    provider: str | None = None
    retry_after: float = 0.1
    slow_seconds: float = 5.0
    handle_abandoned: bool = False
    edit: Callable[[list[bytes]], list[bytes]] | None = None


@dataclass
class StoredFile:
    id: str
    provider: str
    filename: str
    purpose: str
    path: Path
    bytes: int
    created_at: int
    extra: dict[str, Any] = field(default_factory=dict)

    def iter_lines(self) -> Iterator[dict[str, Any]]:
        with self.path.open("rb") as handle:
            for raw in handle:
                if raw.strip():
                    yield orjson.loads(raw)


@dataclass
class EmulatedBatch:
    id: str
    provider: str
    lines: Sequence[dict[str, Any]]
    custom_ids: list[str]
    created_at: float
    metadata: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    phase: Phase = Phase.VALIDATING
    cancel_requested_at: float | None = None
    ended_at: float | None = None
    outcomes: list[Outcome] = field(default_factory=list)
    output_file_id: str | None = None
    error_file_id: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    phase_times: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return len(self.lines)

    def counts(self) -> Counter[str]:
        return Counter(self.outcomes)


class EmulatorState:
    def __init__(self, config: EmulatorConfig | None = None, root: Path | None = None) -> None:
        self.config = config or EmulatorConfig()
        self._tmp = None if root else tempfile.TemporaryDirectory(prefix="batchling-emulator-")
        self.root = root or Path(self._tmp.name)  # type: ignore[union-attr]
        self.files: dict[str, StoredFile] = {}
        self.batches: dict[str, EmulatedBatch] = {}
        self.faults: list[Fault] = []
        self.calls: Counter[tuple[str, str]] = Counter()
        self.held: dict[str, asyncio.Event] = {}
        self.let_through: Counter[str] = Counter()
        """How many more requests of a held step pass before the hold applies."""
        self.in_flight = 0
        """Requests being handled right now, including those whose client has gone away."""
        self.recording: list[Exchange] | None = None
        """Every HTTP exchange served, while a list (see recording.Recorder)."""
        self._ids = itertools.count(1)
        self.clock: Callable[[], float] = time.time

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()

    def new_id(self, prefix: str | IdFormat) -> str:
        """A counter after `prefix`, or the id a provider's format makes of the counter."""
        if callable(prefix):
            return prefix(next(self._ids))
        return f"{prefix}{next(self._ids):06d}"

    # files

    def save_file(
        self,
        provider: str,
        content: bytes,
        *,
        filename: str,
        purpose: str,
        prefix: str | IdFormat = "file-",
        extra: dict[str, Any] | None = None,
    ) -> StoredFile:
        file_id = self.new_id(prefix)
        (self.root / file_id).write_bytes(content)
        return self._keep(file_id, provider, len(content), filename, purpose, extra or {})

    def write_jsonl(
        self,
        provider: str,
        lines: Iterable[dict[str, Any]],
        *,
        filename: str,
        purpose: str,
        prefix: str | IdFormat = "file-",
    ) -> StoredFile:
        """Stream the lines to a new stored file (never all in memory)."""
        file_id = self.new_id(prefix)
        path = self.root / file_id
        size = 0
        with path.open("wb", buffering=1024 * 1024) as handle:
            for line in lines:
                data = orjson.dumps(line) + b"\n"
                handle.write(data)
                size += len(data)
        return self._keep(file_id, provider, size, filename, purpose, {})

    def _keep(
        self,
        file_id: str,
        provider: str,
        size: int,
        filename: str,
        purpose: str,
        extra: dict[str, Any],
    ) -> StoredFile:
        """Record a file just written under root, as created now."""
        stored = StoredFile(
            id=file_id,
            provider=provider,
            filename=filename,
            purpose=purpose,
            path=self.root / file_id,
            bytes=size,
            created_at=int(self.clock()),
            extra=extra,
        )
        self.files[file_id] = stored
        return stored

    def get_file(self, provider: str, file_id: str) -> StoredFile | None:
        stored = self.files.get(file_id)
        return stored if stored is not None and stored.provider == provider else None

    def delete_file(self, provider: str, file_id: str) -> bool:
        stored = self.get_file(provider, file_id)
        if stored is None:
            return False
        del self.files[file_id]
        stored.path.unlink(missing_ok=True)
        return True

    # batches

    def create_batch(
        self,
        provider: str,
        lines: Sequence[dict[str, Any]],
        custom_ids: list[str],
        *,
        prefix: str | IdFormat = "batch_",
        metadata: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> EmulatedBatch:
        now = self.clock()
        batch = EmulatedBatch(
            id=self.new_id(prefix),
            provider=provider,
            lines=lines,
            custom_ids=custom_ids,
            created_at=now,
            metadata=metadata or {},
            extra=extra or {},
        )
        batch.phase_times[Phase.VALIDATING.value] = now
        self.batches[batch.id] = batch
        self.calls[(provider, "batch_created")] += 1
        return batch

    def get_batch(self, provider: str, batch_id: str) -> EmulatedBatch | None:
        batch = self.batches.get(batch_id)
        return batch if batch is not None and batch.provider == provider else None

    def list_batches(self, provider: str) -> list[EmulatedBatch]:
        return [b for b in self.batches.values() if b.provider == provider]

    def forget_batch(self, batch_id: str) -> None:
        """Lose a batch and its results, as a provider does past its retention or an emulator
        on restart: every call about them then answers 404."""
        batch = self.batches.pop(batch_id, None)
        if batch is not None:
            for file_id in (batch.output_file_id, batch.error_file_id):
                if file_id:
                    self.delete_file(batch.provider, file_id)

    def request_fails(self, batch: EmulatedBatch, custom_id: str) -> bool:
        """Whether this request of this batch is answered with an error (about failure_rate)."""
        return is_failure(
            self._draw_key(batch, custom_id), self.config.failure_rate, self.config.seed
        )

    def json_break_rate(self, batch: EmulatedBatch, custom_id: str) -> float:
        """1.0 when this request's structured answer in this batch is broken JSON, else 0.0: the
        rate the answer builders take, drawn here so that a retry draws again."""
        broken = is_failure(self._draw_key(batch, custom_id), self.config.invalid_json_rate, -1)
        return 1.0 if broken else 0.0

    def _draw_key(self, batch: EmulatedBatch, custom_id: str) -> str:
        return custom_id if self.config.fixed_failures else f"{batch.id}:{custom_id}"

    def request_cancel(self, batch: EmulatedBatch) -> None:
        if batch.phase.terminal or batch.cancel_requested_at is not None:
            return
        batch.cancel_requested_at = self.clock()
        self._set_phase(batch, Phase.CANCELLING)

    def fail_batch(self, batch: EmulatedBatch, errors: list[dict[str, Any]]) -> None:
        batch.errors = errors
        batch.outcomes = []
        self._end(batch, Phase.FAILED)

    def done_count(self, batch: EmulatedBatch, at: float | None = None) -> int:
        """How many requests have been processed at time `at` (linear over the running phase)."""
        seconds = self.config.processing_seconds
        if seconds <= 0:
            return batch.total
        elapsed = (at if at is not None else self.clock()) - batch.created_at
        fraction = min(1.0, max(0.0, (elapsed - 0.1 * seconds) / (0.8 * seconds)))
        return int(batch.total * fraction)

    def advance(self, batch: EmulatedBatch) -> Phase:
        """Move the batch along its lifecycle according to the clock and the knobs."""
        if batch.phase.terminal:
            return batch.phase
        now = self.clock()
        if batch.cancel_requested_at is not None:
            if now - batch.cancel_requested_at >= self.config.cancel_seconds:
                self._finish(
                    batch, Phase.CANCELLED, done=self.done_count(batch, batch.cancel_requested_at)
                )
            return batch.phase
        elapsed = now - batch.created_at
        seconds = self.config.processing_seconds
        expire_after = self.config.expire_after_seconds
        if (
            expire_after is not None
            and elapsed >= expire_after
            and (seconds <= 0 or expire_after < seconds)
        ):
            done = 0 if seconds <= 0 else self.done_count(batch, batch.created_at + expire_after)
            self._finish(batch, Phase.EXPIRED, done=done)
        elif elapsed >= seconds:
            self._finish(batch, Phase.COMPLETED, done=batch.total)
        elif elapsed >= 0.9 * seconds:
            self._set_phase(batch, Phase.FINALIZING)
        elif elapsed >= 0.1 * seconds:
            self._set_phase(batch, Phase.RUNNING)
        return batch.phase

    def _set_phase(self, batch: EmulatedBatch, phase: Phase) -> None:
        if batch.phase != phase:
            batch.phase = phase
            batch.phase_times.setdefault(phase.value, self.clock())

    def _finish(self, batch: EmulatedBatch, phase: Phase, *, done: int) -> None:
        unfinished = "cancelled" if phase == Phase.CANCELLED else "expired"
        batch.outcomes = [
            ("failed" if self.request_fails(batch, cid) else "succeeded")
            if index < done
            else unfinished
            for index, cid in enumerate(batch.custom_ids)
        ]
        self._end(batch, phase)

    def _end(self, batch: EmulatedBatch, phase: Phase) -> None:
        self._set_phase(batch, phase)
        batch.ended_at = self.clock()

    def served_path(self, provider: str, stored: StoredFile) -> Path:
        """The file to serve for a download of `stored`: a doctored copy of a batch's results
        while a 'doctored' fault is armed, else the file itself."""
        results = any(
            stored.id in (b.output_file_id, b.error_file_id) for b in self.batches.values()
        )
        for fault in self.faults:
            if (
                results
                and fault.kind == "doctored"
                and fault.edit is not None
                and fault.times > 0
                and fault.provider in (None, provider)
            ):
                fault.times -= 1
                lines = stored.path.read_bytes().splitlines()
                doctored = self.root / self.new_id(f"{stored.id}-doctored-")
                doctored.write_bytes(b"".join(line + b"\n" for line in fault.edit(lines)))
                return doctored
        return stored.path

    # faults and holds

    def inject(self, fault: Fault) -> None:
        self.faults.append(fault)

    async def before(self, provider: str, step: str) -> Response | None:
        """Called by every route first: counts the call, applies latency, holds and faults."""
        self.calls[(provider, step)] += 1
        if self.config.latency_seconds:
            await asyncio.sleep(self.config.latency_seconds)
        held = self.held.get(step)
        if held is not None and self.let_through[step] > 0:
            self.let_through[step] -= 1
        elif held is not None:
            await held.wait()
        for fault in self.faults:
            if fault.kind == "doctored":
                continue
            if fault.step == step and fault.times > 0 and fault.provider in (None, provider):
                fault.times -= 1
                if fault.kind == "drop":
                    return await drop_connection()
                if fault.kind == "slow":
                    if fault.handle_abandoned:
                        await read_request_body()
                    await asyncio.sleep(fault.slow_seconds)
                    return NoResponse() if client_gone() and not fault.handle_abandoned else None
                status = int(fault.kind)
                headers = {"retry-after": f"{fault.retry_after:g}"} if status == 429 else {}
                return JSONResponse(
                    {
                        "error": {
                            "message": f"Emulated fault {status} at {step}",
                            "type": "emulated_fault",
                            "code": str(status),
                        }
                    },
                    status_code=status,
                    headers=headers,
                )
        return None
