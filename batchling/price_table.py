"""Built-in batch prices: USD per million tokens, already at the batch discount (50% of standard).

The prices themselves live in each provider's folder (`batchling/providers/<name>/__init__.py`);
this module gathers them. Prices change: users override or add models with a prices file (see batchling.pricing).
A model in `LONG_CONTEXT` costs its long-context price on every token of a request whose input
is above the threshold (Gemini 2.5 Pro and 3 Pro, Claude Sonnet 4 / 4.5 past 200k tokens).
"""

from __future__ import annotations

from batchling.providers import PROVIDERS
from batchling.providers.registry import provider_info

AS_OF = "2025-11-25"

# provider -> model -> (input, output), USD per 1M tokens at batch prices: each provider folder's
# `batch_prices`, in the order of PROVIDERS.
BATCH_PRICES: dict[str, dict[str, tuple[float, float]]] = {
    name: dict(provider_info(name).batch_prices) for name in PROVIDERS
}

# provider -> model -> (input tokens above which the tier applies, input, output).
LONG_CONTEXT: dict[str, dict[str, tuple[int, float, float]]] = {
    name: dict(tiers) for name in PROVIDERS if (tiers := provider_info(name).long_context_prices)
}
