"""Cost in US dollars: a dated table of batch prices, estimates before start, actual cost after.

Estimates count tokens with tiktoken (`o200k_base`) when it is installed, else with a documented
approximation: 4 characters a token, plus 4 tokens a message and 765 an image. Output tokens are
counted at each request's `max_tokens` (1024 when unset), so an estimate is a ceiling. Actual cost
comes from the token usage the provider reported for each request. A model missing from the table
has no cost: it is shown as unknown, never guessed.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from batchling.errors import ConfigurationError, CostLimitError
from batchling.models import ImagePart, RawRequest, Usage
from batchling.providers import PROVIDERS, registry

PRICES_ENV = "BATCHLING_PRICES"
PRICES_FILE_NAME = "prices.json"
CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD_TOKENS = 4
IMAGE_TOKENS = 765
ASSUMED_OUTPUT_TOKENS = 1024
# Requests above this many input tokens are kept one by one in an estimate, for long-context tiers.
LARGE_REQUEST_TOKENS = 32_000
APPROXIMATION = "approximation: 4 characters a token"
# Endpoints that produce no output tokens: only their input is billed.
_INPUT_ONLY = re.compile(r"embed|moderation", re.IGNORECASE)
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


def similar_model(table: PriceTable, provider: str, model: str) -> str | None:
    """A known model of `provider` that `model` is likely a misspelling of, when it is unknown."""
    import difflib

    if table.lookup(provider, model) is not None:
        return None
    known = list(table.prices.get(provider, {}))
    close = difflib.get_close_matches(model.strip(), known, n=1, cutoff=0.8)
    return close[0] if close else None


def unknown_price_message(provider: str, model: str) -> str:
    return (
        f"No price is known for {provider}:{model}. Add it to {user_prices_path()} "
        f'(or the file named by ${PRICES_ENV}) as {{"prices": {{"{provider}": {{"{model}": '
        '{"input": USD, "output": USD}}}} in USD per million tokens at batch prices.'
    )


# token counting


def _approximate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


@lru_cache(maxsize=1)
def token_counter() -> tuple[Callable[[str], int], str]:
    """tiktoken's o200k_base when it is installed and its data loads, else the approximation."""
    try:
        import tiktoken

        encoding = tiktoken.get_encoding("o200k_base")
    except Exception:
        return _approximate_tokens, APPROXIMATION

    def count(text: str) -> int:
        return len(encoding.encode(text, disallowed_special=()))

    return count, "tiktoken o200k_base"


class TokenEstimate(BaseModel):
    model_config = ConfigDict(defer_build=True)

    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    method: str = APPROXIMATION
    # (input, output) of each request above LARGE_REQUEST_TOKENS (also in the totals).
    large_requests: list[tuple[int, int]] = Field(default_factory=list)

    def priced(self, price: ModelPrice) -> float:
        large_in = sum(i for i, _ in self.large_requests)
        large_out = sum(o for _, o in self.large_requests)
        return price.base_cost(self.input_tokens - large_in, self.output_tokens - large_out) + sum(
            price.cost(i, o) for i, o in self.large_requests
        )


def estimate_request_tokens(
    request: RawRequest, *, endpoint: str = "", count: Callable[[str], int] | None = None
) -> tuple[int, int]:
    """(input, output) tokens of one request; output is its max_tokens (a ceiling)."""
    count = count or token_counter()[0]
    tokens = count(request.system_prompt) + MESSAGE_OVERHEAD_TOKENS if request.system_prompt else 0
    for message in request.messages:
        tokens += MESSAGE_OVERHEAD_TOKENS + count(message.text())
        if not isinstance(message.content, str):
            tokens += IMAGE_TOKENS * sum(isinstance(p, ImagePart) for p in message.content)
    output = 0 if _INPUT_ONLY.search(endpoint) else request.max_tokens or ASSUMED_OUTPUT_TOKENS
    return tokens, output


