"""Built-in batch prices: USD per million tokens, already at the batch discount (50% of standard).

Data only. Prices change: users override or add models with a prices file (see batchling.pricing).
A model in `LONG_CONTEXT` costs its long-context price on every token of a request whose input
is above the threshold (Gemini 2.5 Pro and 3 Pro, Claude Sonnet 4 / 4.5 past 200k tokens).
"""

from __future__ import annotations

AS_OF = "2025-11-25"

# provider -> model -> (input, output), USD per 1M tokens at batch prices.
BATCH_PRICES: dict[str, dict[str, tuple[float, float]]] = {
    "openai": {
        "gpt-5": (0.625, 5.0),
        "gpt-5-mini": (0.125, 1.0),
        "gpt-5-nano": (0.025, 0.2),
        "gpt-4.1": (1.0, 4.0),
        "gpt-4.1-mini": (0.2, 0.8),
        "gpt-4.1-nano": (0.05, 0.2),
        "gpt-4o": (1.25, 5.0),
        "gpt-4o-2024-05-13": (2.5, 7.5),
        "gpt-4o-mini": (0.075, 0.3),
        "o1": (7.5, 30.0),
        "o3": (1.0, 4.0),
        "o3-mini": (0.55, 2.2),
        "o4-mini": (0.55, 2.2),
        "gpt-3.5-turbo": (0.25, 0.75),
        "text-embedding-3-small": (0.01, 0.0),
        "text-embedding-3-large": (0.065, 0.0),
        "text-embedding-ada-002": (0.05, 0.0),
    },
    "anthropic": {
        "claude-opus-4-5": (2.5, 12.5),
        "claude-opus-4-1": (7.5, 37.5),
        "claude-opus-4-0": (7.5, 37.5),
        "claude-opus-4": (7.5, 37.5),
        "claude-sonnet-4-5": (1.5, 7.5),
        "claude-sonnet-4-0": (1.5, 7.5),
        "claude-sonnet-4": (1.5, 7.5),
        "claude-3-7-sonnet": (1.5, 7.5),
        "claude-haiku-4-5": (0.5, 2.5),
        "claude-3-5-haiku": (0.4, 2.0),
        "claude-3-haiku": (0.125, 0.625),
    },
    "gemini": {
        "gemini-3-pro-preview": (1.0, 6.0),
        "gemini-2.5-pro": (0.625, 5.0),
        "gemini-2.5-flash": (0.15, 1.25),
        "gemini-2.5-flash-lite": (0.05, 0.2),
        "gemini-2.0-flash": (0.05, 0.2),
        "gemini-2.0-flash-lite": (0.0375, 0.15),
        "gemini-embedding-001": (0.075, 0.0),
    },
    "groq": {
        "llama-3.1-8b-instant": (0.025, 0.04),
        "llama-3.3-70b-versatile": (0.295, 0.395),
        "meta-llama/llama-4-scout-17b-16e-instruct": (0.055, 0.17),
        "meta-llama/llama-4-maverick-17b-128e-instruct": (0.1, 0.3),
        "openai/gpt-oss-120b": (0.075, 0.375),
        "openai/gpt-oss-20b": (0.05, 0.25),
        "qwen/qwen3-32b": (0.145, 0.295),
        "moonshotai/kimi-k2-instruct": (0.5, 1.5),
    },
    "mistral": {
        "mistral-large-latest": (1.0, 3.0),
        "mistral-medium-latest": (0.2, 1.0),
        "mistral-small-latest": (0.05, 0.15),
        "magistral-medium-latest": (1.0, 2.5),
        "magistral-small-latest": (0.25, 0.75),
        "codestral-latest": (0.15, 0.45),
        "pixtral-large-latest": (1.0, 3.0),
        "ministral-8b-latest": (0.05, 0.05),
        "ministral-3b-latest": (0.02, 0.02),
        "open-mistral-nemo": (0.075, 0.075),
        "mistral-embed": (0.05, 0.0),
        "mistral-moderation-latest": (0.05, 0.0),
    },
    "together": {
        "meta-llama/Llama-3.3-70B-Instruct-Turbo": (0.44, 0.44),
        "meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo": (0.09, 0.09),
        "meta-llama/Meta-Llama-3.1-70B-Instruct-Turbo": (0.44, 0.44),
        "meta-llama/Meta-Llama-3.1-405B-Instruct-Turbo": (1.75, 1.75),
        "meta-llama/Llama-4-Maverick-17B-128E-Instruct-FP8": (0.135, 0.425),
        "meta-llama/Llama-4-Scout-17B-16E-Instruct": (0.09, 0.295),
        "deepseek-ai/DeepSeek-V3": (0.625, 0.625),
        "deepseek-ai/DeepSeek-R1": (1.5, 3.5),
        "Qwen/Qwen2.5-72B-Instruct-Turbo": (0.6, 0.6),
        "Qwen/Qwen2.5-7B-Instruct-Turbo": (0.15, 0.15),
        "mistralai/Mixtral-8x7B-Instruct-v0.1": (0.3, 0.3),
        "openai/gpt-oss-120b": (0.075, 0.3),
        "openai/gpt-oss-20b": (0.025, 0.1),
    },
}

# provider -> model -> (input tokens above which the tier applies, input, output).
LONG_CONTEXT: dict[str, dict[str, tuple[int, float, float]]] = {
    "anthropic": {
        "claude-sonnet-4-5": (200_000, 3.0, 11.25),
        "claude-sonnet-4-0": (200_000, 3.0, 11.25),
        "claude-sonnet-4": (200_000, 3.0, 11.25),
    },
    "gemini": {
        "gemini-3-pro-preview": (200_000, 2.0, 9.0),
        "gemini-2.5-pro": (200_000, 1.25, 7.5),
    },
}
