"""What a rerun needs to find, at the provider, what an interrupted run made but never recorded."""

from __future__ import annotations

import re
from datetime import timedelta

from batchling.errors import AmbiguousBatchError
from batchling.models import BatchRecord, Experiment
from batchling.providers.base import CreateHint

# The provider's clock may run behind ours: look this far before the recorded start of a step.
CLOCK_SKEW = timedelta(minutes=5)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def upload_name(experiment: Experiment, batch: BatchRecord) -> str:
    """The name a chunk is uploaded under: unique per experiment and chunk, so it can be found
    (the creation time tells apart experiments of the same name, e.g. deleted and made again)."""
    created = experiment.created_at.strftime("%Y%m%dT%H%M%S%f")
    return f"batchling-{_UNSAFE.sub('_', experiment.name)[:100]}-{created}-{batch.chunk}.jsonl"


def refused(error: BaseException | None) -> bool:
    """Whether the provider answered a call with an error status (so it made nothing), as
    opposed to a timeout or a dropped connection, after which it may have made something."""
    status = getattr(error, "status_code", None)
    if status is None:
        status = getattr(error, "code", None)  # google-genai's APIError
    return isinstance(status, int) and 400 <= status < 600


def create_hint(batch: BatchRecord, file_id: str | None, recorded: frozenset[str]) -> CreateHint:
    return CreateHint(
        input_file_id=file_id,
        request_count=batch.request_count,
        created_after=batch.updated_at - CLOCK_SKEW if batch.updated_at else None,
        exclude=recorded,
    )


def ambiguous(experiment: Experiment, batch: BatchRecord, error: AmbiguousBatchError) -> str:
    ids = ", ".join(error.candidates)
    return (
        f"Experiment '{experiment.name}': creating the batch of chunk {batch.chunk} was "
        f"interrupted, and {len(error.candidates)} {experiment.provider} batches could each be "
        f"the one it made ({ids}); nothing new was created. Run 'batchling start "
        f"{experiment.name} --adopt BATCH_ID' with the one that is this chunk's, or cancel the "
        "ones that are not (cancel all of them to have a new batch created)."
    )
