"""`batchling doctor`: what this installation would use, and a live check of each provider.

Offline (the default) it reads only this machine: versions, which keys are set (never their
values), base URLs, the database, and whether an emulator answers on loopback. `live_check`
runs the smallest real lifecycle on one provider through its adapter (upload, create, poll,
list, download, clean up) and says per step what it saw against what batchling expects,
stopping at the first surprise with the raw answer, keys redacted.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import http.client
import importlib
import json
import os
import platform
import re
import sqlite3
import stat
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from batchling.errors import AmbiguousBatchError
from batchling.models import TERMINAL_STATUSES, RawRequest, Status
from batchling.providers import PROVIDERS, registry
from batchling.providers.base import BatchRef, BatchSnapshot, CreateHint, Provider

# Per provider (its folder's `doctor_model`), the cheapest chat model of the current generation
# at batch prices, leaving out reasoning models, whose 16 output tokens may all go to thinking.
DOCTOR_MODELS = {name: registry.provider_info(name).doctor_model for name in PROVIDERS}
DOCTOR_QUESTIONS = ("What is 2 + 2? Answer with the number only.", "Say OK and nothing else.")
MAX_TOKENS = 16
CUSTOM_IDS = ("doctor-1", "doctor-2")

# The id forms the providers document (each folder's `id_forms`). Another form is noted, not a
# stop: batchling keeps ids as opaque strings.
ID_FORMS: dict[str, dict[str, str]] = {
    name: dict(registry.provider_info(name).id_forms) for name in PROVIDERS
}
EMULATOR_DEFAULT_URL = "http://127.0.0.1:8765"
"""Where `batchling emulator` serves by default."""
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
# Headers whose values are credentials, whatever the provider.
SECRET_HEADERS = re.compile(
    r"(?im)^(\s*[\"']?(authorization|x-api-key|x-goog-api-key|api-key)[\"']?\s*[:=]\s*).+$"
)


# Offline


@dataclass
class Line:
    label: str
    value: str


@dataclass
class Section:
    title: str
    lines: list[Line] = field(default_factory=list)

    def add(self, label: str, value: str) -> None:
        self.lines.append(Line(label, value))


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def without_credentials(url: str) -> str:
    """The URL without a user:password part, should one be written into it."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=f"[redacted]@{netloc}"))


def offline_report(
    db_path: str | Path | None, env: Mapping[str, str] | None = None
) -> list[Section]:
    """Versions, keys, base URLs, database and emulator: nothing leaves this machine."""
    from batchling.repository import database_target, shown_target

    env = os.environ if env is None else env
    about = Section("batchling")
    about.add("batchling", _version("batchling"))
    about.add("python", f"{platform.python_version()} ({platform.system()} {platform.machine()})")

    providers = Section("providers")
    loopback: set[str] = {EMULATOR_DEFAULT_URL}
    for name in registry.provider_names():
        info = registry.provider_info(name)
        key = next((var for var in info.api_key_env if env.get(var)), None)
        base_url = registry.resolve_base_url(info, env=env)
        parts = urlsplit(base_url or "")
        if parts.hostname in LOOPBACK_HOSTS:
            port = f":{parts.port}" if parts.port else ""
            loopback.add(f"{parts.scheme}://{parts.hostname}{port}")
        providers.add(
            name,
            f"{info.sdk} {_version(info.sdk)}; "
            f"key {'set in ' + key if key else 'not set (' + ' or '.join(info.api_key_env) + ')'}; "
            f"base URL {without_credentials(base_url) if base_url else 'the SDK default'}",
        )

    database = Section("database")
    path = database_target(db_path)
    database.add("path" if isinstance(path, Path) else "url", shown_target(path))
    for label, value in database_facts(path) if isinstance(path, Path) else ():
        database.add(label, value)

    emulator = Section("emulator")
    for url in sorted(loopback):
        emulator.add(url, emulator_reachability(url))
    return [about, providers, database, emulator]


def database_facts(path: Path) -> list[tuple[str, str]]:
    from batchling.migrations import MIGRATIONS

    if not path.exists():
        return [("state", "not created yet (made at the first experiment)")]
    mode = stat.S_IMODE(path.stat().st_mode)
    facts = [("file mode", f"{mode:04o}" + (" (readable by others)" if mode & 0o077 else ""))]
    try:
        # Read-only: the doctor must not migrate or lock a database another process uses.
        uri = f"{path.resolve().as_uri()}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=2)) as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            journal = db.execute("PRAGMA journal_mode").fetchone()[0]
    except sqlite3.Error as error:
        return [*facts, ("state", f"not readable as SQLite: {error}")]
    current = len(MIGRATIONS)
    verdict = (
        "current"
        if version == current
        else f"behind, migrated at next use (current: {current})"
        if version < current
        else f"newer than this batchling knows (current: {current}); upgrade batchling"
    )
    return [*facts, ("schema version", f"{version}, {verdict}"), ("journal mode", journal)]


