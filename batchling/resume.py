"""What a rerun needs to find, at the provider, what an interrupted run made but never recorded."""

from __future__ import annotations

import os
import re
import socket
from datetime import datetime, timedelta

from batchling.errors import AmbiguousBatchError
from batchling.models import BatchRecord, Experiment
from batchling.providers.base import CreateHint
from batchling.providers.retrying import Backoff

# The provider's clock may run behind ours: look this far before the recorded start of a step.
CLOCK_SKEW = timedelta(minutes=5)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")

# The manager's own retries of a batch creation (the SDKs make one attempt at it).
RETRY_INITIAL_DELAY = 0.5
RETRY_MAX_DELAY = 30.0
# After a creation went unanswered, look for it at these fractions of the client timeout (after
# a first look at once): a server may finish a request about a timeout after the client gave up.
SETTLE_FRACTIONS = (0.1, 0.15, 0.25, 0.5, 1.0)


def owner_id() -> str:
    """This process, as the owner of an experiment's start (see Store.claim_start)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def is_owner_alive(owner: str) -> bool:
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname():
        return True
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    return True


def upload_name(experiment: Experiment, batch: BatchRecord) -> str:
    """The name a chunk is uploaded under: unique per experiment and chunk, so it can be found
    (the creation time tells apart experiments of the same name, e.g. deleted and made again)."""
    created = experiment.created_at.strftime("%Y%m%dT%H%M%S%f")
    return f"batchling-{_UNSAFE.sub('_', experiment.name)[:100]}-{created}-{batch.chunk}.jsonl"


def status_of(error: BaseException | None) -> int | None:
    """The HTTP status the provider answered with, or None if it never answered."""
    status = getattr(error, "status_code", None)
    if status is None:
        status = getattr(error, "code", None)  # google-genai's APIError
    return status if isinstance(status, int) and 400 <= status < 600 else None


def refused(error: BaseException | None) -> bool:
    """Whether the provider answered a call with an error status (so it made nothing), as
    opposed to a timeout or a dropped connection, after which it may have made something."""
    return status_of(error) is not None


def worth_retrying(error: BaseException | None) -> bool:
    """An answered error that may pass: rate limited or the provider's own failure."""
    status = status_of(error)
    return status is not None and (status == 429 or status >= 500)


def retry_delay(error: BaseException | None, attempt: int) -> float:
    """How long to wait before attempt `attempt + 1` at a batch creation."""
    return Backoff(RETRY_INITIAL_DELAY, RETRY_MAX_DELAY).delay(attempt, error)


def settle_delays(timeout: float) -> list[float]:
    """The waits between looks for a creation that went unanswered: 0 first, about two client
    timeouts in all."""
    return [0.0, *(fraction * timeout for fraction in SETTLE_FRACTIONS)]


def create_hint(
    batch: BatchRecord,
    file_id: str | None,
    recorded: frozenset[str],
    started: datetime | None = None,
) -> CreateHint:
    """`started`: when the creation was recorded as started, if newer than the record read."""
    since = started or batch.updated_at
    return CreateHint(
        input_file_id=file_id,
        request_count=batch.request_count,
        created_after=since - CLOCK_SKEW if since else None,
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