class TokenTally:
    """The token estimate of requests counted one at a time, as they stream into an experiment.
    Plain counters: this runs once per request, where a model's attribute writes would show."""

    def __init__(self, *, endpoint: str = "") -> None:
        self.endpoint = endpoint
        self._count, self._method = token_counter()
        self._input_only = bool(_INPUT_ONLY.search(endpoint))
        self._approximate = self._count is _approximate_tokens
        self.requests = self.input_tokens = self.output_tokens = 0
        self.large_requests: list[tuple[int, int]] = []

    def add(self, request: RawRequest) -> None:
        tokens = self._plain_text_tokens(request) if self._approximate else None
        if tokens is None:
            tokens, tokens_out = estimate_request_tokens(
                request, endpoint=self.endpoint, count=self._count
            )
        else:
            tokens_out = 0 if self._input_only else request.max_tokens or ASSUMED_OUTPUT_TOKENS
        self.requests += 1
        self.input_tokens += tokens
        self.output_tokens += tokens_out
        if tokens > LARGE_REQUEST_TOKENS:
            self.large_requests.append((tokens, tokens_out))

    @staticmethod
    def _plain_text_tokens(request: RawRequest) -> int | None:
        """estimate_request_tokens' approximation for a text-only request, inlined; None when a
        message has parts."""
        system = request.system_prompt
        tokens = -(-len(system) // CHARS_PER_TOKEN) + MESSAGE_OVERHEAD_TOKENS if system else 0
        for message in request.messages:
            content = message.content
            if type(content) is not str:
                return None
            tokens += MESSAGE_OVERHEAD_TOKENS - (-len(content) // CHARS_PER_TOKEN)
        return tokens

    @property
    def estimate(self) -> TokenEstimate:
        return TokenEstimate(
            requests=self.requests,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            method=self._method,
            large_requests=self.large_requests,
        )

    def options(self) -> dict[str, Any]:
        """What the experiment stores under its options once every request went by."""
        return {"token_estimate": self.estimate.model_dump()}


def estimate_tokens(requests: Iterable[RawRequest], *, endpoint: str = "") -> TokenEstimate:
    count, method = token_counter()
    per_request = [estimate_request_tokens(r, endpoint=endpoint, count=count) for r in requests]
    return TokenEstimate(
        requests=len(per_request),
        input_tokens=sum(i for i, _ in per_request),
        output_tokens=sum(o for _, o in per_request),
        method=method,
        large_requests=[pair for pair in per_request if pair[0] > LARGE_REQUEST_TOKENS],
    )


# costs


class CostFigure(BaseModel):
    """Tokens and their price; `usd` is None when the model has no known price."""

    model_config = ConfigDict(defer_build=True)

    input_tokens: int = 0
    output_tokens: int = 0
    usd: float | None = None


class ExperimentCost(BaseModel):
    """An experiment's estimated cost (before start) and actual cost (once results are stored)."""

    model_config = ConfigDict(defer_build=True)

    provider: str
    model: str
    priced: bool
    prices_as_of: str | None = None
    estimate: CostFigure
    estimate_method: str = APPROXIMATION
    actual: CostFigure | None = None

    @property
    def usd(self) -> float | None:
        """The actual cost when known, else the estimate."""
        return self.actual.usd if self.actual is not None else self.estimate.usd


def _priced(pairs: Iterable[tuple[int, int]], price: ModelPrice | None) -> CostFigure:
    figure = CostFigure()
    usd = 0.0
    for input_tokens, output_tokens in pairs:
        figure.input_tokens += input_tokens
        figure.output_tokens += output_tokens
        if price is not None:
            usd += price.cost(input_tokens, output_tokens)
    figure.usd = usd if price is not None else None
    return figure


def estimate_cost(
    requests: Iterable[RawRequest] | TokenEstimate,
    provider: str,
    model: str,
    *,
    endpoint: str = "",
    table: PriceTable | None = None,
) -> CostFigure:
    """The estimated cost of the requests on the model (a ceiling: output at max_tokens)."""
    estimate = (
        requests
        if isinstance(requests, TokenEstimate)
        else estimate_tokens(requests, endpoint=endpoint)
    )
    price = (table or load_price_table()).lookup(provider, model)
    return CostFigure(
        input_tokens=estimate.input_tokens,
        output_tokens=estimate.output_tokens,
        usd=estimate.priced(price) if price is not None else None,
    )


def actual_cost(
    usages: Iterable[Usage | None], provider: str, model: str, *, table: PriceTable | None = None
) -> CostFigure:
    """The cost of the usage the provider reported, request by request (for tiered prices)."""
    price = (table or load_price_table()).lookup(provider, model)
    pairs = ((u.input_tokens, u.output_tokens) for u in usages if u is not None)
    return _priced(pairs, price)


def experiment_cost(
    provider: str,
    model: str,
    estimate: TokenEstimate,
    usages: Iterable[Usage | None] | None,
    *,
    table: PriceTable | None = None,
) -> ExperimentCost:
    table = table or load_price_table()
    price = table.lookup(provider, model)
    return ExperimentCost(
        provider=provider,
        model=model,
        priced=price is not None,
        prices_as_of=table.as_of if price is not None else None,
        estimate=estimate_cost(estimate, provider, model, table=table),
        estimate_method=estimate.method,
        actual=actual_cost(usages, provider, model, table=table) if usages is not None else None,
    )


def format_usd(usd: float | None) -> str:
    if usd is None:
        return "unknown"
    if usd == 0:
        return "$0"
    if usd >= 1:
        return f"${usd:,.2f}"
    return f"${usd:.6f}".rstrip("0") if usd < 0.01 else f"${usd:.4f}"


def total_usd(costs: Iterable[float | None]) -> tuple[float, int]:
    """The sum of the known costs and how many were unknown."""
    known, unknown = 0.0, 0
    for usd in costs:
        if usd is None:
            unknown += 1
        else:
            known += usd
    return known, unknown


def token_estimate_from_options(options: Mapping[str, Any]) -> TokenEstimate | None:
    stored = options.get("token_estimate")
    return TokenEstimate.model_validate(stored) if isinstance(stored, dict) else None


def check_cost_limit(max_cost: float, costs: Iterable[ExperimentCost], *, afterwards: str) -> None:
    """Refuse (CostLimitError) when the estimate is above `max_cost` or cannot be made.

    `afterwards` tells the user where things stand (e.g. the experiment stays created)."""
    costs = list(costs)
    unpriced = [c for c in costs if c.estimate.usd is None]
    if unpriced:
        first = unpriced[0]
        names = ", ".join(f"{c.provider}:{c.model}" for c in unpriced)
        raise CostLimitError(
            f"A cost limit of {format_usd(max_cost)} is set but the cost of {names} cannot be "
            f"estimated: nothing was sent. {unknown_price_message(first.provider, first.model)} "
            f"{afterwards}"
        )
    total = sum(c.estimate.usd or 0.0 for c in costs)
    if total > max_cost:
        parts = ", ".join(f"{c.provider}:{c.model} {format_usd(c.estimate.usd)}" for c in costs)
        raise CostLimitError(
            f"The estimated cost {format_usd(total)} ({parts}) is above the limit of "
            f"{format_usd(max_cost)}: nothing was sent. The estimate counts output tokens at each "
            f"request's max_tokens ({ASSUMED_OUTPUT_TOKENS} when unset); lower max_tokens or raise "
            f"the limit. {afterwards}"
        )
