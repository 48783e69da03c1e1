from __future__ import annotations

import json
import math
import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from batchling import price_table, pricing
from batchling.errors import ConfigurationError, CostLimitError
from batchling.models import RawRequest, Usage
from batchling.pricing import (
    APPROXIMATION,
    ASSUMED_OUTPUT_TOKENS,
    IMAGE_TOKENS,
    LARGE_REQUEST_TOKENS,
    MESSAGE_OVERHEAD_TOKENS,
    ModelPrice,
    TokenTally,
    actual_cost,
    builtin_table,
    check_cost_limit,
    estimate_cost,
    estimate_tokens,
    experiment_cost,
    format_usd,
    load_price_table,
)


@pytest.fixture(autouse=True)
def approximate_tokens(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The documented approximation, whether or not tiktoken happens to be installed."""
    monkeypatch.setitem(sys.modules, "tiktoken", None)
    pricing.token_counter.cache_clear()
    yield
    pricing.token_counter.cache_clear()


def request(text: str, *, system: str | None = None, max_tokens: int | None = None) -> RawRequest:
    return RawRequest.model_validate(
        {
            "system_prompt": system,
            "messages": [{"role": "user", "content": text}],
            "max_tokens": max_tokens,
        }
    )


def test_the_table_is_dated_and_covers_the_six_providers() -> None:
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", price_table.AS_OF)
    table = builtin_table()
    assert table.as_of == price_table.AS_OF
    for provider in ("openai", "anthropic", "gemini", "groq", "mistral", "together"):
        assert len(table.prices[provider]) >= 5, provider
    # Every demo model has a price, so the demo and the README examples show costs.
    from batchling.demo import DEMO_MODELS
    from batchling.providers.registry import provider_info

    for provider, model in DEMO_MODELS.items():
        # A service whose documentation gives no prices (the generic OpenAI-compatible one,
        # Novita) has none in the table: its costs show as unknown, never as made up.
        if provider_info(provider).batch_prices:
            assert table.lookup(provider, model) is not None, (provider, model)


def test_batch_prices_are_half_the_standard_ones() -> None:
    price = builtin_table().lookup("openai", "gpt-4o-mini")
    assert price == ModelPrice(0.075, 0.3)  # standard 0.15 / 0.60


@pytest.mark.parametrize(
    ("provider", "model", "expected"),
    [
        ("openai", "gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("anthropic", "claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("anthropic", "claude-3-7-sonnet-latest", "claude-3-7-sonnet"),
        ("gemini", "models/gemini-2.5-flash", "gemini-2.5-flash"),
        (
            "together",
            "meta-llama/llama-3.3-70b-instruct-turbo",
            "meta-llama/Llama-3.3-70B-Instruct-Turbo",
        ),
        ("mistral", "mistral-small-latest", "mistral-small-latest"),
    ],
)
def test_lookup_finds_snapshots_aliases_and_prefixed_names(
    provider: str, model: str, expected: str
) -> None:
    table = builtin_table()
    assert table.lookup(provider, model) == table.prices[provider][expected]


def test_lookup_never_guesses_a_price() -> None:
    table = builtin_table()
    assert table.lookup("openai", "gpt-4o-mini-super") is None
    assert table.lookup("openai", "claude-haiku-4-5") is None  # right model, wrong provider
    assert table.lookup("nobody", "gpt-4o") is None
    # An old snapshot with its own price is not folded into the alias.
    assert table.lookup("openai", "gpt-4o-2024-05-13") != table.lookup("openai", "gpt-4o")


def test_the_approximation_is_four_characters_a_token_plus_message_overheads() -> None:
    estimate = estimate_tokens(
        [request("x" * 40, system="y" * 9, max_tokens=50), request("z" * 3)],
        endpoint="/v1/chat/completions",
    )
    assert estimate.method == APPROXIMATION
    first = 10 + MESSAGE_OVERHEAD_TOKENS + math.ceil(9 / 4) + MESSAGE_OVERHEAD_TOKENS
    second = 1 + MESSAGE_OVERHEAD_TOKENS
    assert estimate.input_tokens == first + second
    assert estimate.output_tokens == 50 + ASSUMED_OUTPUT_TOKENS
    assert estimate.requests == 2


def test_images_count_and_embeddings_have_no_output() -> None:
    image = RawRequest.model_validate(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "abcd"},
                        {"type": "image", "url": "https://example.com/a.png"},
                    ],
                }
            ]
        }
    )
    estimate = estimate_tokens([image], endpoint="/v1/embeddings")
    assert estimate.input_tokens == 1 + MESSAGE_OVERHEAD_TOKENS + IMAGE_TOKENS
    assert estimate.output_tokens == 0


@pytest.mark.parametrize("endpoint", ["/v1/chat/completions", "/v1/embeddings"])
def test_the_streaming_tally_counts_like_the_estimate(endpoint: str) -> None:
    requests = [
        request("q" * (i * 7 % 23 + 1), system="s" * (i % 3 * 5), max_tokens=50 if i % 2 else None)
        for i in range(40)
    ]
    requests.append(
        RawRequest.model_validate(
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "abcd"},
                            {"type": "image", "url": "https://example.com/a.png"},
                        ],
                    }
                ]
            }
        )
    )
    big = request("w" * (4 * LARGE_REQUEST_TOKENS + 8))
    tally = TokenTally(endpoint=endpoint)
    for item in [*requests, big]:
        tally.add(item)
    assert tally.estimate == estimate_tokens([*requests, big], endpoint=endpoint)
    assert tally.estimate.large_requests and tally.options()["token_estimate"]["requests"] == 42


def test_a_tokenizer_is_used_when_one_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    class Encoding:
        def encode(self, text: str, disallowed_special: tuple[()] = ()) -> list[int]:
            return [0] * len(text.split())

    fake = types.SimpleNamespace(get_encoding=lambda name: Encoding())
    monkeypatch.setitem(sys.modules, "tiktoken", fake)
    monkeypatch.delenv("BATCHLING_TOKENIZER", raising=False)
    pricing.token_counter.cache_clear()
    estimate = estimate_tokens([request("one two three four five")])
    assert estimate.method == "tiktoken o200k_base"
    assert estimate.input_tokens == 5 + MESSAGE_OVERHEAD_TOKENS


def test_the_approximation_is_chosen_without_loading_tiktoken(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # tiktoken downloads its data at first use: with the variable set it is never asked.
    def no_download(name: str) -> None:
        raise AssertionError("tiktoken was asked for its data")

    monkeypatch.setitem(sys.modules, "tiktoken", types.SimpleNamespace(get_encoding=no_download))
    monkeypatch.setenv("BATCHLING_TOKENIZER", " Approximate ")
    pricing.token_counter.cache_clear()
    estimate = estimate_tokens([request("x" * 40)])
    assert estimate.method == APPROXIMATION
    assert estimate.input_tokens == 10 + MESSAGE_OVERHEAD_TOKENS


def test_an_unknown_tokenizer_is_one_line_naming_the_choices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BATCHLING_TOKENIZER", "cl100k")
    pricing.token_counter.cache_clear()
    with pytest.raises(ConfigurationError) as raised:
        estimate_tokens([request("x")])
    assert str(raised.value) == (
        "BATCHLING_TOKENIZER must be one of auto, approximate, not 'cl100k'."
    )


def test_estimate_cost_on_a_known_model() -> None:
    requests = [request("x" * 396, max_tokens=100)] * 10  # 99 + 4 = 103 input tokens each
    figure = estimate_cost(requests, "openai", "gpt-4o-mini", table=builtin_table())
    assert (figure.input_tokens, figure.output_tokens) == (1030, 1000)
    assert figure.usd == pytest.approx((1030 * 0.075 + 1000 * 0.3) / 1e6)


def test_actual_cost_from_reported_usage() -> None:
    usages = [Usage(input_tokens=1000, output_tokens=500), None, Usage(input_tokens=2000)]
    figure = actual_cost(usages, "anthropic", "claude-haiku-4-5", table=builtin_table())
    assert (figure.input_tokens, figure.output_tokens) == (3000, 500)
    assert figure.usd == pytest.approx((3000 * 0.5 + 500 * 2.5) / 1e6)


def test_long_context_requests_pay_the_long_price_on_all_their_tokens() -> None:
    table = builtin_table()
    usages = [Usage(input_tokens=300_000, output_tokens=1000), Usage(input_tokens=1000)]
    figure = actual_cost(usages, "gemini", "gemini-2.5-pro", table=table)
    long_part = (300_000 * 1.25 + 1000 * 7.5) / 1e6
    short_part = 1000 * 0.625 / 1e6
    assert figure.usd == pytest.approx(long_part + short_part)
    # The estimate keeps large requests apart, so the tier applies there too.
    estimate = estimate_tokens([request("x" * 1_200_000, max_tokens=1000), request("y" * 3996)])
    assert estimate.large_requests == [(300_004, 1000)]
    usd = estimate_cost(estimate, "gemini", "gemini-2.5-pro", table=table).usd
    expected = (300_004 * 1.25 + 1000 * 7.5) / 1e6 + (1003 * 0.625 + 1024 * 5.0) / 1e6
    assert usd == pytest.approx(expected)


def test_unknown_model_costs_are_unknown_not_guessed() -> None:
    estimate = estimate_tokens([request("hello")])
    cost = experiment_cost("openai", "my-fine-tune", estimate, [Usage(input_tokens=5)])
    assert not cost.priced
    assert cost.estimate.usd is None and cost.actual is not None and cost.actual.usd is None
    assert cost.actual.input_tokens == 5  # tokens are still counted
    assert format_usd(cost.usd) == "unknown"


def test_user_file_overrides_and_adds_prices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "my-prices.json"
    path.write_text(
        json.dumps(
            {
                "as_of": "2099-01-01",
                "prices": {
                    "openai": {
                        "gpt-4o-mini": {"input": 1, "output": 2},
                        "ft:my-model": {
                            "input": 0.5,
                            "output": 1.5,
                            "long_context": {"above_input_tokens": 10, "input": 5, "output": 15},
                        },
                    },
                    "newcloud": {"m": {"input": 0, "output": 0}},
                },
            }
        )
    )
    monkeypatch.setenv("BATCHLING_PRICES", str(path))
    table = load_price_table()
    assert table.lookup("openai", "gpt-4o-mini") == ModelPrice(1.0, 2.0)
    assert table.lookup("openai", "ft:my-model") == ModelPrice(0.5, 1.5, 10, 5.0, 15.0)
    assert table.lookup("newcloud", "m") == ModelPrice(0.0, 0.0)
    assert table.lookup("anthropic", "claude-haiku-4-5") is not None  # built-in kept
    assert table.as_of == "2099-01-01" and str(path) in table.sources[-1]


def test_the_default_user_file_is_in_batchling_home(isolated_home: Path) -> None:
    isolated_home.mkdir(parents=True, exist_ok=True)
    (isolated_home / "prices.json").write_text(
        json.dumps({"prices": {"groq": {"my-model": {"input": 0.1, "output": 0.2}}}})
    )
    assert load_price_table().lookup("groq", "my-model") == ModelPrice(0.1, 0.2)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "Cannot read the prices file"),
        (json.dumps({"openai": {}}), "needs a 'prices' object"),
        (
            json.dumps({"prices": {"openai": {"m": {"input": -1, "output": 1}}}}),
            "prices.openai.m.input",
        ),
        (json.dumps({"prices": {"openai": {"m": {"input": 1}}}}), "prices.openai.m must be"),
        (json.dumps({"prices": {"openai": []}}), "must map model ids"),
    ],
)
def test_a_bad_prices_file_is_an_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str, message: str
) -> None:
    path = tmp_path / "prices.json"
    path.write_text(content)
    monkeypatch.setenv("BATCHLING_PRICES", str(path))
    with pytest.raises(ConfigurationError, match=re.escape(message)) as error:
        load_price_table()
    assert str(path) in str(error.value)


def test_cost_limit_refuses_above_the_limit_or_without_a_price() -> None:
    estimate = estimate_tokens([request("x" * 400, max_tokens=100)])
    known = experiment_cost("openai", "gpt-4o-mini", estimate, None)
    assert known.estimate.usd is not None
    check_cost_limit(known.estimate.usd, [known], afterwards="")
    with pytest.raises(CostLimitError, match="above the limit"):
        check_cost_limit(known.estimate.usd / 2, [known], afterwards="Stays created.")
    unknown = experiment_cost("openai", "mystery", estimate, None)
    with pytest.raises(CostLimitError, match="cannot be estimated") as error:
        check_cost_limit(1000, [known, unknown], afterwards="")
    assert "prices.json" in str(error.value) and "openai:mystery" in str(error.value)


def test_format_usd() -> None:
    assert format_usd(None) == "unknown"
    assert format_usd(0) == "$0"
    assert format_usd(1234.5) == "$1,234.50"
    assert format_usd(0.25) == "$0.2500"
    assert format_usd(0.000123) == "$0.000123"


def test_the_prices_command_shows_the_table_its_date_and_the_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from batchling.cli import cli

    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"prices": {"openai": {"ft:acme": {"input": 3, "output": 4}}}}))
    monkeypatch.setenv("BATCHLING_PRICES", str(path))
    result = CliRunner().invoke(
        cli, ["prices", "--provider", "openai"], obj={}, env={"COLUMNS": "300"}
    )
    assert result.exit_code == 0, result.output
    assert f"as of {price_table.AS_OF}" in result.output
    assert "gpt-4o-mini" in result.output and "0.075" in result.output
    assert "ft:acme" in result.output
    assert str(path) in "".join(result.output.split())  # the caption wraps
    assert "claude" not in result.output
