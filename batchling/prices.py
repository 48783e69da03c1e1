"""Batch prices: the built-in table (from each provider folder's data) with the user's prices
file laid over it, a request's cost, and dollars as shown. No pydantic: `batchling list` prices
its rows from here (pricing.py holds the estimates and the cost models)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from batchling.errors import ConfigurationError
from batchling.providers import PROVIDERS, registry

PRICES_ENV = "BATCHLING_PRICES"
PRICES_FILE_NAME = "prices.json"

_DATE_SUFFIX = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8})$")


@dataclass(frozen=True)
class ModelPrice:
    """USD per million tokens at batch prices; above `long_context_above` input tokens a request
    pays the long-context prices on all its tokens."""

    input: float
    output: float
    long_context_above: int | None = None
    long_input: float | None = None
    long_output: float | None = None

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        """The cost of one request."""
        if self.long_context_above is not None and input_tokens > self.long_context_above:
            input_price = self.long_input if self.long_input is not None else self.input
            output_price = self.long_output if self.long_output is not None else self.output
            return (input_tokens * input_price + output_tokens * output_price) / 1_000_000
        return self.base_cost(input_tokens, output_tokens)

    def base_cost(self, input_tokens: int, output_tokens: int) -> float:
        """The cost of tokens from requests below any long-context threshold."""
        return (input_tokens * self.input + output_tokens * self.output) / 1_000_000


@dataclass
class PriceTable:
    as_of: str
    prices: dict[str, dict[str, ModelPrice]]
    sources: list[str] = field(default_factory=list)

    def lookup(self, provider: str, model: str) -> ModelPrice | None:
        """Exact model id (case-insensitive), then without a `models/` prefix, a `-latest` alias
        suffix or a date snapshot suffix. Nothing fuzzier: a wrong price is worse than none."""
        models = {name.lower(): price for name, price in self.prices.get(provider, {}).items()}
        name = model.strip().lower().removeprefix("models/")
        for candidate in (name, name.removesuffix("-latest"), _DATE_SUFFIX.sub("", name)):
            if candidate in models:
                return models[candidate]
        return None


def user_prices_path() -> Path:
    """`$BATCHLING_PRICES`, else `prices.json` in the batchling home directory."""
    override = os.environ.get(PRICES_ENV)
    if override:
        return Path(override).expanduser()
    from batchling.home import home_dir

    return home_dir() / PRICES_FILE_NAME


def builtin_table() -> PriceTable:
    # Imported here: building the table reads every provider folder's data, which commands
    # that never price anything (list, --help) must not pay for at start-up.
    from batchling import price_table

    prices: dict[str, dict[str, ModelPrice]] = {}
    for provider, models in price_table.BATCH_PRICES.items():
        tiers = price_table.LONG_CONTEXT.get(provider, {})
        prices[provider] = {}
        for model, (input_price, output_price) in models.items():
            above, long_input, long_output = tiers.get(model, (None, None, None))
            prices[provider][model] = ModelPrice(
                input_price, output_price, above, long_input, long_output
            )
    # Named provider profiles (built-in and the user's) carry their own prices.
    for name in registry.profile_folders():
        prices[name] = {
            model: ModelPrice(given, got, None, None, None)
            for model, (given, got) in registry.provider_info(name).batch_prices.items()
        }
    return PriceTable(price_table.AS_OF, prices, [f"built-in table of {price_table.AS_OF}"])


def load_price_table(path: Path | None = None) -> PriceTable:
    """The built-in table with the user's prices file (if it exists) laid over it."""
    table = builtin_table()
    path = path or user_prices_path()
    if not path.is_file():
        return table
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigurationError(f"Cannot read the prices file {path}: {error}.") from None
    overrides = _parse_prices_file(data, path)
    for provider, models in overrides.items():
        table.prices.setdefault(provider, {}).update(models)
    as_of = data.get("as_of") if isinstance(data.get("as_of"), str) else None
    table.sources.append(f"{path}" + (f" of {as_of}" if as_of else ""))
    if as_of:
        table.as_of = max(table.as_of, as_of)
    return table