def emulator_reachability(url: str, timeout: float = 1.0) -> str:
    """Whether anything answers HTTP at a loopback URL (the doctor never probes other hosts)."""
    parts = urlsplit(url)
    if (parts.hostname or "") not in LOOPBACK_HOSTS:
        return "not probed (not a loopback address)"
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=timeout)
    try:
        connection.request("GET", "/")
        status = connection.getresponse().status
    except OSError as error:
        return f"not reachable ({error.__class__.__name__})"
    finally:
        connection.close()
    return f"reachable (HTTP {status} at /)"


def format_sections(sections: list[Section]) -> str:
    width = max((len(line.label) for s in sections for line in s.lines), default=0)
    out: list[str] = []
    for section in sections:
        out.append(f"[{section.title}]")
        out.extend(f"  {line.label.ljust(width)}  {line.value}" for line in section.lines)
    return "\n".join(out)


# Live


class Surprise(Exception):
    """A step saw something batchling does not expect; `raw` is what the provider sent."""

    def __init__(self, seen: str, raw: Any = None) -> None:
        super().__init__(seen)
        self.seen = seen
        self.raw = raw


@dataclass
class Step:
    name: str
    seen: str
    expected: str
    ok: bool
    seconds: float
    notes: list[str] = field(default_factory=list)


@dataclass
class LiveReport:
    provider: str
    model: str
    base_url: str
    sdk: str
    steps: list[Step] = field(default_factory=list)
    skipped: str | None = None
    raw: str | None = None
    finished_seconds: float | None = None

    @property
    def ok(self) -> bool:
        return self.skipped is None and all(step.ok for step in self.steps)


def doctor_requests() -> list[RawRequest]:
    return [
        RawRequest.model_validate(
            {"messages": [{"role": "user", "content": question}], "max_tokens": MAX_TOKENS}
        )
        for question in DOCTOR_QUESTIONS
    ]


def cost_estimate(provider: str, model: str) -> float | None:
    from batchling.pricing import estimate_cost

    return estimate_cost(doctor_requests(), provider, model).usd


def redact(text: str, secrets: list[str]) -> str:
    for secret in sorted(filter(None, secrets), key=len, reverse=True):
        text = text.replace(secret, "[redacted]")
    return SECRET_HEADERS.sub(r"\1[redacted]", text)


def secrets_in(env: Mapping[str, str]) -> list[str]:
    """Every API key value the providers could read from this environment, and any other
    variable named like a key or token (ANTHROPIC_AUTH_TOKEN, ...)."""
    names = {
        var
        for name in registry.provider_names()
        for var in registry.provider_info(name).api_key_env
    }
    found = [env[var] for var in names if env.get(var)]
    # Short values of look-alike variables (a TOKEN=1) would blank out ordinary text.
    return found + [
        value
        for var, value in env.items()
        if var not in names
        and re.search(r"(API_KEY|TOKEN|SECRET)$", var.upper())
        and len(value) >= 8
    ]


def raw_of(value: Any) -> str:
    """What the provider sent, as text: the HTTP answer behind an SDK error, or the object."""
    response = getattr(value, "response", None)
    if response is not None and hasattr(response, "status_code"):
        headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
        try:
            body = response.text
        except Exception:  # a streamed answer never read
            body = "(body not read)"
        request = getattr(response, "request", None)
        asked = f"{request.method} {request.url}\n" if request is not None else ""
        return f"{asked}HTTP {response.status_code}\n{headers}\n\n{body}"
    if isinstance(value, BaseException):
        return f"{value.__class__.__name__}: {value}"
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    try:
        return json.dumps(value, indent=2, default=str)
    except (TypeError, ValueError):
        return repr(value)


_ANSWERS: ContextVar[list[Any] | None] = ContextVar("batchling_doctor_answers", default=None)
KEPT_ANSWERS = 3


