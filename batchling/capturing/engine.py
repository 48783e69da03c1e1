"""The capture engine: queues captured calls per (provider, endpoint, model), flushes each queue
as one experiment of the capture's study through the manager, and answers every call from its
batch result. It runs on a private event loop in its own thread, so async code (any loop) and
blocking code (any thread) hand it calls the same way."""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import functools
import os
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import orjson

from batchling.capturing import routes
from batchling.capturing.keys import custom_id_of
from batchling.capturing.ledger import Ledger, LedgerRow
from batchling.capturing.plan import CapturePlan, request_tokens
from batchling.capturing.routes import Route, rules_of
from batchling.errors import DryRun
from batchling.models import Experiment, RawMessage, RawRequest, RequestCounts, Status
from batchling.providers.capture_rules import Answer

T = TypeVar("T")
MAX_POLL_INTERVAL = 60.0
MAX_WINDOW_SECONDS = 60.0
INBOX_SECONDS = 0.02
DIRECT = "direct"
"""Answer meaning: send the call as it is, to the provider's synchronous endpoint."""

# Stands in for the RawRequest of each stored row: the row's text (the SDK's body) is what is kept.
_PLACEHOLDER = RawRequest(messages=[RawMessage(role="user", content="captured")])


@dataclass(frozen=True, slots=True)
class CapturedCall:
    route: Route
    key: str
    canonical: bytes
    """The body as sent (canonical JSON); the parsed body is not kept: calls wait in memory for
    their batch, and bytes cost the garbage collector nothing, a dict of lists a scan each time."""
    api_key: str | None = field(default=None, repr=False)
    """The key the SDK sent: its batches are submitted with it. Held in memory only."""

    @property
    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = orjson.loads(self.canonical)
        return body


@dataclass(frozen=True)
class CaptureSettings:
    name: str
    db_path: Path | None = None
    batch_size: int | None = None
    window_seconds: float = 2.0
    poll_interval: float = 2.0
    cache: bool = True
    dry_run: bool = False
    max_cost: float | None = None
    deadline: float | None = None
    """time.monotonic() after which unanswered calls stop waiting."""
    on_deadline: str = "raise"
    stream: str = "error"
    progress: Callable[[Experiment], None] | None = None


def _settle(out: Any, waiting: asyncio.Future[Answer | str]) -> None:
    if out.done():
        return
    if waiting.cancelled():
        out.cancel()
    elif (error := waiting.exception()) is not None:
        out.set_exception(error)
    else:
        out.set_result(waiting.result())


def _settle_value(out: asyncio.Future[Answer | str], answer: Answer | str) -> None:
    if not out.done():
        out.set_result(answer)


def _settle_all(settled: list[tuple[Any, asyncio.Future[Answer | str]]]) -> None:
    for out, waiting in settled:
        _settle(out, waiting)


def error_answer(status: int, message: str) -> Answer:
    """An error in the shape every SDK reads a message from (`error.message`)."""
    return Answer(
        status, orjson.dumps({"error": {"message": message, "type": "batchling_capture"}})
    )


