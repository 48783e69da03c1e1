"""Cost in US dollars: a dated table of batch prices, estimates before start, actual cost after.

Estimates count tokens with tiktoken (`o200k_base`) when it is installed, else with a documented
approximation: 4 characters a token, plus 4 tokens a message and 765 an image. Output tokens are
counted at each request's `max_tokens` (1024 when unset), so an estimate is a ceiling. Actual cost
comes from the token usage the provider reported for each request. A model missing from the table
has no cost: it is shown as unknown, never guessed.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from batchling.errors import ConfigurationError, CostLimitError
from batchling.models import ImagePart, RawRequest, Usage

# Re-exported: the price table and dollars live in prices.py (no pydantic there).
from batchling.prices import PRICES_ENV as PRICES_ENV
from batchling.prices import PRICES_FILE_NAME as PRICES_FILE_NAME
from batchling.prices import ModelPrice as ModelPrice
from batchling.prices import PriceTable as PriceTable
from batchling.prices import builtin_table as builtin_table
from batchling.prices import estimate_usd, usage_usd
from batchling.prices import format_usd as format_usd
from batchling.prices import load_price_table as load_price_table
from batchling.prices import user_prices_path as user_prices_path

CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD_TOKENS = 4
IMAGE_TOKENS = 765
ASSUMED_OUTPUT_TOKENS = 1024
# Requests above this many input tokens are kept one by one in an estimate, for long-context tiers.
LARGE_REQUEST_TOKENS = 32_000
APPROXIMATION = "approximation: 4 characters a token"
# Endpoints that produce no output tokens: only their input is billed.
_INPUT_ONLY = re.compile(r"embed|moderation", re.IGNORECASE)


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


TOKENIZER_ENV = "BATCHLING_TOKENIZER"
TOKENIZERS = ("auto", "approximate")


@lru_cache(maxsize=1)
def token_counter() -> tuple[Callable[[str], int], str]:
    """tiktoken's o200k_base when it is installed and its data loads, else the approximation.

    tiktoken downloads its data at first use; BATCHLING_TOKENIZER=approximate never tries (a
    machine without network access would otherwise wait on that download once per process)."""
    raw = os.environ.get(TOKENIZER_ENV, "").strip()
    choice = raw.lower() or "auto"
    if choice not in TOKENIZERS:
        raise ConfigurationError(
            f"{TOKENIZER_ENV} must be one of {', '.join(TOKENIZERS)}, not '{raw}'."
        )
    if choice == "approximate":
        return _approximate_tokens, APPROXIMATION
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
        return estimate_usd(price, self.input_tokens, self.output_tokens, self.large_requests)


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
    pairs = list(pairs)
    figure = CostFigure()
    figure.input_tokens = sum(i for i, _ in pairs)
    figure.output_tokens = sum(o for _, o in pairs)
    figure.usd = usage_usd(price, pairs) if price is not None else None
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
