"""Studies: the same requests run on several targets, then compared side by side."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from batchling import pricing
from batchling.bounds import check_name
from batchling.core import costs, create, download, lifecycle, submit
from batchling.core.lifecycle import DEFAULT_POLL_INTERVAL, ProgressCallback
from batchling.core.session import Session, output_policy
from batchling.errors import ExperimentExistsError, InputError, StudyNotFoundError
from batchling.models import Experiment, RawRequest, Result, Status
from batchling.owned_files import output_path
from batchling.pricing import check_cost_limit, estimate_tokens, load_price_table
from batchling.providers import registry
from batchling.store import utcnow

if TYPE_CHECKING:
    # Imported where used: `batchling list` and `status` need none of them.
    from batchling.compare import Comparison, Target

COMPARISON_FILE = "comparison file"


async def compare_experiments(
    session: Session,
    targets: Sequence[str | Target],
    *,
    study: str | None = None,
    raw_requests: Iterable[RawRequest | dict[str, Any]] | None = None,
    raw_file_path: str | Path | None = None,
    response_format: Any = None,
    title: str | None = None,
    description: str | None = None,
    max_cost: float | None = None,
    poll_interval: float = DEFAULT_POLL_INTERVAL,
    timeout: float | None = None,
    on_update: ProgressCallback | None = None,
) -> Comparison:
    """Run the same requests on every target (`provider:model`): one experiment each, named
    `<study>-<provider>-<model>`, created, started, waited for, then compared side by side.

    Run again with the same study to resume. `max_cost` (USD) bounds the study's total
    estimate: above it, or with a target whose price is unknown, nothing is created or sent."""
    from batchling.compare import default_study_name, experiment_name_for, parse_targets

    study = study or default_study_name(utcnow())
    check_name(study, "Study name")
    poll_interval, timeout = lifecycle.check_polling(poll_interval, timeout)
    if max_cost is not None:
        max_cost = costs.check_max_cost(max_cost)
    chosen = parse_targets(targets)
    store = await session.store()
    for target in chosen:
        registry.resolve_api_key(registry.provider_info(target.provider))
    existing: dict[Target, Experiment | None] = {}
    for target in chosen:
        found = await store.find_experiment(experiment_name_for(study, target))
        if found is not None and found.study != study:
            raise ExperimentExistsError(found.name)
        existing[target] = found
    missing = [t for t in chosen if existing[t] is None]
    requests: list[RawRequest] = []
    if missing:
        if raw_requests is None and raw_file_path is None:
            raise InputError(
                f"Study '{study}' has no experiment for {', '.join(t.label for t in missing)}: "
                "give the requests (raw_file_path or raw_requests) to create them."
            )
        requests = [request for request, _ in create.load_requests(raw_requests, raw_file_path)]
    if max_cost is not None:
        estimates = []
        table = load_price_table()
        for target in chosen:
            found = existing[target]
            if found is not None:
                estimates.append(await costs.experiment_cost(session, found.name))
            else:
                endpoint = registry.provider_info(target.provider).default_endpoint
                estimate = estimate_tokens(requests, endpoint=endpoint)
                estimates.append(
                    pricing.experiment_cost(
                        target.provider, target.model, estimate, None, table=table
                    )
                )
        check_cost_limit(max_cost, estimates, afterwards=f"Study '{study}' was not started.")
    names = []
    for target in chosen:
        name = experiment_name_for(study, target)
        if existing[target] is None:
            await create.create_experiment(
                session,
                name,
                model=target.model,
                provider=target.provider,
                title=title or f"Study {study}",
                description=description,
                raw_requests=requests,
                response_format=response_format,
                study=study,
            )
        names.append(name)
    experiments = [await store.get_experiment(name) for name in names]
    await asyncio.gather(
        *(
            submit.start_experiment(session, e.name)
            for e in experiments
            if e.status in (Status.CREATED, Status.SUBMITTING)
        )
    )
    await asyncio.gather(
        *(
            lifecycle.wait(
                session, name, poll_interval=poll_interval, timeout=timeout, on_update=on_update
            )
            for name in names
        )
    )
    return await get_comparison(session, study)


async def get_comparison(
    session: Session, study: str, response_model: type[BaseModel] | None = None
) -> Comparison:
    """The study's answers side by side (finished experiments only; the others show their
    status), with each target's status, counts, latency and cost. Does not wait."""
    from batchling.compare import TargetSummary, build_comparison, latency_seconds

    store = await session.store()
    experiments = await store.list_study(study)
    if not experiments:
        raise StudyNotFoundError(study)
    requests: list[RawRequest] = []
    targets: list[tuple[TargetSummary, list[Result | None]]] = []
    for experiment in experiments:
        pairs = [(cid, request) async for cid, _, request in store.iter_requests(experiment)]
        requests = requests or [request for _, request in pairs]
        answers: list[Result | None] = [None] * len(pairs)
        if experiment.is_finished:
            by_id = {
                r.custom_id: r
                for r in await download.get_results(session, experiment.name, response_model)
            }
            answers = [by_id.get(cid) for cid, _ in pairs]
            experiment = await store.get_experiment(experiment.name)
        summary = TargetSummary(
            target=f"{experiment.provider}:{experiment.model}",
            experiment=experiment,
            cost=await costs.experiment_cost(session, experiment.name),
            latency_seconds=latency_seconds(experiment, await store.first_submitted_at(experiment)),
            succeeded=sum(1 for a in answers if a is not None and a.ok),
            failed=sum(1 for a in answers if a is not None and not a.ok),
        )
        targets.append((summary, answers))
    return build_comparison(study, requests, targets)


async def write_comparison(
    session: Session,
    comparison: Comparison,
    path: str | Path,
    *,
    overwrite: bool = False,
    raw: bool = False,
) -> Path:
    """Write a comparison to a .jsonl or .csv file, owned by the study's first experiment:
    refused, unless `overwrite`, where a file exists that is not an earlier one of the study."""
    from batchling.compare import check_comparison_path, write_comparison

    check_comparison_path(Path(path))
    store = await session.store()
    owner = comparison.targets[0].experiment.name
    target = output_path(path, COMPARISON_FILE)
    policy = await output_policy(store, owner, [target], overwrite)
    policy.check(target, COMPARISON_FILE)
    await store.claim_file(owner, target, COMPARISON_FILE)
    return write_comparison(comparison, target, replace=policy.may_replace(target), raw=raw)
