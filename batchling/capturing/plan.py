"""What a capture would cost: requests and a token estimate per provider and model, priced
from batchling's price table. Used by dry_run and max_cost."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from batchling.pricing import (
    ASSUMED_OUTPUT_TOKENS,
    PriceTable,
    format_usd,
    load_price_table,
    token_counter,
    total_usd,
    unknown_price_message,
)
from batchling.providers.capture_rules import CaptureRules


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [
            t for key, v in value.items() if key not in ("model", "role", "type") for t in _texts(v)
        ]
    if isinstance(value, list):
        return [t for item in value for t in _texts(item)]
    return []


def request_tokens(rules: CaptureRules, endpoint: str, body: dict[str, Any]) -> tuple[int, int]:
    """(input, output) tokens of one captured body; output is its own limit when it sets one."""
    count = token_counter()[0]
    content = {
        k: v
        for k, v in body.items()
        if k
        in ("messages", "system", "input", "contents", "content", "systemInstruction", "prompt")
    }
    tokens = sum(count(text) for text in _texts(content))
    if endpoint in rules.input_only:
        return tokens, 0
    return tokens, rules.output_limit(body) or ASSUMED_OUTPUT_TOKENS


@dataclass
class PlanLine:
    provider: str
    model: str
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    usd: float | None = 0.0


@dataclass
class CapturePlan:
    """Requests a capture would send, per (provider, model), with their estimated cost."""

    lines: dict[tuple[str, str], PlanLine] = field(default_factory=dict)
    _prices: PriceTable | None = None

    def cost_of(self, provider: str, model: str, tokens: tuple[int, int]) -> float | None:
        if self._prices is None:
            self._prices = load_price_table()
        price = self._prices.lookup(provider, model)
        return None if price is None else price.cost(*tokens)

    def add(self, provider: str, model: str, tokens: tuple[int, int]) -> float | None:
        line = self.lines.setdefault((provider, model), PlanLine(provider, model))
        cost = self.cost_of(provider, model, tokens)
        line.requests += 1
        line.input_tokens += tokens[0]
        line.output_tokens += tokens[1]
        line.usd = None if cost is None or line.usd is None else line.usd + cost
        return cost

    @property
    def requests(self) -> int:
        return sum(line.requests for line in self.lines.values())

    @property
    def usd(self) -> float | None:
        costs = [line.usd for line in self.lines.values()]
        return None if any(c is None for c in costs) else sum(c or 0.0 for c in costs)

    def summary(self) -> str:
        rows = [
            f"  {line.provider}:{line.model}: {line.requests} requests, ~{line.input_tokens:,} "
            f"input + up to {line.output_tokens:,} output tokens, {format_usd(line.usd)}"
            for line in self.lines.values()
        ]
        known, unknown = total_usd(line.usd for line in self.lines.values())
        total = f"{self.requests} requests, estimated {format_usd(known)} at batch prices"
        if unknown:
            total += f" plus {unknown} model(s) of unknown price (not counted as $0)"
        unpriced = [
            f"  {unknown_price_message(line.provider, line.model)}"
            for line in self.lines.values()
            if line.usd is None
        ]
        return "\n".join([f"Dry run: {total}; nothing was sent.", *rows, *unpriced])