class CaptureEngine:
    def __init__(self, settings: CaptureSettings) -> None:
        self.settings = settings
        self.plan = CapturePlan()
        self.experiments: list[str] = []
        self.direct_calls: list[str] = []
        self.stream_passthrough = settings.stream == "passthrough"
        # Which compatible service a URL is under, read once per URL for this capture: reading
        # the profiles (a stat of the user's file, the environment) cost more than the rest of
        # routing a call.
        self.provider_at = functools.lru_cache(maxsize=256)(routes.provider_at)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._run, name=f"batchling-capture-{settings.name}", daemon=True
        )
        self._waiting: dict[str, asyncio.Future[Answer | str]] = {}
        self._inbox: collections.deque[tuple[CapturedCall, Any]] = collections.deque()
        self._inbox_lock = threading.Lock()
        self._wake_pending = False
        self._batch_sizes: dict[str, int] = {}
        self._outbox: dict[asyncio.AbstractEventLoop, list[tuple[Any, Any]]] = {}
        self._queues: dict[Route, list[CapturedCall]] = {}
        self._timers: dict[Route, asyncio.TimerHandle] = {}
        self._first_at: dict[Route, float] = {}
        self._last_at: dict[Route, float] = {}
        self._routes: dict[str, Route] = {}
        self._refusals: dict[Route, Answer | None] = {}
        self._deadline_passed = False
        self._api_keys: dict[str, str] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._followers: dict[str, asyncio.Task[None]] = {}
        self._spent = 0.0
        self._sequence = 0
        self._manager: Any = None
        self._ledger: Ledger | None = None
        # The ledger writes on a connection of its own: a write there while the manager's
        # connection holds a read snapshot makes that connection's next write fail at once
        # (SQLite's BUSY_SNAPSHOT), so the two never overlap.
        self._writing = asyncio.Lock()

    # life cycle (called from the user's thread)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> None:
        self._thread.start()
        self.run(self._open())

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def submit(self, call: CapturedCall) -> concurrent.futures.Future[Answer | str]:
        """Hand a call over from any thread; the future gets its answer (or DIRECT)."""
        out: concurrent.futures.Future[Answer | str] = concurrent.futures.Future()
        self._hand_over(call, out)
        return out

    def submit_async(self, call: CapturedCall) -> asyncio.Future[Answer | str]:
        """`submit` for a coroutine: the future is on the caller's running loop."""
        out: asyncio.Future[Answer | str] = asyncio.get_running_loop().create_future()
        self._hand_over(call, out)
        return out

    def _hand_over(self, call: CapturedCall, out: Any) -> None:
        # One wake-up of the engine's loop takes every call handed over since the last one:
        # a wake-up per call (a write to the loop's socket, a GIL hand-off) cost more than
        # the rest of capture's work per call.
        self._inbox.append((call, out))
        with self._inbox_lock:
            if self._wake_pending:
                return
            self._wake_pending = True
        try:
            self._loop.call_soon_threadsafe(self._take_inbox)
        except RuntimeError:  # the capture has closed: a task that outlived it still holds it
            self._answer_inbox_closed()

    def _answer_inbox_closed(self) -> None:
        with self._inbox_lock:
            self._wake_pending = False
        closed = self._closed_answer()
        while self._inbox:
            self._answer_now(self._inbox.popleft()[1], closed)

    def _take_inbox(self) -> None:
        """Take the calls handed over; while they keep coming, look again every INBOX_SECONDS
        instead of being woken for each (calls wait for a batch window anyway)."""
        if not self._inbox:
            with self._inbox_lock:
                if not self._inbox:
                    self._wake_pending = False
                    return
        while self._inbox:
            self._accept(*self._inbox.popleft())
        self._loop.call_later(INBOX_SECONDS, self._take_inbox)

    @staticmethod
    def _answer_now(out: Any, answer: Answer | str) -> None:
        if isinstance(out, asyncio.Future):
            with contextlib.suppress(RuntimeError):  # a closed caller's loop: nobody waits there
                out.get_loop().call_soon_threadsafe(_settle_value, out, answer)
        elif not out.done():
            out.set_result(answer)

    def stop(self) -> None:
        try:
            self.run(self._close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()
            self._answer_inbox_closed()
            for loop in list(self._outbox):
                self._post(loop)

    async def _open(self) -> None:
        from batchling.manager import AsyncExperimentManager
        from batchling.store import Store

        self._manager = AsyncExperimentManager(self.settings.db_path)
        # Created and migrated first: the ledger's table sits beside the store's.
        await (await Store.open(self._manager.db_path)).close()
        self._ledger = await Ledger.open(self._manager.db_path, self.settings.name)
        if self.settings.deadline is not None:
            delay = self.settings.deadline - time.monotonic()
            self._loop.call_at(self._loop.time() + delay, self._on_deadline)

    async def _close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        closed = self._closed_answer()
        for waiting in self._waiting.values():
            if not waiting.done():
                waiting.set_result(closed)
        for task in [*self._tasks, *self._followers.values()]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._followers.values(), return_exceptions=True)
        if self._ledger is not None:
            await self._ledger.close()
        if self._manager is not None:
            await self._manager.aclose()

    # calls (on the engine's loop)

    def _accept(self, call: CapturedCall, out: Any) -> None:
        """Take one call (a callback: no task per call) and answer `out` when its key is."""
        if self._deadline_passed:
            self._answer_now(out, self._deadline_answer(call.route))
            return
        refused = self._refusal(call.route)
        if refused is not None:
            self._answer_now(out, refused)
            return
        if call.api_key:
            self._api_keys[call.route.provider] = call.api_key
        waiting = self._waiting.get(call.key)
        if waiting is None:
            waiting = self._waiting[call.key] = self._loop.create_future()
            self._routes[call.key] = call.route
            self._enqueue(call)
        waiting.add_done_callback(functools.partial(self._deliver, out))

    def _refusal(self, route: Route) -> Answer | None:
        """The answer to a call whose model the provider's Batch API refuses: nothing is queued,
        recorded or sent for it (as the experiment path refuses it before creating anything)."""
        if route not in self._refusals:
            reason = rules_of(route.provider).refusal(route.provider, route.model)
            self._refusals[route] = (
                None
                if reason is None
                else error_answer(
                    400, f"batchling.capture('{self.settings.name}'): {reason} Nothing was sent."
                )
            )
        return self._refusals[route]

    def _deliver(self, out: Any, waiting: asyncio.Future[Answer | str]) -> None:
        if not isinstance(out, asyncio.Future):
            _settle(out, waiting)
            return
        # Answers for an async caller's loop go over in one hand-off per engine loop turn.
        loop = out.get_loop()
        pending = self._outbox.get(loop)
        if pending is None:
            pending = self._outbox[loop] = []
            self._loop.call_soon(self._post, loop)
        pending.append((out, waiting))

    def _post(self, loop: asyncio.AbstractEventLoop) -> None:
        settled = self._outbox.pop(loop, [])
        with contextlib.suppress(RuntimeError):  # a closed caller's loop: nobody waits there
            loop.call_soon_threadsafe(_settle_all, settled)

    def _on_deadline(self) -> None:
        self._deadline_passed = True
        for key, waiting in self._waiting.items():
            if not waiting.done():
                waiting.set_result(self._deadline_answer(self._routes[key]))

    def _closed_answer(self) -> Answer:
        return error_answer(
            499,
            f"batchling.capture('{self.settings.name}') was closed before this call was answered; "
            "running the capture again picks its answer up.",
        )

    def _deadline_answer(self, route: Route) -> Answer | str:
        if self.settings.on_deadline == "sync":
            return DIRECT
        return error_answer(
            408,
            f"batchling.capture('{self.settings.name}'): the deadline passed before the batch "
            f"answered {route.provider} {route.endpoint} ({route.model}); its batch goes on, and "
            "running the capture again picks its answer up. Pass on_deadline='sync' to send such "
            "calls directly instead.",
        )

    def _enqueue(self, call: CapturedCall) -> None:
        """Queue the call; its queue is flushed at the batch size, or once no call came for
        `window_seconds` (gather hands calls over one by one, as the SDK builds each), or
        MAX_WINDOW_SECONDS after its first call."""
        route = call.route
        queue = self._queues.setdefault(route, [])
        queue.append(call)
        if len(queue) >= self._batch_size(route):
            self._flush(route)
            return
        now = self._last_at[route] = self._loop.time()
        if len(queue) == 1:
            self._first_at[route] = now
        if route not in self._timers:
            self._timers[route] = self._loop.call_at(
                self._window_end(route), self._on_window, route
            )

    def _window_end(self, route: Route) -> float:
        return min(
            self._last_at[route] + self.settings.window_seconds,
            self._first_at[route] + MAX_WINDOW_SECONDS,
        )

    def _on_window(self, route: Route) -> None:
        # One timer per queue, moved on when calls came meanwhile (not one per call).
        end = self._window_end(route)
        if self._loop.time() < end:
            self._timers[route] = self._loop.call_at(end, self._on_window, route)
        else:
            self._flush(route)

    def _batch_size(self, route: Route) -> int:
        size = self._batch_sizes.get(route.provider)
        if size is None:
            from batchling.providers import registry

            limit = registry.provider_info(route.provider).limits.max_requests
            size = self._batch_sizes[route.provider] = min(self.settings.batch_size or limit, limit)
        return size

    def _flush(self, route: Route) -> None:
        timer = self._timers.pop(route, None)
        if timer is not None:
            timer.cancel()
        calls = self._queues.pop(route, [])
        if calls:
            self._spawn(self._send(route, calls), [c.key for c in calls])

    def _spawn(self, coroutine: Coroutine[Any, Any, None], keys: list[str]) -> asyncio.Task[None]:
        task = self._loop.create_task(self._answer_failures(coroutine, keys))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _answer_failures(self, coroutine: Coroutine[Any, Any, None], keys: list[str]) -> None:
        try:
            await coroutine
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self._fail(keys, error)

    def _fail(self, keys: list[str], error: Exception) -> None:
        """Any failure to batch becomes the answer of the calls still waiting: never a hang."""
        text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        answer = error_answer(502, f"batchling.capture('{self.settings.name}'): {text}")
        for key in keys:
            self._resolve(key, answer)

    def _resolve(self, key: str, answer: Answer | str | BaseException) -> None:
        waiting = self._waiting.get(key)
        if waiting is not None and not waiting.done():
            if isinstance(answer, BaseException):
                waiting.set_exception(answer)
            else:
                waiting.set_result(answer)
                # Its callers hold the answer now; a later identical call reads the ledger.
                del self._waiting[key]
                self._routes.pop(key, None)

    async def _send(self, route: Route, calls: list[CapturedCall]) -> None:
        assert self._ledger is not None
        found = await self._ledger.find([c.key for c in calls]) if self.settings.cache else {}
        for key, row in found.items():
            if row.answer is not None and row.status_code is not None:
                self._resolve(key, Answer(row.status_code, row.answer))
            else:
                self._follow(row.experiment)
        new = [c for c in calls if c.key not in found]
        if not new:
            return
        if self.settings.dry_run:
            for call in new:
                self.plan.add(
                    route.provider,
                    route.model,
                    request_tokens(rules_of(route.provider), route.endpoint, call.body),
                )
            for call in new:
                self._resolve(call.key, DryRun(self.plan))
            return
        if self.settings.max_cost is not None:
            self._check_cost(route, new)
        name = self._experiment_name()
        rows = [
            LedgerRow(
                c.key,
                custom_id_of(c.key),
                route.provider,
                route.endpoint,
                route.model,
                route.base_url,
                c.canonical,
                name,
            )
            for c in new
        ]
        # Recorded before anything is sent: a re-run finds them and re-attaches.
        async with self._writing:
            await self._ledger.record(rows)
        self._follow(name, rows)

    def _check_cost(self, route: Route, calls: list[CapturedCall]) -> None:
        from batchling.errors import CostLimitError
        from batchling.pricing import format_usd, unknown_price_message

        max_cost = self.settings.max_cost
        assert max_cost is not None
        costs = [
            self.plan.cost_of(
                route.provider,
                route.model,
                request_tokens(rules_of(route.provider), route.endpoint, c.body),
            )
            for c in calls
        ]
        if any(cost is None for cost in costs):
            # Never taken as $0: the limit could not be kept (as check_cost_limit refuses it).
            raise CostLimitError(
                f"max_cost {format_usd(max_cost)} is set but the price of {route.provider}:"
                f"{route.model} is unknown, so its cost cannot be estimated: these {len(calls)} "
                f"calls were not sent. {unknown_price_message(route.provider, route.model)} "
                "Or drop max_cost."
            )
        total = self._spent + sum(cost or 0.0 for cost in costs)
        if total > max_cost:
            raise CostLimitError(
                f"The estimated cost {format_usd(total)} of this capture is above max_cost "
                f"{format_usd(max_cost)}: these {len(calls)} {route.provider}:{route.model} "
                "calls were not sent. Raise max_cost or send fewer calls."
            )
        self._spent = total

    def _experiment_name(self) -> str:
        self._sequence += 1
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S%f")
        return f"{self.settings.name}-{stamp}-{self._sequence}"

    def _follow(self, name: str, recorded: list[LedgerRow] | None = None) -> None:
        """Collect experiment `name`'s answers; `recorded`: its rows, when just recorded."""
        if name not in self._followers:
            self._followers[name] = self._loop.create_task(self._collect(name, recorded))

    async def _collect(self, name: str, recorded: list[LedgerRow] | None) -> None:
        assert self._ledger is not None
        rows = recorded if recorded is not None else await self._ledger.experiment_rows(name)
        keys = [row.key for row in rows]
        try:
            async with self._writing:
                await self._start(name, rows)
            experiment = await self._until_finished(name)
            by_id = {row.custom_id: row for row in rows}
            answers: list[tuple[str, int, bytes]] = []
            async with self._writing:
                for result in await self._manager.get_results(name):
                    row = by_id.get(result.custom_id)
                    if row is not None and result.raw is not None:
                        answer = rules_of(row.provider).answer(result.raw)
                        answers.append((row.key, answer.status_code, answer.body))
                await self._ledger.save_answers(answers)
            for key, status, body in answers:
                self._resolve(key, Answer(status, body))
            for key in keys:
                self._resolve(
                    key,
                    error_answer(
                        502,
                        f"batchling.capture: batch experiment '{name}' ended "
                        f"{experiment.status} without an answer for this call.",
                    ),
                )
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self._fail(keys, error)

    async def _until_finished(self, name: str) -> Experiment:
        """The manager's `wait`, one poll at a time under the write lock."""
        interval = self.settings.poll_interval
        while True:
            async with self._writing:
                experiment: Experiment = await self._manager.refresh(name)
            if self.settings.progress is not None:
                self.settings.progress(experiment)
            if experiment.is_finished:
                return experiment
            await asyncio.sleep(interval)
            interval = min(max(interval, 0.01) * 1.5, MAX_POLL_INTERVAL)

    async def _start(self, name: str, rows: list[LedgerRow]) -> None:
        """Create the experiment of recorded rows if it is not yet, and start it if it is not:
        both are safe to redo after a crash (the manager never submits a chunk twice)."""
        self._manager.provider_env = self._provider_env()
        store = await self._manager.store()
        experiment = await store.find_experiment(name)
        if experiment is None:
            await self._create(name, rows)
            experiment = await store.get_experiment(name)
        if experiment.status in (Status.CREATED, Status.SUBMITTING):
            await self._manager.start_experiment(name)
        if name not in self.experiments:
            self.experiments.append(name)

    def _provider_env(self) -> dict[str, str]:
        """The environment with the keys the SDK calls carried, which win over it: the batch
        goes with the key the code would have used."""
        from batchling.providers import registry

        env = dict(os.environ)
        for provider, key in self._api_keys.items():
            env[registry.provider_info(provider).api_key_env[0]] = key
        return env

    async def _create(self, name: str, rows: list[LedgerRow]) -> None:
        from batchling.chunks import ChunkWriter
        from batchling.home import experiment_dir
        from batchling.providers import registry
        from batchling.store import utcnow

        first = rows[0]
        limits = registry.provider_info(first.provider).limits
        home = experiment_dir(name)
        home.mkdir(parents=True, exist_ok=True)
        writer = ChunkWriter(
            home / "processed.jsonl", max_requests=limits.max_requests, max_bytes=limits.max_bytes
        )
        encoded = []
        rules = rules_of(first.provider)
        tokens = []
        try:
            for row in rows:
                body = orjson.loads(row.body)
                tokens.append(request_tokens(rules, row.endpoint, body))
                line = rules.batch_line(row.endpoint, row.custom_id, body)
                chunk = writer.add(orjson.dumps(line), custom_id=row.custom_id)
                encoded.append((row.custom_id, chunk, _PLACEHOLDER, row.body.decode()))
            records = writer.close()
        except BaseException:
            writer.abort()
            raise
        now = utcnow()
        experiment = Experiment(
            name=name,
            title=f"capture {self.settings.name}",
            provider=first.provider,
            model=first.model,
            endpoint=first.endpoint,
            base_url=first.base_url,
            request_counts=RequestCounts(total=0),
            processed_file_path=home / "processed.jsonl",
            results_file_path=home / "results.jsonl",
            created_at=now,
            updated_at=now,
            study=self.settings.name,
        )
        estimate = {
            "requests": len(rows),
            "input_tokens": sum(t[0] for t in tokens),
            "output_tokens": sum(t[1] for t in tokens),
        }
        store = await self._manager.store()
        await store.create_experiment(
            experiment,
            encoded,
            records,
            {"capture": self.settings.name, "token_estimate": estimate},
        )
