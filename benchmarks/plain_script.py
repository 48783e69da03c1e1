"""The steps of the plain script over the official `openai` SDK alone, shared by the baseline of
the end-to-end scenario and the plain path of the user-path scenarios."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.data import ENDPOINT, openai_line

POLL_INTERVAL = 0.05
TERMINAL = {"completed", "failed", "expired", "cancelled"}
# OpenAI's limit per batch; the emulator fails a bigger one.
MAX_REQUESTS_PER_BATCH = 50_000


def write_batch_files(raw_path: Path, workdir: Path, prefix: str) -> list[Path]:
    """Batch input files of at most MAX_REQUESTS_PER_BATCH lines, from the raw requests."""
    paths: list[Path] = []
    with raw_path.open("rb") as source:
        sink = None
        for index, line in enumerate(source):
            if index % MAX_REQUESTS_PER_BATCH == 0:
                if sink is not None:
                    sink.close()
                paths.append(workdir / f"{prefix}-batch-{len(paths)}.jsonl")
                sink = paths[-1].open("w", encoding="utf-8")
            assert sink is not None
            sink.write(json.dumps(openai_line(json.loads(line))) + "\n")
        if sink is not None:
            sink.close()
    return paths


def upload_and_submit(client: Any, paths: list[Path]) -> list[Any]:
    """Each file uploaded and submitted as a batch; the batches as created."""
    batches = []
    for path in paths:
        with path.open("rb") as handle:
            uploaded = client.files.create(file=handle, purpose="batch")
        batches.append(
            client.batches.create(
                input_file_id=uploaded.id, endpoint=ENDPOINT, completion_window="24h"
            )
        )
    return batches
