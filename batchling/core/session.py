"""What the operations on experiments share, one per manager: the store (opened at its first
use), one client per provider and base URL, the callbacks and the response classes given at
create."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Iterable
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel

from batchling.errors import BatchlingError, ProviderError
from batchling.home import experiment_dir
from batchling.models import Experiment
from batchling.owned_files import OutputPolicy
from batchling.progress import TransferCallback
from batchling.providers import registry
from batchling.providers.base import Provider, ProviderInfo
from batchling.repository import Repository, database_target, open_repository
from batchling.structured import ResponseFormat

T = TypeVar("T")

# The command that resumes after a provider call of each step failed for good.
_RESUME_COMMANDS = {
    "upload": "start",
    "lookup": "start",
    "create": "start",
    "poll": "wait",
    "download": "results",
    "cancel": "cancel",
}


class Session:
    """The state of an AsyncExperimentManager (its base): what every operation module takes."""

    def __init__(self, db_path: str | Path | None = None) -> None:
        # A SQLite file (Path) or a PostgreSQL URL (str): see repository.database_target.
        self.db_path = database_target(db_path)
        # Called as uploads (bytes) and downloads (results) progress; see batchling.progress.
        self.on_transfer: TransferCallback | None = None
        # The cyclic GC pauses while results download (~20% less CPU), for the whole process:
        # set False where other work must keep collecting meanwhile (a web app, say).
        self.pause_gc_during_downloads = True
        # Where adapters read API keys and base URLs (None: os.environ); capture mode adds the
        # keys its intercepted SDK calls carried, held in memory only.
        self.provider_env: dict[str, str] | None = None
        self._store: Repository | None = None
        self._providers: dict[tuple[str, str | None], Provider] = {}
        # Response-format classes given at create through this manager, by experiment name.
        self._response_models: dict[str, type[BaseModel]] = {}

    async def store(self) -> Repository:
        if self._store is None:
            # Read-only until the first write: reading commands work on a read-only or busy file.
            self._store = await open_repository(self.db_path)
        return self._store

    async def aclose(self) -> None:
        # Detached first: a call starting meanwhile opens its own rather than get these closing.
        providers, self._providers = list(self._providers.values()), {}
        store, self._store = self._store, None
        for provider in providers:
            await provider.aclose()
        if store is not None:
            await store.close()

    def _provider(self, experiment: Experiment) -> Provider:
        key = (experiment.provider, experiment.base_url)
        if key not in self._providers:
            self._providers[key] = registry.create_provider(
                experiment.provider, base_url=experiment.base_url, env=self.provider_env
            )
        return self._providers[key]

    async def _call(self, experiment: Experiment, step: str, call: Awaitable[T]) -> T:
        """Run one provider call; failures become one ProviderError that says the record is intact."""
        try:
            return await call
        except BatchlingError:
            raise
        except Exception as error:
            message = (
                str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            )
            message = _redact_keys(message, registry.provider_info(experiment.provider))
            command = _RESUME_COMMANDS.get(step)
            again = f"'batchling {command} {experiment.name}'" if command else "the same command"
            raise ProviderError(
                f"{experiment.provider} {step} failed for experiment '{experiment.name}': "
                f"{type(error).__name__}: {message[:300].rstrip('.')}. Nothing was lost: run {again} "
                "again to resume."
            ) from error

    async def response_format(
        self, experiment_name: str, response_model: type[BaseModel] | None = None
    ) -> ResponseFormat | None:
        """The experiment's response format, with its class: the one given, else the one given
        at create in this process, else the one importable from the stored path."""
        store = await self.store()
        stored = (await store.experiment_options(experiment_name)).get("response_format")
        if not stored:
            return None
        model = response_model or self._response_models.get(experiment_name)
        return ResponseFormat.from_options(stored, model)


def _redact_keys(text: str, info: ProviderInfo) -> str:
    """SDK error texts sometimes quote the key: never let it reach a message or a log."""
    for variable in info.api_key_env:
        key = os.environ.get(variable)
        if key and len(key) >= 4:
            text = text.replace(key, "***")
    return text


async def output_policy(
    store: Repository, experiment_name: str, paths: Iterable[Path], overwrite: bool = False
) -> OutputPolicy:
    """What the experiment may write among `paths` and the files beside them."""
    claims = await store.file_claims(path.parent for path in paths)
    # Its default directory holds only files batchling wrote for an experiment of this name.
    own_dir = experiment_dir(experiment_name).expanduser().resolve()
    return OutputPolicy(experiment_name, claims, overwrite=overwrite, own_dir=own_dir)
