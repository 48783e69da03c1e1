"""Ctrl-C in a notebook: the blocking API inside a running loop (the worker-thread path) stops at
once, cancels the worker's coroutine and leaves the experiment as a rerun resumes it."""

from __future__ import annotations

import _thread
import asyncio
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from batchling import ExperimentManager, Status
from batchling.emulator import Emulator
from tests.helpers import request_dicts, wait_until

# Long enough that a wait which ignores the interrupt ends only with the batch (the bug), which
# the assertions then catch; an interrupted wait never gets near it.
BATCH_SECONDS = 60


def interrupt_main_thread() -> None:
    _thread.interrupt_main()


def sigint_to_main_thread() -> None:
    main = threading.main_thread().ident
    assert main is not None
    signal.pthread_kill(main, signal.SIGINT)


@pytest.fixture
def default_sigint() -> Iterator[None]:
    """Ctrl-C raising KeyboardInterrupt in the main thread, as in a Jupyter cell."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


@pytest.mark.parametrize("interrupt", [interrupt_main_thread, sigint_to_main_thread])
def test_ctrl_c_stops_wait_inside_a_running_loop_and_the_experiment_resumes(
    emulator: Emulator,
    tmp_path: Path,
    default_sigint: None,
    interrupt: Callable[[], None],
) -> None:
    emulator.config.processing_seconds = BATCH_SECONDS
    manager = ExperimentManager(tmp_path / "db.sqlite")
    manager.create_experiment("long", model="gpt-4o-mini", raw_requests=request_dicts(3))
    manager.start_experiment("long")
    polls = emulator.state.calls[("openai", "poll")]

    def interrupt_once_waiting() -> None:
        try:
            wait_until(
                lambda: emulator.state.calls[("openai", "poll")] > polls, "a poll", every=0.005
            )
        finally:
            interrupt()

    async def notebook_cell() -> None:
        threading.Thread(target=interrupt_once_waiting, daemon=True).start()
        manager.wait("long", poll_interval=0.05)

    loop = asyncio.new_event_loop()  # run_until_complete, unlike asyncio.run, leaves SIGINT alone
    try:
        with pytest.raises(KeyboardInterrupt):
            loop.run_until_complete(notebook_cell())
    finally:
        loop.close()

    assert manager._running == 0, "the worker still runs the cancelled wait"
    interrupted = manager.retrieve("long")
    assert not interrupted.is_finished, "the wait went on until the batch ended"
    assert interrupted.status not in (Status.CREATED, Status.SUBMITTING)

    emulator.config.processing_seconds = 0
    assert manager.wait("long", poll_interval=0.02).status == Status.COMPLETED
    assert [r.ok for r in manager.get_results("long")] == [True] * 3
