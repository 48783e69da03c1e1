"""Named profiles of OpenAI-compatible batch services: the built-in ones (`profiles.toml`, each
checked against the service's documentation) and the user's own, in `providers.toml` in
batchling's home. A profile is data: base URL, the NAME of its key variable (never a key),
limits, prices and batch-eligible models; it becomes a ProviderInfo on the generic provider's."""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, urlsplit

from batchling.errors import ConfigurationError
from batchling.home import home_dir
from batchling.providers.compatible import INFO
from batchling.providers.info import BatchLimits, ProviderInfo
from batchling.status import Status

USER_FILE = "providers.toml"
NAME = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
VARIABLE = re.compile(r"^[A-Z_][A-Z0-9_]{0,99}$")
LOOPBACK_HOSTS = {"localhost"}


@dataclass(frozen=True)
class Profile:
    name: str
    base_url: str
    api_key_env: str
    display_name: str = ""
    base_url_env: str = ""
    max_requests: int = INFO.limits.max_requests
    max_bytes: int = INFO.limits.max_bytes
    discount: float = INFO.discount
    models: tuple[str, ...] = ()
    """The batch-eligible models; empty when the service does not list them."""
    batch_prices: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    statuses: Mapping[str, str] = field(default_factory=dict)
    docs: str = ""
    checked: str = ""

    @property
    def info(self) -> ProviderInfo:
        return dataclasses.replace(
            INFO,
            name=self.name,
            display_name=self.display_name or self.name,
            api_key_env=(self.api_key_env,),
            base_url_env=(self.base_url_env,) if self.base_url_env else (),
            limits=BatchLimits(max_requests=self.max_requests, max_bytes=self.max_bytes),
            discount=self.discount,
            status_map={**INFO.status_map, **{k: Status(v) for k, v in self.statuses.items()}},
            demo_model=self.models[0] if self.models else INFO.demo_model,
            doctor_model=self.models[0] if self.models else INFO.doctor_model,
            batch_prices=dict(self.batch_prices),
        )


def check_base_url(url: str) -> str:
    """An https URL, or http on a loopback address (a local server): keys never cross a network
    in clear text."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme == "https" and host:
        return url.rstrip("/")
    if parts.scheme == "http" and _is_loopback(host):
        return url.rstrip("/")
    raise ConfigurationError(
        f"Base URL '{url}' must start with https:// (or http:// on 127.0.0.1, ::1 or localhost)."
    )


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_profile(data: Mapping[str, Any], *, name: str, where: str) -> Profile:
    """A profile from its TOML table; any bad value is one error naming `where`."""
    if not NAME.match(name):
        raise ConfigurationError(
            f"{where}: profile name '{name}' must be lower-case letters, digits and dashes, "
            "starting with a letter."
        )
    key_env = str(data.get("api_key_env", ""))
    if not VARIABLE.match(key_env):
        raise ConfigurationError(
            f"{where}: api_key_env must name an environment variable (as MY_SERVICE_KEY), not "
            "hold a key."
        )
    base_env = str(data.get("base_url_env", ""))
    if base_env and not VARIABLE.match(base_env):
        raise ConfigurationError(f"{where}: base_url_env '{base_env}' is no variable name.")
    try:
        prices = {
            str(model): (float(pair[0]), float(pair[1]))
            for model, pair in dict(data.get("batch_prices", {})).items()
        }
        profile = Profile(
            name=name,
            base_url=check_base_url(str(data.get("base_url", ""))),
            api_key_env=key_env,
            display_name=str(data.get("display_name", "")),
            base_url_env=base_env,
            max_requests=int(data.get("max_requests", INFO.limits.max_requests)),
            max_bytes=int(data.get("max_bytes", INFO.limits.max_bytes)),
            discount=float(data.get("discount", INFO.discount)),
            models=tuple(str(m) for m in data.get("models", ())),
            batch_prices=prices,
            statuses={
                str(k): str(Status(v).value) for k, v in dict(data.get("statuses", {})).items()
            },
            docs=str(data.get("docs", "")),
            checked=str(data.get("checked", "")),
        )
    except ConfigurationError as error:
        raise ConfigurationError(f"{where}: {error}") from None
    except (TypeError, ValueError, IndexError) as error:
        raise ConfigurationError(f"{where}: profile '{name}' has a bad value ({error}).") from None
    if profile.max_requests < 1 or profile.max_bytes < 1 or not 0 <= profile.discount < 1:
        raise ConfigurationError(
            f"{where}: profile '{name}' needs positive limits and a discount from 0 to below 1."
        )
    return profile


def built_in() -> dict[str, Profile]:
    text = resources.files(__package__).joinpath("profiles.toml").read_text(encoding="utf-8")
    return {
        name: make_profile(table, name=name, where="profiles.toml")
        for name, table in tomllib.loads(text).items()
    }


def user_file(home: Path | None = None) -> Path:
    return (home or home_dir()) / USER_FILE


def user_profiles(home: Path | None = None) -> dict[str, Profile]:
    path = user_file(home)
    if not path.is_file():
        return {}
    try:
        tables = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ConfigurationError(f"{path}: not valid TOML ({error}). Fix or delete it.") from None
    return {name: make_profile(table, name=name, where=str(path)) for name, table in tables.items()}


def profiles(*, include_user: bool = True) -> dict[str, Profile]:
    """Every profile by name, built-in first; with `include_user`, the user's too."""
    found = built_in()
    if include_user:
        found |= user_profiles()
    return found


