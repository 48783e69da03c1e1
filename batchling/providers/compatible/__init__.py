"""Any OpenAI-compatible batch service: OpenAI's files + batches protocol at a base URL of the
user's choosing, as the generic provider `compatible` (OPENAI_COMPATIBLE_BASE_URL) and as named
profiles, built-in (`profiles.toml`) or the user's own (`batchling providers add`).

The folder: `provider.toml` (the generic provider's data), `profiles.toml` and `profiles.py`
(named profiles), `wire.py` (pure encode), `adapter.py` (I/O over the openai SDK),
`emulator.py` (the protocol under any path prefix), `PROTOCOL.md`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from batchling.providers.info import load_info

if TYPE_CHECKING:
    from batchling.providers.info import ProviderInfo

INFO = load_info(__name__)


def profile_infos(*, include_user: bool = True) -> dict[str, ProviderInfo]:
    """The named profiles as providers (the registry lists them beside PROVIDERS)."""
    from batchling.providers.compatible.profiles import profiles

    return {name: profile.info for name, profile in profiles(include_user=include_user).items()}


def add_profile(name: str, fields: dict[str, object]) -> str:
    """Save a user profile (the registry's hook for `batchling providers add`); returns the
    file it went to. `fields` are a profile's TOML keys: never a key, only its variable's name."""
    from batchling.providers import PROVIDERS
    from batchling.providers.compatible import profiles

    profile = profiles.make_profile(fields, name=name, where="batchling providers add")
    taken = set(PROVIDERS) | set(profiles.built_in())
    return str(profiles.add_profile(profile, taken=taken))


def remove_profile(name: str) -> str:
    from batchling.providers.compatible import profiles

    return str(profiles.remove_profile(name))
