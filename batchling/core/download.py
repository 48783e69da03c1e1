"""Downloading results once: streamed from the provider into the store, then the results file."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from pydantic import BaseModel, ValidationError

from batchling import resume
from batchling.core import lifecycle
from batchling.core.session import Session, output_policy
from batchling.errors import BatchlingError, InputError, InvalidStateError
from batchling.models import BatchRecord, Experiment, Result, ResultError, Status
from batchling.object_storage import upload
from batchling.owned_files import writing
from batchling.progress import TransferMeter
from batchling.provider_output import ResultIntake
from batchling.providers.base import BatchRef, BatchSnapshot, Provider
from batchling.records import ResultRecord, record_of
from batchling.result_sequence import ResultSequence
from batchling.results_file import RESULTS_FILE, ChunkLines, join_parts, part_path, remove_parts
from batchling.structured import ResponseFormat, parse_output
from batchling.updates import BatchUpdate, ExperimentUpdate

# Results stored per statement: fewer, bigger blocks hand SQLite's thread more work per GIL
# handoff (100,000 results: 1.8 s at 2,000, 1.5 s at 7,500; 20,000 no faster, +50 MB peak).
RESULTS_FLUSH_SIZE = 7500
RESULTS_FLUSH_BYTES = 8 * 1024 * 1024
"""...or fewer when the results are big (embeddings: ~60 KB of JSON a vector of 3,072)."""

_gc_pause = {"depth": 0, "was_enabled": False}


async def get_results(
    session: Session, experiment_name: str, response_model: type[BaseModel] | None = None
) -> ResultSequence:
    """Download once, store every result row, write the results JSONL file; returns the results.

    They come as a `ResultSequence` (a `Sequence[Result]` in request order, read from the
    store a page at a time when accessed, so memory stays flat however many there are).
    With a response format, `Result.parsed` holds instances of its class (`response_model`,
    else the class given at create, else the one importable from the stored path), or
    plain JSON values when no class is known; an answer that does not fit the class raises
    InputError when read (for the first 1,000, here)."""
    store = await session.store()
    experiment = await download_results(session, experiment_name)
    convert = await _parsed_converter(session, experiment_name, response_model)
    results = await store.result_sequence(experiment, convert)
    if convert is not None and results:
        # Reading the first page converts it: a class that does not fit fails here, not
        # at some later read.
        results[0]
    return results


async def iter_results(
    session: Session, experiment_name: str, response_model: type[BaseModel] | None = None
) -> AsyncIterator[Result]:
    store = await session.store()
    experiment = await download_results(session, experiment_name)
    convert = await _parsed_converter(session, experiment_name, response_model)
    # Closed with this iterator, so a consumer that stops early releases the cursor at once.
    async with contextlib.aclosing(store.iter_results(experiment)) as results:
        async for result in results:
            yield convert(result) if convert is not None else result


async def _parsed_converter(
    session: Session, experiment_name: str, response_model: type[BaseModel] | None
) -> Callable[[Result], Result] | None:
    """With a response class: a function giving a Result its `parsed` as an instance."""
    fmt = await session.response_format(experiment_name, response_model)
    model = fmt.model if fmt is not None else None
    if model is None:
        return None

    def convert(result: Result) -> Result:
        if result.parsed is not None:
            try:
                result.parsed = model.model_validate(result.parsed)
            except ValidationError as error:
                raise InputError(
                    f"The stored answer of '{result.custom_id}' does not fit "
                    f"{model.__name__}: {error.errors()[0]['msg']} at "
                    f"{'.'.join(str(p) for p in error.errors()[0]['loc']) or '(root)'}. "
                    "Pass the class the experiment was created with as response_model."
                ) from None
        return result

    return convert


async def download_results(session: Session, experiment_name: str) -> Experiment:
    store = await session.store()
    experiment = await store.get_experiment(experiment_name)
    if not experiment.is_finished:
        experiment = await lifecycle.refresh(session, experiment_name)
    if experiment.status in (Status.CREATED, Status.SUBMITTING):
        raise InvalidStateError(
            f"Experiment '{experiment_name}' has not been started: "
            f"run 'batchling start {experiment_name}'."
        )
    if not experiment.is_finished:
        raise InvalidStateError(
            f"Experiment '{experiment_name}' is not finished yet (status {experiment.status}). "
            f"Run 'batchling wait {experiment_name}' first."
        )
    batches = await store.list_batches(experiment)
    if any(not b.results_stored for b in batches):
        provider = session._provider(experiment) if any(b.batch_id for b in batches) else None
        fmt = await session.response_format(experiment_name)
        # Counts this download only: after a retry, the latest attempt's requests.
        download = TransferMeter(
            session.on_transfer,
            experiment_name,
            "download",
            sum(b.request_count for b in batches if not b.results_stored),
        )
        download.start()
        # A single attempt downloaded at once can have its results file written as it
        # downloads (results_file.ChunkLines); anything else merges outcomes from the store.
        parts: list[ChunkLines] | None = (
            [] if all(not b.results_stored and b.attempt == 1 for b in batches) else None
        )
        try:
            # Results are acyclic and held 7,500 at a time: the cyclic GC would only rescan
            # them (~20% of the CPU of a big download), so it pauses meanwhile.
            with _gc_paused() if session.pause_gc_during_downloads else contextlib.nullcontext():
                for batch in batches:
                    if not batch.results_stored:
                        await _store_batch_results(
                            session, experiment, provider, batch, fmt, download, parts
                        )
            download.finish()
            # The stored results are the truth; some providers report only rough counts.
            succeeded, unsuccessful = await store.count_outcomes(experiment)
            experiment = await store.update_experiment(
                experiment_name, ExperimentUpdate(completed=succeeded, failed=unsuccessful)
            )
            await _write_results_file(session, experiment, parts)
        finally:
            remove_parts(parts or [])
    elif not experiment.results_file_path.exists():
        await _write_results_file(session, experiment)
    return experiment


async def _store_batch_results(
    session: Session,
    experiment: Experiment,
    provider: Provider | None,
    batch: BatchRecord,
    fmt: ResponseFormat | None = None,
    download: TransferMeter | None = None,
    parts: list[ChunkLines] | None = None,
) -> None:
    store = await session.store()
    expected = await store.chunk_custom_ids(experiment, batch.chunk)
    intake: ResultIntake | None = None
    reason = _missing_result(batch)
    lines_out = None
    if parts is not None:
        lines_out = ChunkLines(part_path(experiment.results_file_path, batch.chunk), expected)
        parts.append(lines_out)
    if (
        provider is not None
        and batch.batch_id
        and (batch.output_file_id or batch.error_file_id or batch.status != Status.FAILED)
    ):
        ref = BatchRef(batch.batch_id, batch.file_id)
        snapshot = BatchSnapshot(
            status=batch.status,
            provider_status=batch.provider_status or "",
            output_file_id=batch.output_file_id,
            error_file_id=batch.error_file_id,
        )
        pending: list[ResultRecord] = []
        pending_bytes = 0
        saving: asyncio.Task[int] | None = None
        lines = provider.results(ref, snapshot)
        decode = provider.decode_record
        if fmt is not None:
            decode = functools.partial(_parsed_record, provider, fmt)
        intake = ResultIntake(expected, decode, id_field=provider.info.result_id_field)
        take = intake.take
        try:
            async for line in lines:
                record = take(line)
                if record is None:
                    continue
                pending.append(record)
                pending_bytes += len(record.raw or "") + len(record.embedding or "")
                if lines_out is not None:
                    lines_out.add(record)
                if download is not None:
                    download.advance()
                if len(pending) >= RESULTS_FLUSH_SIZE or pending_bytes >= RESULTS_FLUSH_BYTES:
                    # Each block is stored (and committed) in SQLite's thread while the next
                    # one is downloaded and decoded here.
                    if saving is not None:
                        await saving
                    saving = asyncio.create_task(store.save_records(experiment, pending))
                    pending, pending_bytes = [], 0
        except BatchlingError:
            raise
        except Exception as error:
            if resume.status_of(error) != 404:
                await session._call(experiment, "download", _reraise(error))
            # Results gone (past their retention): keep what came, mark the rest to retry.
            reason = ResultError(
                kind="provider",
                message=f"{experiment.provider} no longer has the results of batch "
                f"{batch.batch_id} (deleted, or past its retention): submit this request "
                f"again with 'batchling retry {experiment.name}'.",
            )
        finally:
            if saving is not None:
                await saving
        await store.save_records(experiment, pending)
    # Requests the provider returned nothing for still get a row saying why (replacing the
    # row of an earlier attempt: results show each request's latest outcome).
    missing = [
        Result(
            custom_id=cid,
            status=reason.kind if reason.kind in ("expired", "cancelled") else "failed",
            error=reason,
        )
        for cid in (intake.unanswered(expected) if intake is not None else expected)
    ]
    if lines_out is not None:
        lines_out.close()
    await store.save_results(experiment, missing)
    await store.commit()
    await store.update_batch(
        experiment,
        batch.chunk,
        BatchUpdate(results_stored=True, warnings=intake.warnings if intake is not None else []),
    )


async def _write_results_file(
    session: Session, experiment: Experiment, parts: list[ChunkLines] | None = None
) -> None:
    """From the parts written as the results downloaded when every one is complete, else
    from the store."""
    store = await session.store()
    path = experiment.results_file_path
    policy = await output_policy(store, experiment.name, [path])
    policy.check(path, RESULTS_FILE)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with writing(path, RESULTS_FILE, replace=policy.may_replace(path)) as handle:
            if parts and all(part.complete for part in parts):
                join_parts(parts, handle)
            else:
                async for line in store.iter_result_lines(experiment):
                    handle.write(line + b"\n")
    except OSError as error:
        raise InputError(
            f"Cannot write the results file {path}: {error.strerror}. The results are stored; "
            f"update the path with 'batchling update' or fix permissions, then run results again."
        ) from None
    url = (await store.experiment_options(experiment.name)).get("results_url")
    if url:
        upload(path, url)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector (concurrent pauses nest; the last one out turns it
    back on if it was on); reference counting still frees everything acyclic at once."""
    if _gc_pause["depth"] == 0:
        _gc_pause["was_enabled"] = gc.isenabled()
        gc.disable()
    _gc_pause["depth"] += 1
    try:
        yield
    finally:
        _gc_pause["depth"] -= 1
        if _gc_pause["depth"] == 0 and _gc_pause["was_enabled"]:
            gc.enable()