def _toml_value(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


def _table(profile: Profile) -> str:
    lines = [f"[{profile.name}]"]
    for key in ("display_name", "base_url", "api_key_env", "base_url_env", "docs", "checked"):
        if value := getattr(profile, key):
            lines.append(f"{key} = {_toml_value(value)}")
    lines.append(f"max_requests = {profile.max_requests}")
    lines.append(f"max_bytes = {profile.max_bytes}")
    lines.append(f"discount = {profile.discount!r}")
    if profile.models:
        lines.append(f"models = {_toml_value(profile.models)}")
    if profile.batch_prices:
        lines.append(f"[{profile.name}.batch_prices]")
        lines += [f"{json.dumps(m)} = {_toml_value(p)}" for m, p in profile.batch_prices.items()]
    return "\n".join(lines) + "\n"


def save_user_profiles(found: Mapping[str, Profile], home: Path | None = None) -> Path:
    """Write the user's profiles (names of key variables only: a profile holds no key)."""
    path = user_file(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "# batchling's OpenAI-compatible provider profiles (`batchling providers add`).\n"
    text += "\n".join(_table(profile) for profile in found.values())
    temporary = path.with_suffix(".tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)
    return path


def add_profile(profile: Profile, *, taken: set[str], home: Path | None = None) -> Path:
    """Add (or replace) a user profile; `taken` are names it may not use (providers, built-ins)."""
    if profile.name in taken:
        raise ConfigurationError(
            f"'{profile.name}' is already a built-in provider or profile: choose another name."
        )
    found = user_profiles(home)
    found[profile.name] = profile
    return save_user_profiles(found, home)


def remove_profile(name: str, home: Path | None = None) -> Path:
    found = user_profiles(home)
    if name not in found:
        known = ", ".join(sorted(found)) or "none"
        raise ConfigurationError(f"No user profile '{name}' to remove (user profiles: {known}).")
    del found[name]
    return save_user_profiles(found, home)


@functools.lru_cache(maxsize=4)
def _profiles_as_of(user_file_version: tuple[str, int, int]) -> dict[str, Profile]:
    return profiles()


def _user_file_version() -> tuple[str, int, int]:
    """The user's profile file and its version: profiles are read again only when it changes."""
    path = user_file()
    try:
        stat = path.stat()
    except OSError:
        return str(path), 0, 0
    return str(path), stat.st_mtime_ns, stat.st_size


def base_urls() -> dict[str, str]:
    """Provider name -> the base URL its batches go to (a profile's base URL variable wins over
    its default, as in the adapter), for every compatible service known."""
    found = {
        name: os.environ.get(profile.base_url_env) or profile.base_url
        for name, profile in _profiles_as_of(_user_file_version()).items()
    }
    generic = next((os.environ[v] for v in INFO.base_url_env if os.environ.get(v)), None)
    if generic:
        found[INFO.name] = generic
    return found


def _under(url: SplitResult, base: SplitResult) -> bool:
    prefix = base.path.rstrip("/")
    return (
        url.scheme == base.scheme
        and url.netloc.lower() == base.netloc.lower()
        and (url.path == prefix or url.path.startswith(prefix + "/"))
    )


def service_at(url: str) -> str | None:
    """The compatible service whose base URL holds `url` (the longest one wins), or None."""
    parts = urlsplit(url)
    under = [
        (len(base.path.rstrip("/")), name)
        for name, base in ((n, urlsplit(u)) for n, u in base_urls().items())
        if _under(parts, base)
    ]
    return max(under)[1] if under else None
