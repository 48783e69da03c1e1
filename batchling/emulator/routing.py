"""What every provider's emulator routes share: each request counted and checked for injected
faults (then for the provider's own refusal, such as a missing key) before its handler runs;
and a batch advanced on the emulator's clock, its result files written once as it ends."""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, Response

from batchling.emulator.engine import EmulatedBatch, EmulatorState, Phase, StoredFile

Handler = Callable[[Request], Awaitable[Response]]
Refusal = Callable[[Request], Response | None]
Render = Callable[[EmulatorState, EmulatedBatch], None]


def ended_with_outcomes(before: Phase, batch: EmulatedBatch) -> bool:
    """The batch just ended with requests to answer (not failed in validation)."""
    return batch.phase.terminal and not before.terminal and bool(batch.outcomes)


@dataclass
class ProviderRoutes:
    state: EmulatorState
    provider: str
    render: Render
    refuse: Refusal | None = None
    """The provider's own refusal of a request (a missing key, a wrong header), or None."""
    renders_when: Callable[[Phase, EmulatedBatch], bool] = ended_with_outcomes

    def step(self, name: str, *, keyless: bool = False) -> Callable[[Handler], Handler]:
        """Decorates the handler of lifecycle step `name` (upload, create, poll, ...): faults
        injected at that step answer first, then `refuse` (unless the route is `keyless`)."""

        def decorate(handler: Handler) -> Handler:
            @functools.wraps(handler)
            async def guarded(request: Request) -> Response:
                if (fault := await self.state.before(self.provider, name)) is not None:
                    return fault
                refuse = None if keyless else self.refuse
                if refuse is not None and (refused := refuse(request)) is not None:
                    return refused
                return await handler(request)

            return guarded

        return decorate

    def over_quota(
        self, *, model: str | None, tokens: int, requests: int, kinds: str
    ) -> str | None:
        """Why a new batch of this provider (`tokens` enqueued of `model`, `requests` requests) would pass one of
        the quota knobs named in `kinds` ("tokens batches requests"), counting the provider's
        unfinished batches; None when it fits. Each refusal counts in calls[(provider,
        "quota_refused")], so a test can tell none happened."""
        provider = self.provider
        unfinished = [
            b for b in self.state.list_batches(provider) if not self.refreshed(b).phase.terminal
        ]
        config = self.state.config
        reason = None
        if "tokens" in kinds and config.enqueued_token_limit is not None:
            held = sum(
                b.extra.get("enqueued_tokens", 0)
                for b in unfinished
                if b.extra.get("model") == model
            )
            if held + tokens > config.enqueued_token_limit:
                reason = (
                    f"Enqueued token limit reached for {model}: {held:,} of "
                    f"{config.enqueued_token_limit:,} enqueued tokens are in unfinished batches."
                )
        limit = config.batch_limit
        if "batches" in kinds and limit is not None and len(unfinished) + 1 > limit:
            reason = f"Too many concurrent batch jobs: the limit is {limit}."
        if "requests" in kinds and config.queued_request_limit is not None:
            held = sum(b.total for b in unfinished)
            if held + requests > config.queued_request_limit:
                reason = (
                    f"Number of batch requests in the processing queue would exceed the limit "
                    f"of {config.queued_request_limit:,} ({held:,} are processing)."
                )
        if reason is not None:
            self.state.calls[(provider, "quota_refused")] += 1
        return reason

    def download(self, file_id: str, not_found: Callable[[], Response]) -> Response:
        """A stored file's bytes as the provider serves them (doctored while a fault says so)."""
        stored = self.state.get_file(self.provider, file_id)
        if stored is None:
            return not_found()
        path = self.state.served_path(self.provider, stored)
        return FileResponse(path, media_type="application/octet-stream")

    def refreshed(self, batch: EmulatedBatch) -> EmulatedBatch:
        """The batch moved along its lifecycle to now; its results written if it just ended."""
        before = batch.phase
        self.state.advance(batch)
        if self.renders_when(before, batch):
            self.render(self.state, batch)
        return batch


NOT_JSON: Any = object()
"""What `numbered_lines` gives for a line that is not JSON."""


def numbered_lines(
    stored: StoredFile, loads: Callable[[bytes], Any] = json.loads
) -> Iterator[tuple[int, Any]]:
    """(line number, parsed line) for each non-blank line of an uploaded file, read from disk
    one line at a time; a line `loads` refuses comes as NOT_JSON, for the caller to report."""
    with stored.path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                yield number, loads(raw)
            except ValueError:  # JSONDecodeError, orjson's, UnicodeDecodeError
                yield number, NOT_JSON