@contextlib.contextmanager
def recording_answers() -> Iterator[None]:
    """While open, a task that set `_ANSWERS` keeps the last HTTP answers its SDK received.

    The adapters own their SDK clients, and a surprise in a successful answer (an unknown status,
    a batch without results) is seen after the SDK parsed it: the raw answer is only at the
    transport. Every SDK here sends through httpx's AsyncClient (mistralai through its httpx2
    fork); other tasks' requests pass through untouched.
    """
    patched: list[tuple[Any, Any]] = []
    for name in ("httpx", "httpx2"):
        try:
            client_class = importlib.import_module(name).AsyncClient
        except ImportError:
            continue
        original = client_class.send

        async def send(
            self: Any, request: Any, *args: Any, _send: Any = original, **kw: Any
        ) -> Any:
            response = await _send(self, request, *args, **kw)
            answers = _ANSWERS.get()
            if answers is not None:
                answers.append(response)
                del answers[:-KEPT_ANSWERS]
            return response

        client_class.send = send
        patched.append((client_class, original))
    try:
        yield
    finally:
        for client_class, original in patched:
            client_class.send = original


def _id_note(provider: str, kind: str, value: str | None) -> list[str]:
    form = ID_FORMS.get(provider, {}).get(kind)
    if value is None or form is None or re.fullmatch(form, value):
        return []
    return [f"{kind} id {value!r} is not of the documented form {form}"]


