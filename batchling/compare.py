"""Comparing providers: one experiment per target under one study name, answers side by side.

The pure half: targets, names, the comparison's shape and its export. The manager runs it.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from batchling.errors import InputError
from batchling.export import spreadsheet_safe
from batchling.models import Experiment, RawRequest, Result
from batchling.owned_files import writing
from batchling.pricing import ExperimentCost, total_usd


@dataclass(frozen=True)
class Target:
    provider: str
    model: str

    @property
    def label(self) -> str:
        return f"{self.provider}:{self.model}"


def parse_target(text: str | Target) -> Target:
    """`provider:model`, e.g. `openai:gpt-4o-mini` or `together:meta-llama/Llama-3.3-70B-Instruct-Turbo`."""
    if isinstance(text, Target):
        return text
    provider, _, model = text.partition(":")
    if not provider.strip() or not model.strip():
        raise InputError(
            f"Target '{text}' is not PROVIDER:MODEL, e.g. openai:gpt-4o-mini or "
            "anthropic:claude-haiku-4-5."
        )
    return Target(provider.strip().lower(), model.strip())


def parse_targets(texts: Iterable[str | Target]) -> list[Target]:
    targets: list[Target] = []
    for text in texts:
        target = parse_target(text)
        if target in targets:
            raise InputError(f"Target '{target.label}' is given twice: give each target once.")
        targets.append(target)
    if not targets:
        raise InputError("Give at least one target to compare (--target PROVIDER:MODEL).")
    return targets


def experiment_name_for(study: str, target: Target) -> str:
    slug = re.sub(r"[^a-z0-9._-]+", "-", target.model.lower()).strip("-")
    return f"{study}-{target.provider}-{slug}"


def default_study_name(now: datetime) -> str:
    return f"compare-{now:%Y%m%d-%H%M%S}"


def latency_seconds(experiment: Experiment, submitted_at: datetime | None) -> float | None:
    """Batch wall time: from the creation of its first batch at the provider to the poll that
    saw the experiment end."""
    if submitted_at is None or experiment.completed_at is None:
        return None
    return max(0.0, (experiment.completed_at - submitted_at).total_seconds())


def prompt_text(request: RawRequest) -> str:
    """The last user message: what the answers reply to."""
    users = [m for m in request.messages if m.role == "user"] or request.messages
    return users[-1].text()


def request_label(request: RawRequest, index: int) -> str:
    return request.id or f"sample-{index}"


def answer_text(result: Result | None) -> str:
    """The answer as one string: parsed JSON when there is some, else the text or the error."""
    if result is None:
        return ""
    if result.ok:
        if result.parsed is not None:
            parsed = result.parsed
            if isinstance(parsed, BaseModel):
                return parsed.model_dump_json()
            return json.dumps(parsed, ensure_ascii=False)
        return result.text or ""
    return f"[{result.status}] {result.error.message if result.error else ''}".strip()


class TargetSummary(BaseModel):
    target: str
    experiment: Experiment
    cost: ExperimentCost
    latency_seconds: float | None = None
    succeeded: int = 0
    failed: int = 0


class ComparisonRow(BaseModel):
    request: str
    prompt: str
    answers: dict[str, Result | None]


class Comparison(BaseModel):
    study: str
    targets: list[TargetSummary]
    rows: list[ComparisonRow]

    @property
    def total_cost(self) -> tuple[float, int]:
        """(the sum of the known costs, how many targets have no known price)."""
        return total_usd(t.cost.usd for t in self.targets)


def build_comparison(
    study: str,
    requests: Sequence[RawRequest],
    targets: Sequence[tuple[TargetSummary, Sequence[Result | None]]],
) -> Comparison:
    """`targets` pairs each summary with its results, aligned with `requests` by position."""
    rows = [
        ComparisonRow(
            request=request_label(request, index),
            prompt=prompt_text(request),
            answers={
                summary.target: results[index] if index < len(results) else None
                for summary, results in targets
            },
        )
        for index, request in enumerate(requests)
    ]
    return Comparison(study=study, targets=[summary for summary, _ in targets], rows=rows)


def check_comparison_path(path: Path) -> None:
    if path.suffix.lower() not in (".jsonl", ".csv"):
        raise InputError(f"Cannot export to {path}: give a .jsonl or .csv file name.")


def write_comparison(
    comparison: Comparison, path: Path, *, replace: bool = False, raw: bool = False
) -> Path:
    """A .jsonl (one line per request, answers by target) or .csv (a column pair per target),
    written whole or not at all; an existing file is replaced only with `replace`. CSV cells a
    spreadsheet would run as a formula are neutralised unless `raw` (export.spreadsheet_safe).
    The manager's `write_comparison` also checks and records who owns the file."""
    path = Path(path).expanduser()
    check_comparison_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with writing(path, "comparison file", replace=replace) as binary:
            handle = io.TextIOWrapper(binary, encoding="utf-8", newline="")
            if path.suffix.lower() == ".jsonl":
                for row in comparison.rows:
                    handle.write(json.dumps(_jsonl_row(comparison, row), ensure_ascii=False) + "\n")
            else:
                _write_csv(comparison, handle, raw=raw)
            handle.flush()
            handle.detach()
    except OSError as error:
        raise InputError(f"Cannot write the comparison to {path}: {error.strerror}.") from None
    return path


def _result_dict(result: Result | None) -> dict[str, Any] | None:
    if result is None:
        return None
    data: dict[str, Any] = result.model_dump(mode="json", exclude={"raw", "custom_id"})
    return data


def _jsonl_row(comparison: Comparison, row: ComparisonRow) -> dict[str, Any]:
    return {
        "study": comparison.study,
        "request": row.request,
        "prompt": row.prompt,
        "answers": {
            summary.target: {
                "experiment": summary.experiment.name,
                **(_result_dict(row.answers.get(summary.target)) or {"status": None}),
            }
            for summary in comparison.targets
        },
    }


def _write_csv(comparison: Comparison, handle: Any, *, raw: bool) -> None:
    writer = csv.writer(handle)
    header = ["request", "prompt"]
    for summary in comparison.targets:
        header += [
            f"{summary.target} status",
            f"{summary.target} answer",
            f"{summary.target} input_tokens",
            f"{summary.target} output_tokens",
        ]
    lines: list[list[Any]] = [header]
    for row in comparison.rows:
        line: list[Any] = [row.request, row.prompt]
        for summary in comparison.targets:
            result = row.answers.get(summary.target)
            usage = result.usage if result is not None else None
            line += [
                result.status if result is not None else "",
                answer_text(result),
                usage.input_tokens if usage else "",
                usage.output_tokens if usage else "",
            ]
        lines.append(line)
    for line in lines:
        writer.writerow(line if raw else [spreadsheet_safe(cell) for cell in line])
