"""Small builders shared by the tests."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

if TYPE_CHECKING:
    from batchling.store import Store

T = TypeVar("T")
# A hang guard, not a measure: generous, as a loaded machine runs the emulator slowly.
POLL_TIMEOUT = 60.0
POLL_EVERY = 0.05

COUNTRIES = ["France", "Japan", "Kenya", "Brazil", "Canada", "Peru", "Italy", "Egypt"]


def question(index: int) -> str:
    return f"What is the capital of {COUNTRIES[index % len(COUNTRIES)]}?"


def request_dicts(count: int, *, with_ids: bool = False) -> list[dict[str, Any]]:
    requests = []
    for index in range(count):
        request: dict[str, Any] = {"messages": [{"role": "user", "content": question(index)}]}
        if with_ids:
            request["id"] = f"q{index}"
        requests.append(request)
    return requests


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def poll_until(
    poll: Callable[[], Awaitable[T] | T],
    done: Callable[[T], bool],
    what: str,
    *,
    every: float = POLL_EVERY,
    timeout: float = POLL_TIMEOUT,
) -> T:
    """Call `poll` (a coroutine function, or a plain one reading shared state) until `done`
    holds for its value and return that value; the test fails (naming `what` and the last
    value) if it still does not hold after `timeout` s."""

    async def value_now() -> T:
        value = poll()
        return await value if inspect.isawaitable(value) else value

    deadline = time.monotonic() + timeout
    while not done(value := await value_now()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached in {timeout} s; last {value!r:.300}")
        await asyncio.sleep(every)
    return value


def wait_until(
    condition: Callable[[], bool], what: str, *, every: float = 0.02, timeout: float = POLL_TIMEOUT
) -> None:
    """The blocking poll_until, for a condition on shared state (another process or thread)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached in {timeout} s")
        time.sleep(every)


async def until_terminal(
    adapter: Any, ref: Any, *, seen: list[Any] | None = None, key: str = "provider_status"
) -> Any:
    """Poll a provider adapter until its batch ends; `seen` collects each new value of the
    snapshot's `key` in order."""

    async def poll() -> Any:
        snapshot = await adapter.poll(ref)
        if seen is not None and (not seen or seen[-1] != getattr(snapshot, key)):
            seen.append(getattr(snapshot, key))
        return snapshot

    return await poll_until(poll, lambda s: s.status.is_terminal, "the batch to end")


class OpenedStores:
    """The stores opened (Store.open_for_reading, what a manager opens first) and still open."""

    def __init__(self) -> None:
        self.opened = 0
        self.open: list[Store] = []


class FakeClock:
    """The emulator's clock (`emulator.state.clock`), moved forward by the test instead of by
    time; the emulator fixture puts the real one back."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def require(module: str, package: str) -> ModuleType:
    """The module; skips in one line without it (also at module level), but fails under CI,
    which installs the test extra."""
    try:
        return importlib.import_module(module)
    except ImportError:
        message = f"{module} is not installed: pip install '{package}' (or batchling[test])"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message, allow_module_level=True)