class LiveCheck:
    """One provider's lifecycle, one step at a time; each step ends in `end` or a Surprise."""

    def __init__(
        self,
        provider: Provider,
        report: LiveReport,
        *,
        poll_interval: float,
        timeout: float,
        on_step: Callable[[Step], None] | None,
    ) -> None:
        self.provider = provider
        self.report = report
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.on_step = on_step
        self.step = ""
        self.step_started = time.monotonic()

    def begin(self, name: str) -> None:
        self.step = name
        self.step_started = time.monotonic()

    def end(
        self, seen: str, expected: str, *, ok: bool = True, notes: list[str] | None = None
    ) -> None:
        step = Step(
            self.step, seen, expected, ok, time.monotonic() - self.step_started, notes or []
        )
        self.report.steps.append(step)
        if self.on_step is not None:
            self.on_step(step)

    async def run(self, folder: Path) -> None:
        provider, name, model = self.provider, self.report.provider, self.report.model
        endpoint = provider.info.default_endpoint
        # The SDK's import takes seconds: not the provider's time, so not the upload's.
        getattr(provider, "client", None)
        self.begin("upload")
        chunk = folder / "batchling-doctor.jsonl"
        lines = [
            provider.encode(request, custom_id=custom_id, model=model, endpoint=endpoint)
            for request, custom_id in zip(doctor_requests(), CUSTOM_IDS, strict=True)
        ]
        chunk.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
        file_id = await provider.upload(chunk, name=chunk.name)
        self.end(
            file_id or "no file (requests go inline with the batch)",
            "a file id, or none where requests go inline",
            notes=_id_note(name, "file", file_id),
        )

        self.begin("create")
        created_after = datetime.now(timezone.utc) - timedelta(minutes=1)
        metadata = {"batchling_doctor": datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")}
        batch_id = await provider.create(
            chunk, file_id=file_id, model=model, endpoint=endpoint, metadata=metadata
        )
        self.end(batch_id, "a batch id", notes=_id_note(name, "batch", batch_id))
        ref = BatchRef(batch_id, file_id)

        self.begin("poll")
        try:
            snapshot = await self.poll_to_the_end(ref)
        except asyncio.CancelledError:
            # Interrupted (Ctrl-C): the batch would run on, and cost, unseen.
            with contextlib.suppress(Exception):
                await self.provider.cancel(ref)
            raise

        self.begin("list")
        hint = CreateHint(
            input_file_id=file_id, request_count=len(lines), created_after=created_after
        )
        notes: list[str] = []
        try:
            found = await provider.find_batch(metadata, hint)
        except AmbiguousBatchError as error:
            # Providers without metadata (Anthropic) are matched by size and age: other batches
            # of two requests made in the same minute look alike. Listed is what this step checks.
            if batch_id not in error.candidates:
                raise
            found = batch_id
            notes.append(f"{len(error.candidates)} batches alike in size and age were listed")
        if found != batch_id:
            raise Surprise(f"listing batches found {found!r}, not {batch_id!r}")
        self.end(found, "the batch just created", notes=notes)

        self.begin("download")
        raw_lines = [json.loads(line) async for line in provider.results(ref, snapshot)]
        self.end(*self.judge_results(raw_lines))

        self.begin("clean up")
        await provider.delete_remote(ref, snapshot)
        self.end("deleted what the batch left at the provider", "no error")

    async def poll_to_the_end(self, ref: BatchRef) -> BatchSnapshot:
        deadline = time.monotonic() + self.timeout
        met: list[str] = []
        while True:
            snapshot = await self.provider.poll(ref)
            label = f"{snapshot.provider_status} ({snapshot.status.value})"
            if not met or met[-1] != label:
                met.append(label)
            if snapshot.status == Status.UNKNOWN:
                raise Surprise(
                    f"status {snapshot.provider_status!r}, which batchling does not know "
                    f"(met: {' -> '.join(met)})",
                    snapshot,
                )
            if snapshot.status in TERMINAL_STATUSES:
                break
            if time.monotonic() >= deadline:
                await self.provider.cancel(ref)
                raise Surprise(
                    f"not finished after {self.timeout:g} s (met: {' -> '.join(met)}); "
                    f"cancel requested for {ref.batch_id}",
                    snapshot,
                )
            await asyncio.sleep(self.poll_interval)
        seen = " -> ".join(met)
        if snapshot.status != Status.COMPLETED:
            raise Surprise(f"ended {seen}", snapshot)
        self.end(seen, "known statuses, ending completed")
        return snapshot

    def judge_results(self, raw_lines: list[dict[str, Any]]) -> tuple[str, str]:
        expected = (
            f"{len(CUSTOM_IDS)} results ({', '.join(CUSTOM_IDS)}), succeeded, with text and usage"
        )
        try:
            results = [self.provider.decode(line) for line in raw_lines]
        except Exception as error:
            raise Surprise(f"a result line batchling cannot decode ({error})", raw_lines) from None
        keys = sorted({key for line in raw_lines for key in line})
        described = "; ".join(
            f"{r.custom_id}: {r.status}, text {(r.text or '')[:40]!r}, "
            + (f"tokens {r.usage.input_tokens}/{r.usage.output_tokens}" if r.usage else "no usage")
            + (f", error {r.error.message[:80]!r}" if r.error else "")
            for r in sorted(results, key=lambda r: r.custom_id)
        )
        seen = f"{len(raw_lines)} lines with keys {keys}; {described}"
        if sorted(r.custom_id for r in results) != sorted(CUSTOM_IDS) or not all(
            r.ok and r.text and r.usage for r in results
        ):
            raise Surprise(seen, raw_lines)
        return seen, expected


async def live_check(
    provider_name: str,
    *,
    model: str | None = None,
    poll_interval: float = 10.0,
    timeout: float = 3600.0,
    env: Mapping[str, str] | None = None,
    on_step: Callable[[Step], None] | None = None,
) -> LiveReport:
    """The smallest real lifecycle on one provider, step by step, stopping at a surprise."""
    env = os.environ if env is None else env
    info = registry.provider_info(provider_name)
    base_url = registry.resolve_base_url(info, env=env)
    report = LiveReport(
        provider=provider_name,
        model=model or DOCTOR_MODELS[provider_name],
        base_url=without_credentials(base_url) if base_url else "the SDK default",
        sdk=f"{info.sdk} {_version(info.sdk)}",
    )
    if not any(env.get(var) for var in info.api_key_env):
        report.skipped = f"no key ({' or '.join(info.api_key_env)} not set)"
        return report
    secrets = secrets_in(env)
    answers: list[Any] = []
    _ANSWERS.set(answers)
    provider = registry.create_provider(provider_name, env=env)
    check = LiveCheck(
        provider, report, poll_interval=poll_interval, timeout=timeout, on_step=on_step
    )
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="batchling-doctor-") as folder:
            await check.run(Path(folder))
        report.finished_seconds = time.monotonic() - started
    except Exception as error:
        surprise = error if isinstance(error, Surprise) else Surprise(_error_text(error), error)
        check.end(redact(surprise.seen, secrets), "", ok=False)
        raw = [raw_of(surprise.raw)] if surprise.raw is not None else []
        if isinstance(surprise.raw, BatchSnapshot):
            raw = [f"as batchling read it:\n{raw[0]}"]
        # A successful answer batchling did not expect: show it as it came.
        if (surprise.raw is None or isinstance(surprise.raw, BatchSnapshot)) and answers:
            raw.append(f"the last HTTP answer:\n{raw_of(_Answered(answers[-1]))}")
        report.raw = redact("\n\n".join(raw), secrets) if raw else None
    finally:
        await provider.aclose()
    return report


@dataclass
class _Answered:
    """An HTTP response, shown by `raw_of` as an SDK error's response is."""

    response: Any


def _error_text(error: BaseException) -> str:
    status = getattr(error, "status_code", None) or getattr(error, "code", None)
    prefix = f"HTTP {status} " if isinstance(status, int) else ""
    return f"{prefix}{error.__class__.__name__}: {str(error)[:500]}"


