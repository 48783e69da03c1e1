"""Creating an experiment (validate, encode, write the chunks, record it all in one pass) and
updating one before it starts (encoded again)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from batchling.bounds import INT64_MAX, check_base_url, check_name, whole_number
from batchling.chunks import PROCESSED_FILE, ChunkWriter
from batchling.core.session import Session, output_policy
from batchling.errors import (
    ConfigurationError,
    ExperimentExistsError,
    InputError,
    InvalidStateError,
)
from batchling.home import experiment_dir
from batchling.inputs import (
    SourcedRequest,
    assign_custom_ids,
    generation_defaults,
    parse_request,
    read_request_lines,
)
from batchling.models import (
    BatchRecord,
    Experiment,
    GenerationParams,
    RawRequest,
    RequestCounts,
    Status,
)
from batchling.object_storage import beside, is_remote, staged, upload
from batchling.owned_files import OutputPolicy, output_path
from batchling.pricing import TokenTally
from batchling.providers import PROVIDERS, registry
from batchling.providers.base import Provider, ProviderInfo
from batchling.providers.wire.text_input import check_embedding_options
from batchling.results_file import RESULTS_FILE
from batchling.store import utcnow
from batchling.structured import ResponseFormat, response_format_from
from batchling.updates import ExperimentUpdate

UPDATABLE_ALWAYS = {"title", "description"}
UPDATABLE_BEFORE_START = {"model", "endpoint", "base_url"}


async def create_experiment(
    session: Session,
    experiment_name: str,
    *,
    model: str,
    provider: str = PROVIDERS[0],
    endpoint: str | None = None,
    title: str | None = None,
    description: str | None = None,
    raw_requests: Iterable[RawRequest | dict[str, Any]] | None = None,
    raw_file_path: str | Path | None = None,
    processed_file_path: str | Path | None = None,
    results_file_path: str | Path | None = None,
    base_url: str | None = None,
    max_requests_per_batch: int | None = None,
    max_bytes_per_batch: int | None = None,
    response_format: Any = None,
    template: Any = None,
    rows: Any = None,
    id_field: str | None = None,
    study: str | None = None,
    generation: GenerationParams | dict[str, Any] | None = None,
    overwrite: bool = False,
    queue: bool = False,
) -> Experiment:
    """Validate and encode the requests, write the provider's input file(s), record it all.

    The requests are `raw_requests`, or the JSONL file `raw_file_path`, or `template` (a list
    of messages, a template object or a .json template file) filled in once per row of `rows`
    (a list of dicts or a .jsonl/.csv/.json file), each request's id taken from the column
    `id_field` if given.
    `response_format` (a pydantic class, a JSON Schema dict, a .json schema file or
    `module:Class`) asks every request for JSON matching it; results are then validated.
    `study` groups it with other experiments (see compare_experiments).
    `generation` (temperature, max_tokens, reasoning, ...) fills what a request leaves unset.
    A processed or results path that already exists is refused unless `overwrite`.
    `queue` records it as queued, for a worker to start (`batchling worker`, work_once)."""
    check_name(experiment_name)
    _check_batch_bounds(max_requests_per_batch, max_bytes_per_batch)
    if base_url is not None:
        check_base_url(base_url)
    fmt = response_format_from(response_format) if response_format is not None else None
    info = registry.provider_info(provider)
    endpoint = endpoint or info.default_endpoint
    registry.check_endpoint(info, endpoint)
    if not model or not model.strip():
        raise ConfigurationError("A model is required (--model).")
    source = _request_source(raw_requests, raw_file_path, template, rows, id_field)
    store = await session.store()
    found = await store.find_experiment(experiment_name)
    if found is not None:
        raise ExperimentExistsError(experiment_name, not_started=found.status == Status.CREATED)

    # One streaming pass (read, check, encode, write chunks, insert in one transaction) keeps
    # memory flat whatever the number of requests; any error rolls it all back.
    defaults = generation_defaults(generation)
    if template is not None:
        from batchling.templates import requests_from_template

        requests: Iterator[SourcedRequest] = (
            (request, None) for request in requests_from_template(template, rows, id_field=id_field)
        )
    else:
        requests = load_requests(raw_requests, raw_file_path)
    if defaults is not None:
        requests = ((r.with_defaults(defaults), None) for r, _ in requests)
    tally = TokenTally(endpoint=endpoint)
    pairs = _checked(
        assign_custom_ids(
            requests,
            experiment_name=experiment_name,
            id_pattern=info.limits.custom_id_pattern,
            check_unique=False,  # the database's unique index checks ids without a dict of them
        ),
        info=info,
        endpoint=endpoint,
        tally=tally,
    )

    home = experiment_dir(experiment_name)
    # Object-storage paths: written here first, then copied there (see object_storage.py).
    urls = {
        f"{role}_url": str(given)
        for role, given in (("processed", processed_file_path), ("results", results_file_path))
        if is_remote(given)
    }
    if "processed_url" in urls:
        processed_file_path = staged(urls["processed_url"], home / "processed")
    if "results_url" in urls:
        results_file_path = staged(urls["results_url"], home / "results")
    processed = output_path(processed_file_path or home / "processed.jsonl", PROCESSED_FILE)
    results = output_path(results_file_path or home / "results.jsonl", RESULTS_FILE)
    policy = await output_policy(store, experiment_name, [processed, results], overwrite)
    policy.check(processed, PROCESSED_FILE)
    policy.check(results, RESULTS_FILE)
    options: dict[str, Any] = {
        "max_requests_per_batch": max_requests_per_batch,
        "max_bytes_per_batch": max_bytes_per_batch,
        **urls,
    }
    if fmt is not None:
        options["response_format"] = fmt.to_options()
    writer = _chunk_writer(processed, info, options, policy)
    encoded = _encoded_rows(
        registry.encoder(provider),
        pairs,
        writer,
        model=model,
        endpoint=endpoint,
        response_format=fmt,
        source=source,
    )
    now = utcnow()
    experiment = Experiment(
        name=experiment_name,
        title=title,
        description=description,
        provider=provider,
        model=model,
        endpoint=endpoint,
        base_url=base_url,
        request_counts=RequestCounts(total=0),  # counted by the store as rows go in
        processed_file_path=processed,
        results_file_path=results,
        created_at=now,
        updated_at=now,
        study=study,
    )
    try:
        created = await store.create_experiment(
            experiment, encoded, _closed(writer), options, late_options=tally.options
        )
    except BaseException:
        writer.abort()
        writer.remove_created()
        raise
    copy_chunks_there(options, await store.list_batches(created))
    if fmt is not None and fmt.model is not None:
        session._response_models[experiment_name] = fmt.model
    else:
        session._response_models.pop(experiment_name, None)
    if queue:
        await store.enqueue(experiment_name)
        return await store.get_experiment(experiment_name)
    return created


async def update_experiment(session: Session, /, experiment_name: str, **fields: Any) -> Experiment:
    store = await session.store()
    experiment = await store.get_experiment(experiment_name)
    fields = {k: v for k, v in fields.items() if v is not None}
    unknown = set(fields) - UPDATABLE_ALWAYS - UPDATABLE_BEFORE_START
    if unknown:
        raise ConfigurationError(
            f"Cannot update {', '.join(sorted(unknown))}: only title, "
            "description, model, endpoint and base_url can change."
        )
    if set(fields) & UPDATABLE_BEFORE_START and experiment.status != Status.CREATED:
        raise InvalidStateError(
            f"Experiment '{experiment_name}' has already been started (status "
            f"{experiment.status}): its model, endpoint and base URL can no longer change."
        )
    if not fields:
        return experiment
    if "base_url" in fields:
        check_base_url(fields["base_url"])
    if set(fields) & {"model", "endpoint"}:
        info = registry.provider_info(experiment.provider)
        endpoint = fields.get("endpoint", experiment.endpoint)
        registry.check_endpoint(info, endpoint)
        options = await store.experiment_options(experiment_name)
        pairs = [(cid, req) async for cid, _, req in store.iter_requests(experiment)]
        chunks, chunk_of = write_chunks(
            registry.encoder(experiment.provider),
            pairs,
            experiment.processed_file_path,
            policy=await output_policy(store, experiment_name, [experiment.processed_file_path]),
            model=fields.get("model", experiment.model),
            endpoint=endpoint,
            info=info,
            options=options,
            response_format=await session.response_format(experiment_name),
        )
        await store.replace_batches(experiment, chunks, chunk_of)
        copy_chunks_there(options, chunks)
    return await store.update_experiment(experiment_name, ExperimentUpdate(**fields))


def _check_batch_bounds(max_requests: int | None, max_bytes: int | None) -> None:
    if max_requests is not None:
        whole_number(
            "max_requests_per_batch (--max-requests-per-batch)",
            max_requests,
            minimum=1,
            maximum=INT64_MAX,
        )
    if max_bytes is not None:
        whole_number("max_bytes_per_batch", max_bytes, minimum=1, maximum=INT64_MAX)


def _request_source(
    raw_requests: Any, raw_file_path: Any, template: Any, rows: Any, id_field: str | None
) -> str:
    """Where the requests come from, for messages; exactly one source must be given."""
    given = [raw_requests is not None, raw_file_path is not None, template is not None]
    if sum(given) != 1:
        raise InputError(
            "Give the requests in exactly one way: raw_requests, raw_file_path, or template "
            "with rows."
        )
    if (template is None) != (rows is None):
        raise InputError(
            "template and rows go together: give both (or neither, and raw_requests or "
            "raw_file_path)."
        )
    if id_field is not None and template is None:
        raise InputError("id_field names a column of rows: it needs template and rows.")
    if raw_requests is not None:
        return "raw_requests"
    if template is not None:
        return str(rows) if isinstance(rows, (str, Path)) else "rows"
    return str(raw_file_path)


def load_requests(
    raw_requests: Iterable[RawRequest | dict[str, Any]] | None, raw_file_path: str | Path | None
) -> Iterator[SourcedRequest]:
    if is_remote(raw_file_path):
        return read_request_lines(str(raw_file_path))
    if raw_file_path is not None:
        path = Path(raw_file_path).expanduser()
        if not path.is_file():
            raise InputError(f"Requests file not found: {path}")
        return read_request_lines(path)
    assert raw_requests is not None
    return (
        (parse_request(r, where=f"raw_requests[{i}]"), None) for i, r in enumerate(raw_requests)
    )


def _chunk_writer(
    processed: Path, info: ProviderInfo, options: dict[str, Any], policy: OutputPolicy
) -> ChunkWriter:
    return ChunkWriter(
        processed,
        policy=policy,
        max_requests=min(
            options.get("max_requests_per_batch") or info.limits.max_requests,
            info.limits.max_requests,
        ),
        max_bytes=min(
            options.get("max_bytes_per_batch") or info.limits.max_bytes, info.limits.max_bytes
        ),
    )


def _encoded_rows(
    encoder: Provider,
    requests: Iterable[tuple[str, RawRequest, str | None]],
    writer: ChunkWriter,
    *,
    model: str,
    endpoint: str,
    response_format: ResponseFormat | None,
    source: str,
) -> Iterator[tuple[str, int, RawRequest, str | None]]:
    """Encode each (custom_id, request, its JSON if known) into the writer's chunk files as it
    comes; yields them with their chunk for the store. Raises InputError at the end when there
    was no request at all."""
    count = 0
    encode = encoder.line_encoder(model=model, endpoint=endpoint, response_format=response_format)
    for custom_id, request, text in requests:
        line = encode(request, custom_id)
        count += 1
        yield custom_id, writer.add(orjson.dumps(line), custom_id=custom_id), request, text
    if not count:
        raise InputError(f"No requests in {source}: an experiment needs at least one.")


def _checked(
    requests: Iterable[tuple[str, RawRequest, str | None]],
    *,
    info: ProviderInfo,
    endpoint: str,
    tally: TokenTally,
) -> Iterator[tuple[str, RawRequest, str | None]]:
    """Checks that need the custom id, and the token count for the cost estimate, as requests
    stream by."""
    for item in requests:
        check_embedding_options(item[1], info=info, endpoint=endpoint, custom_id=item[0])
        tally.add(item[1])
        yield item


def _closed(writer: ChunkWriter) -> Iterator[BatchRecord]:
    """The writer's chunks, finished when the store asks for them (after the last request)."""
    yield from writer.close()


def copy_chunks_there(options: dict[str, Any], batches: Iterable[BatchRecord]) -> None:
    """When the experiment's processed file is in object storage (its `processed_url`), copy
    the chunk files written here for it there too, streamed (see object_storage.py)."""
    url = options.get("processed_url")
    if url:
        for batch in batches:
            upload(batch.path, beside(url, batch.path))


def write_chunks(
    encoder: Provider,
    pairs: Sequence[tuple[str, RawRequest]],
    processed: Path,
    *,
    policy: OutputPolicy,
    model: str,
    endpoint: str,
    info: ProviderInfo,
    options: dict[str, Any],
    response_format: ResponseFormat | None = None,
) -> tuple[list[BatchRecord], dict[str, int]]:
    """Encode requests already stored (re-encoding after an update, or a retry) into chunks."""
    writer = _chunk_writer(processed, info, options, policy)
    try:
        rows = _encoded_rows(
            encoder,
            ((custom_id, request, None) for custom_id, request in pairs),
            writer,
            model=model,
            endpoint=endpoint,
            response_format=response_format,
            source="the stored requests",
        )
        chunk_of = {custom_id: chunk for custom_id, chunk, *_ in rows}
        return writer.close(), chunk_of
    except BaseException:
        writer.abort()
        raise
