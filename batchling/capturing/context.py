"""`batchling.capture(...)`: the context inside which SDK calls are batched."""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import math
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Literal

from batchling.bounds import check_name
from batchling.capturing import intercept
from batchling.capturing.engine import CaptureEngine, CaptureSettings
from batchling.errors import ConfigurationError, DryRun

if TYPE_CHECKING:
    from batchling.progress import WatchDisplay

DEFAULT_WINDOW_SECONDS = 2.0
DEFAULT_POLL_INTERVAL = 2.0


class capture:
    """Batch the SDK calls made inside it: `async with batchling.capture("labels-v1"):` around
    `asyncio.gather(...)`, or `with batchling.capture("labels-v1"):` around thread fan-out.

    Each batchable call (chat, messages, generateContent, embeddings, responses...) of the six
    official SDKs is queued per (provider, endpoint, model) and flushed as one batch of an
    experiment in the study `name`, after `window_seconds` or at `batch_size` requests; the
    call returns the SDK's own response built from its batch result. Every request is recorded
    first: running the same code again re-attaches (answered calls return at once, submitted
    ones wait for their batch); `cache=False` sends them again.
    `dry_run=True` sends nothing: calls raise DryRun, whose `plan` has the count and cost
    estimate. `max_cost` (USD) refuses calls whose estimated cost would go above it.
    `deadline` (seconds from now, or a datetime): calls still waiting then raise the SDK's
    error (HTTP 408), or with `on_deadline="sync"` are sent directly, at full price.
    Streaming calls are refused with a clear error, or sent directly with
    `stream="passthrough"`."""

    def __init__(
        self,
        name: str,
        *,
        batch_size: int | None = None,
        window_seconds: float = DEFAULT_WINDOW_SECONDS,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        cache: bool = True,
        dry_run: bool = False,
        max_cost: float | None = None,
        deadline: float | datetime | None = None,
        on_deadline: Literal["raise", "sync"] = "raise",
        stream: Literal["error", "passthrough"] = "error",
        progress: bool = True,
        db_path: str | Path | None = None,
    ) -> None:
        check_name(name, "Capture name")
        if batch_size is not None and batch_size < 1:
            raise ConfigurationError(f"batch_size must be at least 1, got {batch_size}.")
        for label, value in (("window_seconds", window_seconds), ("poll_interval", poll_interval)):
            if not (math.isfinite(value) and value >= 0):
                raise ConfigurationError(f"{label} must be a number of seconds >= 0, got {value}.")
        if on_deadline not in ("raise", "sync"):
            raise ConfigurationError(f"on_deadline must be 'raise' or 'sync', got {on_deadline!r}.")
        if stream not in ("error", "passthrough"):
            raise ConfigurationError(f"stream must be 'error' or 'passthrough', got {stream!r}.")
        if max_cost is not None and not (math.isfinite(max_cost) and max_cost >= 0):
            raise ConfigurationError(f"max_cost must be a number of USD >= 0, got {max_cost}.")
        self.name = name
        self._deadline = deadline
        self._show_progress = progress
        self._settings = CaptureSettings(
            name=name,
            db_path=Path(db_path).expanduser() if db_path else None,
            batch_size=batch_size,
            window_seconds=window_seconds,
            poll_interval=poll_interval,
            cache=cache,
            dry_run=dry_run,
            max_cost=max_cost,
            on_deadline=on_deadline,
            stream=stream,
        )
        self._engine: CaptureEngine | None = None
        self._display: WatchDisplay | None = None
        self._token: contextvars.Token[CaptureEngine | None] | None = None

    @property
    def experiments(self) -> list[str]:
        """The experiments (batches) this capture created or re-attached to, in order."""
        return list(self._engine.experiments) if self._engine is not None else []

    @property
    def sent_direct(self) -> int:
        """Calls sent directly at full price (on_deadline='sync')."""
        return len(self._engine.direct_calls) if self._engine is not None else 0

    def _deadline_monotonic(self) -> float | None:
        deadline = self._deadline
        if deadline is None:
            return None
        if isinstance(deadline, datetime):
            when = deadline if deadline.tzinfo else deadline.replace(tzinfo=timezone.utc)
            return time.monotonic() + (when - datetime.now(timezone.utc)).total_seconds()
        return time.monotonic() + float(deadline)

    def __enter__(self) -> capture:
        if self._engine is not None and self._engine.running:
            raise ConfigurationError(f"capture('{self.name}') is already open: enter it once.")
        intercept.install()
        progress = None
        if self._show_progress and not self._settings.dry_run:
            from rich.console import Console

            from batchling.progress import WatchDisplay

            # The live table of `batchling wait`, on stderr: stdout stays the user's.
            self._display = WatchDisplay(Console(stderr=True, highlight=False)).__enter__()
            progress = self._display.update
        self._engine = CaptureEngine(
            dataclasses.replace(
                self._settings, deadline=self._deadline_monotonic(), progress=progress
            )
        )
        self._engine.start()
        self._token = intercept.ACTIVE.set(self._engine)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        engine = self._engine
        assert engine is not None and self._token is not None
        intercept.ACTIVE.reset(self._token)
        self._token = None
        self._stop(engine, error)

    def _stop(self, engine: CaptureEngine, error: BaseException | None) -> None:
        try:
            engine.stop()
        finally:
            if self._display is not None:
                self._display.__exit__(None, None, None)
                self._display = None
        if isinstance(error, DryRun) and self._show_progress:
            print(engine.plan.summary(), file=sys.stderr)

    async def __aenter__(self) -> capture:
        # The engine's thread starts and its database opens off the running loop.
        await asyncio.to_thread(self._open_engine)
        self._token = intercept.ACTIVE.set(self._engine)
        return self

    def _open_engine(self) -> None:
        self.__enter__()
        # __enter__ set the variable in the worker thread's copy of the context: undo it there.
        assert self._token is not None
        intercept.ACTIVE.reset(self._token)

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        token = self._token
        assert token is not None
        intercept.ACTIVE.reset(token)
        engine = self._engine
        assert engine is not None
        self._token = None
        await asyncio.to_thread(self._stop, engine, error)