def progress_line(provider: str, step: Step) -> str:
    """One line as a step ends; it names the ids, so an interrupted check can be cleaned up."""
    verdict = "ok" if step.ok else "SURPRISE"
    return f"{provider}: {step.name} {verdict} ({step.seconds:.1f} s): {step.seen[:100]}"


def format_live(report: LiveReport) -> str:
    """Pasteable into a bug report: plain text, no colour, keys already redacted."""
    out = [f"## {report.provider}: model {report.model}, {report.sdk}, base URL {report.base_url}"]
    if report.skipped is not None:
        out.append(f"skipped: {report.skipped}")
        return "\n".join(out)
    for step in report.steps:
        verdict = "ok" if step.ok else "SURPRISE"
        out.append(f"- {step.name} [{verdict}, {step.seconds:.1f} s]")
        out.append(f"    seen:     {step.seen}")
        if step.expected:
            out.append(f"    expected: {step.expected}")
        out.extend(f"    note:     {note}" for note in step.notes)
    if report.ok:
        out.append(f"as expected; finished in {report.finished_seconds or 0:.1f} s")
    else:
        out.append("stopped at the first surprise")
        if report.raw is not None:
            out.append("raw response:")
            out.extend(f"    {line}" for line in report.raw.splitlines())
    return "\n".join(out)


def live_header() -> str:
    return (
        f"batchling doctor --live: batchling {_version('batchling')}, "
        f"python {platform.python_version()}, {platform.system()} {platform.machine()}, "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"
    )


@dataclass
class PlannedCheck:
    provider: str
    model: str
    usd: float | None
    skipped: str | None


def live_plan(
    providers: tuple[str, ...] | list[str],
    models: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
) -> list[PlannedCheck]:
    """What `--live` would run: each named provider's model and estimated cost, or why not."""
    from batchling.errors import ConfigurationError

    env = os.environ if env is None else env
    models = models or {}
    unknown = sorted(set(models) - set(providers))
    if unknown:
        raise ConfigurationError(f"--model names {', '.join(unknown)}, not among the providers.")
    plan = []
    for name in dict.fromkeys(providers):
        info = registry.provider_info(name)
        model = models.get(name) or DOCTOR_MODELS[name]
        key_set = any(env.get(var) for var in info.api_key_env)
        plan.append(
            PlannedCheck(
                provider=name,
                model=model,
                usd=cost_estimate(name, model),
                skipped=None if key_set else f"no key ({' or '.join(info.api_key_env)} not set)",
            )
        )
    return plan


def format_plan(plan: list[PlannedCheck]) -> str:
    from batchling.pricing import format_usd

    out = [
        f"{len(DOCTOR_QUESTIONS)} short requests (at most {MAX_TOKENS} output tokens each) per provider:"
    ]
    for check in plan:
        if check.skipped:
            out.append(f"  {check.provider}: skipped, {check.skipped}")
        else:
            cost = format_usd(check.usd) if check.usd is not None else "unknown (no price for it)"
            out.append(f"  {check.provider}: {check.model}, estimated cost at most {cost}")
    runnable = [c.usd for c in plan if not c.skipped]
    if runnable and all(usd is not None for usd in runnable):
        out.append(f"  total at most {format_usd(sum(u for u in runnable if u is not None))}")
    return "\n".join(out)


async def run_live(
    plan: list[PlannedCheck],
    *,
    poll_interval: float,
    timeout: float,
    env: Mapping[str, str] | None = None,
    on_step: Callable[[str, Step], None] | None = None,
) -> list[LiveReport]:
    """The planned checks, all providers at once (each waits on its own batch); `on_step` hears
    of each step as it ends, with its provider's name."""

    def progress(provider: str) -> Callable[[Step], None] | None:
        if on_step is None:
            return None
        return lambda step: on_step(provider, step)

    with recording_answers():
        reports = await asyncio.gather(
            *(
                live_check(
                    check.provider,
                    model=check.model,
                    poll_interval=poll_interval,
                    timeout=timeout,
                    env=env,
                    on_step=progress(check.provider),
                )
                for check in plan
            )
        )
    return list(reports)


def parse_models(pairs: tuple[str, ...]) -> dict[str, str]:
    """`--model PROVIDER=MODEL` pairs."""
    from batchling.errors import ConfigurationError

    models = {}
    for pair in pairs:
        provider, sep, model = pair.partition("=")
        if not sep or not provider.strip() or not model.strip():
            raise ConfigurationError(
                f"--model '{pair}' is not PROVIDER=MODEL, e.g. openai=gpt-4.1-nano."
            )
        models[provider.strip()] = model.strip()
    return models