async def _reraise(error: Exception) -> None:
    raise error


def _parsed_record(
    provider: Provider, fmt: ResponseFormat, line: dict[str, Any], text: str | None = None
) -> ResultRecord:
    """A succeeded result checked against the response format: parsed, or failed (kind 'parse')
    with its raw text kept."""
    result = provider.decode(line)
    if result.status == "succeeded":
        parsed, problem = parse_output(result.text, fmt)
        if problem is not None:
            error = ResultError(kind="parse", message=problem)
            result = result.model_copy(update={"status": "failed", "error": error})
        else:
            result = result.model_copy(update={"parsed": parsed})
    return record_of(result)


def _missing_result(batch: BatchRecord) -> ResultError:
    if batch.batch_id is None:
        # Only a cancel before submission ends an experiment with a batch never sent.
        return ResultError(
            kind="cancelled", message="The experiment was cancelled before this batch was sent."
        )
    if batch.status == Status.EXPIRED:
        return ResultError(kind="expired", message="The batch expired before this request ran.")
    if batch.status == Status.CANCELLED:
        return ResultError(
            kind="cancelled", message="The batch was cancelled before this request ran."
        )
    if batch.status == Status.FAILED:
        detail = "; ".join(batch.errors[:3]) or "no detail given"
        return ResultError(kind="provider", message=f"The batch failed at the provider: {detail}")
    return ResultError(kind="provider", message="The provider returned no result for this request.")
