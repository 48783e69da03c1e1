"""`batchling demo`: the capitals example end to end on the in-process emulator."""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from batchling.models import Experiment, RawRequest, Result
from batchling.providers.registry import provider_info, provider_names

CAPITALS_QUESTIONS = ["France", "Japan", "Kenya", "Brazil", "Canada"]
# provider -> the model its demo and the tests run (each folder's `demo_model`): every provider
# and built-in profile, which the emulator serves; a user's profile is the user's own service.
DEMO_MODELS = {name: provider_info(name).demo_model for name in provider_names(include_user=False)}


def capitals_requests() -> list[RawRequest]:
    return [
        RawRequest.model_validate(
            {
                "system_prompt": "You are a helpful geography assistant. Answer in one sentence.",
                "messages": [{"role": "user", "content": f"What is the capital of {country}?"}],
                "max_tokens": 50,
            }
        )
        for country in CAPITALS_QUESTIONS
    ]


async def run_capitals(
    providers: Sequence[str],
    db_path: Path,
    poll_interval: float = 0.1,
) -> list[tuple[Experiment, list[Result]]]:
    from batchling.manager import AsyncExperimentManager

    async with AsyncExperimentManager(db_path) as manager:

        async def one(provider: str) -> tuple[Experiment, list[Result]]:
            name = f"capitals-{provider}"
            await manager.create_experiment(
                name,
                model=DEMO_MODELS[provider],
                provider=provider,
                title="Capitals",
                description="What is the capital of ...?",
                raw_requests=capitals_requests(),
            )
            await manager.start_experiment(name)
            experiment = await manager.wait(name, poll_interval=poll_interval)
            # A copy: the database goes with the demo's temporary directory.
            return experiment, list(await manager.get_results(name))

        return list(await asyncio.gather(*(one(p) for p in providers)))


def run_demo(
    providers: Sequence[str], processing_seconds: float = 1.0
) -> list[tuple[Experiment, list[Result]]]:
    """Serve the emulator on a free loopback port, point the SDKs at it, run the example."""
    from batchling.emulator import Emulator, EmulatorConfig

    with (
        tempfile.TemporaryDirectory(prefix="batchling-demo-") as home,
        Emulator(EmulatorConfig(processing_seconds=processing_seconds)) as emulator,
    ):
        saved = dict(os.environ)
        os.environ.update(emulator.env())
        os.environ["BATCHLING_HOME"] = home
        try:
            return asyncio.run(run_capitals(providers, Path(home) / "batchling.db"))
        finally:
            os.environ.clear()
            os.environ.update(saved)
