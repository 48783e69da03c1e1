"""Which experiments there are: listed newest first, filtered by provider, status or name."""

from __future__ import annotations

from collections.abc import Iterable

from batchling.bounds import INT64_MAX, whole_number
from batchling.core.session import Session
from batchling.errors import ConfigurationError
from batchling.models import BatchRecord, Experiment, Status


async def retrieve(session: Session, experiment_name: str) -> Experiment:
    return await (await session.store()).get_experiment(experiment_name)


async def list_experiments(
    session: Session,
    *,
    provider: str | None = None,
    status: Status | str | Iterable[Status | str] | None = None,
    name_prefix: str | None = None,
    limit: int | None = None,
) -> list[Experiment]:
    """Experiments, newest first; only those matching every filter given; at most `limit`."""
    if limit is not None:
        limit = whole_number("limit", limit, minimum=0, maximum=INT64_MAX)
    store = await session.store()
    if provider is None and status is None and name_prefix is None:
        return await store.list_experiments(limit=limit)
    experiments = filter_experiments(
        await store.list_experiments(),
        provider=provider,
        status=status,
        name_prefix=name_prefix,
    )
    return experiments[:limit] if limit else experiments


async def active_experiments(session: Session) -> list[Experiment]:
    """Experiments submitted and not yet ended: what `batchling watch` follows."""
    return [
        e
        for e in await (await session.store()).list_experiments()
        if e.status not in (Status.CREATED, Status.SUBMITTING) and not e.is_finished
    ]


async def count_experiments(session: Session) -> int:
    return await (await session.store()).count_experiments()


async def list_batches(session: Session, experiment_name: str) -> list[BatchRecord]:
    store = await session.store()
    return await store.list_batches(await store.get_experiment(experiment_name))


def filter_experiments(
    experiments: Iterable[Experiment],
    *,
    provider: str | None = None,
    status: Status | str | Iterable[Status | str] | None = None,
    name_prefix: str | None = None,
) -> list[Experiment]:
    if isinstance(status, (str, Status)):
        status = [status]
    wanted = {_status_named(s) for s in status} if status is not None else None
    return [
        e
        for e in experiments
        if (provider is None or e.provider == provider)
        and (wanted is None or e.status in wanted)
        and (name_prefix is None or e.name.startswith(name_prefix))
    ]


def _status_named(value: Status | str) -> Status:
    try:
        return Status(value)
    except ValueError:
        raise ConfigurationError(
            f"Unknown status '{value}': choose from {', '.join(s.value for s in Status)}."
        ) from None
