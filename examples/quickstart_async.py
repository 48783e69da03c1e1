"""The async API, for use inside an asyncio application."""

import asyncio
from pathlib import Path

from batchling import AsyncExperimentManager

HERE = Path(__file__).parent


async def main() -> None:
    async with AsyncExperimentManager() as manager:
        await manager.create_experiment(
            "capitals-async",
            model="gpt-4o-mini",
            provider="openai",
            raw_file_path=HERE / "capitals.jsonl",
        )
        await manager.start_experiment("capitals-async")
        experiment = await manager.wait("capitals-async", poll_interval=0.5)
        print(f"{experiment.name}: {experiment.status}")
        for result in await manager.get_results("capitals-async"):
            print(f"{result.custom_id}: {result.text if result.ok else result.error}")


if __name__ == "__main__":
    asyncio.run(main())
