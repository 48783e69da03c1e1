"""What an experiment costs: estimated from its requests, then from the usage reported."""

from __future__ import annotations

from collections.abc import Iterable

from batchling import pricing
from batchling.bounds import finite_number
from batchling.core.session import Session
from batchling.pricing import (
    ExperimentCost,
    PriceTable,
    estimate_tokens,
    load_price_table,
    token_estimate_from_options,
)


async def experiment_cost(
    session: Session, experiment_name: str, *, table: PriceTable | None = None
) -> ExperimentCost:
    """The estimated cost (from the requests) and, once results are stored, the actual cost
    (from the usage the provider reported). `usd` is None when the model has no known price."""
    store = await session.store()
    experiment = await store.get_experiment(experiment_name)
    estimate = token_estimate_from_options(await store.experiment_options(experiment_name))
    if estimate is None:
        requests = [request async for _, _, request in store.iter_requests(experiment)]
        estimate = estimate_tokens(requests, endpoint=experiment.endpoint)
    usages = None
    if await store.count_results(experiment):
        usages = [usage async for usage in store.iter_usage(experiment)]
    return pricing.experiment_cost(
        experiment.provider,
        experiment.model,
        estimate,
        usages,
        table=table or load_price_table(),
    )


async def experiment_costs(
    session: Session, experiment_names: Iterable[str]
) -> list[ExperimentCost]:
    names = list(experiment_names)
    table = load_price_table()
    inputs = await (await session.store()).cost_inputs(names)
    costs = []
    for name in names:
        found = inputs.get(name)
        estimate = token_estimate_from_options(found.options) if found else None
        if found is None or estimate is None or found.has_results:
            # Usage to add up, an estimate to make, or a name to report as unknown.
            costs.append(await experiment_cost(session, name, table=table))
        else:
            costs.append(
                pricing.experiment_cost(found.provider, found.model, estimate, None, table=table)
            )
    return costs


def check_max_cost(max_cost: float) -> float:
    return finite_number("max_cost (--max-cost)", max_cost, minimum=0, unit="USD")