def _parse_prices_file(data: Any, path: Path) -> dict[str, dict[str, ModelPrice]]:
    provider = PROVIDERS[0]
    example = f'{{"prices": {{"{provider}": {{"my-model": {{"input": 0.1, "output": 0.4}}}}}}}}'
    prices = data.get("prices") if isinstance(data, dict) else None
    if not isinstance(prices, dict):
        raise ConfigurationError(
            f"The prices file {path} needs a 'prices' object, like {example} "
            "(USD per million tokens at batch prices)."
        )
    parsed: dict[str, dict[str, ModelPrice]] = {}
    for provider, models in prices.items():
        if not isinstance(models, dict):
            raise ConfigurationError(
                f"The prices file {path}: prices.{provider} must map model ids to prices."
            )
        parsed[provider] = {}
        for model, entry in models.items():
            parsed[provider][model] = _parse_price(entry, f"{path}: prices.{provider}.{model}")
    return parsed


def _parse_price(entry: Any, where: str) -> ModelPrice:
    def number(value: Any, name: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigurationError(
                f"{where}.{name} must be a non-negative number (USD per million tokens)."
            )
        return float(value)

    if not isinstance(entry, dict) or "input" not in entry or "output" not in entry:
        raise ConfigurationError(f'{where} must be {{"input": USD, "output": USD}}.')
    long = entry.get("long_context")
    if long is None:
        return ModelPrice(number(entry["input"], "input"), number(entry["output"], "output"))
    if not isinstance(long, dict) or not {"above_input_tokens", "input", "output"} <= set(long):
        raise ConfigurationError(
            f'{where}.long_context must be {{"above_input_tokens": N, "input": USD, "output": USD}}.'
        )
    return ModelPrice(
        number(entry["input"], "input"),
        number(entry["output"], "output"),
        int(number(long["above_input_tokens"], "long_context.above_input_tokens")),
        number(long["input"], "long_context.input"),
        number(long["output"], "long_context.output"),
    )


def format_usd(usd: float | None) -> str:
    if usd is None:
        return "unknown"
    if usd == 0:
        return "$0"
    if usd >= 1:
        return f"${usd:,.2f}"
    return f"${usd:.6f}".rstrip("0") if usd < 0.01 else f"${usd:.4f}"


def estimate_usd(
    price: ModelPrice,
    input_tokens: int,
    output_tokens: int,
    large_requests: Iterable[tuple[int, int]],
) -> float:
    """An estimate's cost: requests above any long-context threshold priced one by one."""
    large = list(large_requests)
    large_in = sum(i for i, _ in large)
    large_out = sum(o for _, o in large)
    return price.base_cost(input_tokens - large_in, output_tokens - large_out) + sum(
        price.cost(i, o) for i, o in large
    )


def usage_usd(price: ModelPrice, pairs: Iterable[tuple[int, int]]) -> float:
    """The cost of the (input, output) tokens each request reported, request by request."""
    usd = 0.0
    for input_tokens, output_tokens in pairs:
        usd += price.cost(input_tokens, output_tokens)
    return usd


class Usd(NamedTuple):
    usd: float | None


class ShortCost(NamedTuple):
    """The figures `batchling list` shows of pricing.ExperimentCost, computed the same way."""

    priced: bool
    estimate: Usd
    actual: Usd | None


def short_cost_of(
    table: PriceTable,
    provider: str,
    model: str,
    estimate: Mapping[str, Any],
    usages: list[tuple[int, int]] | None,
) -> ShortCost | None:
    """From a stored token estimate (the `token_estimate` option) and the reported usage (None
    before results); None when the stored estimate is not plainly well formed."""
    tokens = [estimate.get("input_tokens", 0), estimate.get("output_tokens", 0)]
    large = estimate.get("large_requests", [])
    if not isinstance(large, list) or not all(
        isinstance(pair, list) and len(pair) == 2 for pair in large
    ):
        return None
    pairs = [(pair[0], pair[1]) for pair in large]
    numbers = [*tokens, *(n for pair in pairs for n in pair)]
    if not all(type(n) is int for n in numbers):
        return None
    price = table.lookup(provider, model)
    if price is None:
        return ShortCost(False, Usd(None), Usd(None) if usages is not None else None)
    return ShortCost(
        True,
        Usd(estimate_usd(price, tokens[0], tokens[1], pairs)),
        Usd(usage_usd(price, usages)) if usages is not None else None,
    )
