"""Name -> provider data and adapter, for the names in `PROVIDERS`. Adapters are imported on
first use so the CLI starts without vendor SDKs."""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from types import ModuleType
from typing import TYPE_CHECKING

from batchling.errors import ConfigurationError, MissingApiKeyError
from batchling.providers import PROVIDERS, client_settings
from batchling.providers.info import ProviderInfo

if TYPE_CHECKING:
    from batchling.providers.base import Provider


def profile_folders(*, include_user: bool = True) -> dict[str, str]:
    """Named profiles -> the folder that serves them: a folder whose package has
    `profile_infos()` adds providers beyond PROVIDERS (built-in ones, and with `include_user`,
    the user's own from batchling's home)."""
    found: dict[str, str] = {}
    for folder in PROVIDERS:
        package = importlib.import_module(f"batchling.providers.{folder}")
        if hasattr(package, "profile_infos"):
            found |= dict.fromkeys(package.profile_infos(include_user=include_user), folder)
    return found


def _profile_keeper() -> ModuleType:
    """The provider folder that keeps user profiles (its package has `add_profile`)."""
    for folder in PROVIDERS:
        package = importlib.import_module(f"batchling.providers.{folder}")
        if hasattr(package, "add_profile"):
            return package
    raise ConfigurationError("No provider folder keeps user profiles.")


def add_profile(name: str, fields: dict[str, object]) -> str:
    """Save a user provider profile (base URL, key variable's name, limits...); returns where."""
    saved: str = _profile_keeper().add_profile(name, fields)
    return saved


def remove_profile(name: str) -> str:
    removed: str = _profile_keeper().remove_profile(name)
    return removed


def provider_names(*, include_user: bool = True) -> list[str]:
    """PROVIDERS, then the named profiles (the user's too unless `include_user` is False)."""
    return [*PROVIDERS, *profile_folders(include_user=include_user)]


def unknown_provider_message(name: str) -> str:
    import difflib

    known = provider_names()
    close = difflib.get_close_matches(name.lower(), known, n=1)
    guess = f" Did you mean '{close[0]}'?" if close else ""
    return f"Unknown provider '{name}'.{guess} Known providers: {', '.join(known)}."


def check_provider(name: str) -> None:
    """Raises the unknown-provider error without importing the provider's adapter."""
    if name not in PROVIDERS and name not in profile_folders():
        raise ConfigurationError(unknown_provider_message(name))


def provider_info(name: str) -> ProviderInfo:
    """The provider's data (its folder's `INFO`, or its profile's), without importing its
    adapter or SDK."""
    if name in PROVIDERS:
        info: ProviderInfo = importlib.import_module(f"batchling.providers.{name}").INFO
        return info
    folder = profile_folders().get(name)
    if folder is None:
        raise ConfigurationError(unknown_provider_message(name))
    profile: ProviderInfo = importlib.import_module(
        f"batchling.providers.{folder}"
    ).profile_infos()[name]
    return profile


def _adapter_class(name: str) -> type[Provider]:
    if name in PROVIDERS:
        adapter: type[Provider] = importlib.import_module(
            f"batchling.providers.{name}.adapter"
        ).Adapter
        return adapter
    folder = profile_folders().get(name)
    if folder is None:
        raise ConfigurationError(unknown_provider_message(name))
    for_profile: type[Provider] = importlib.import_module(
        f"batchling.providers.{folder}.adapter"
    ).adapter_for(name)
    return for_profile


def resolve_api_key(info: ProviderInfo, env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    for var in info.api_key_env:
        if env.get(var):
            return env[var]
    raise MissingApiKeyError(info.name, info.api_key_env)


def resolve_base_url(
    info: ProviderInfo, base_url: str | None = None, env: Mapping[str, str] | None = None
) -> str | None:
    if base_url:
        return base_url
    env = os.environ if env is None else env
    for var in info.base_url_env:
        if env.get(var):
            return env[var]
    return None


def create_provider(
    name: str, *, base_url: str | None = None, env: Mapping[str, str] | None = None
) -> Provider:
    """An adapter ready to talk to the provider, with its key and base URL from the environment."""
    adapter = _adapter_class(name)
    api_key = check_ready(name, env)
    return adapter(api_key=api_key, base_url=resolve_base_url(adapter.info, base_url, env))  # type: ignore[call-arg]


def check_ready(name: str, env: Mapping[str, str] | None = None) -> str:
    """What every call to the provider needs, checked without a call: the adapter, its API key
    (returned) and valid client settings. `create --start` checks it before creating anything."""
    api_key = resolve_api_key(provider_info(name), env)
    # Read when the SDK client is built, at the first call: a bad value must fail before that.
    client_settings.timeout_seconds()
    client_settings.max_retries()
    return api_key


def check_endpoint(info: ProviderInfo, endpoint: str) -> None:
    if endpoint not in info.endpoints:
        accepted = ", ".join(sorted(info.endpoints))
        raise ConfigurationError(
            f"Provider '{info.name}' does not accept endpoint '{endpoint}' for batches. "
            f"Accepted: {accepted}."
        )


def encoder(name: str) -> Provider:
    """An adapter for the pure steps only (encode/decode): needs no key and opens no connection."""
    return _adapter_class(name)(api_key="", base_url=None)  # type: ignore[call-arg]
