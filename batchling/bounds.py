"""Bounds on what a user gives batchling, checked at the edge with one line naming the input:
numbers (finite, within the range the provider and SQLite can hold), names, base URLs, and
text shown on a terminal.

Imported by the CLI at start-up: it needs nothing but the errors module.
"""

from __future__ import annotations

import math
import unicodedata

from batchling.errors import ConfigurationError, InputError

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
"""SQLite's INTEGER, and what every provider's JSON parser takes for an integer field."""
INT32_MAX = 2**31 - 1
"""Token counts (max_tokens, a thinking budget, dimensions): far above any model's, within
every provider's integer type."""
INT32_MIN = -(2**31)
MAX_POLL_SECONDS = 86_400.0
MAX_TIMEOUT = 365 * 86_400.0
"""Seconds: a day between polls, a year of waiting."""
MAX_NAME_LENGTH = 200
"""An experiment's name is also a directory name (at most 255 bytes on most file systems)."""
# Bidirectional overrides reorder what a terminal shows without being control characters.
_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)


def check_number(
    name: str,
    value: float | int | str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    whole: bool = False,
    unit: str = "",
) -> float:
    """`value` as a number when it is finite and within [minimum, maximum] (a whole number with
    `whole`); else ConfigurationError naming `name`. Strings are parsed (environment variables)."""
    kind = "a whole number" if whole else "a finite number"
    span = _span(minimum, maximum)
    shown = repr(value) if isinstance(value, str) else f"{value}"
    if len(shown) > 40:
        shown = shown[:37] + "..."
    refused = ConfigurationError(
        f"{name} must be {kind}{f' of {unit}' if unit else ''}{span}, not {shown}."
    )
    number: float | int
    if isinstance(value, bool):
        raise refused
    if isinstance(value, str):
        try:
            number = int(value.strip()) if whole else float(value.strip())
        except ValueError:
            raise refused from None
    else:
        number = value
    if whole and not isinstance(number, int):
        if not (isinstance(number, float) and number.is_integer()):
            raise refused
        number = int(number)
    if isinstance(number, float) and not math.isfinite(number):
        raise refused
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise refused
    return number


def finite_number(
    name: str,
    value: float | int | str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    unit: str = "",
) -> float:
    return float(check_number(name, value, minimum=minimum, maximum=maximum, unit=unit))


def whole_number(
    name: str, value: float | int | str, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    return int(check_number(name, value, minimum=minimum, maximum=maximum, whole=True))


def _span(minimum: float | None, maximum: float | None) -> str:
    def shown(number: float) -> str:
        return f"{number:,}" if abs(number) >= 10_000 else f"{number:g}"

    if minimum is not None and maximum is not None:
        return f" from {shown(minimum)} to {shown(maximum)}"
    if minimum is not None:
        return f" of at least {shown(minimum)}"
    if maximum is not None:
        return f" of at most {shown(maximum)}"
    return ""


def unsafe_characters(text: str) -> list[str]:
    """The characters of `text` a terminal would act on rather than show (control characters,
    line breaks, bidirectional overrides), escaped."""
    if text.isprintable():
        return []
    return [
        printable(char)
        for char in dict.fromkeys(text)
        if unicodedata.category(char) in ("Cc", "Zl", "Zp") or char in _BIDI_CONTROLS
    ]


def check_name(name: str, what: str = "Experiment name") -> None:
    """A name is shown in tables, used as a directory name and sent as batch metadata."""
    if not isinstance(name, str) or not name or not name.strip():
        raise InputError(f"{what} must not be empty (--name).")
    unsafe = unsafe_characters(name)
    if unsafe:
        raise InputError(
            f"{what} '{printable(name)}' contains {', '.join(unsafe)}: names may not hold control "
            "characters, line breaks or escape sequences."
        )
    if "/" in name or "\\" in name or name in (".", ".."):
        raise InputError(f"{what} '{name}' may not contain '/' or '\\'.")
    if len(name) > MAX_NAME_LENGTH:
        raise InputError(
            f"{what} '{name[:40]}...' is {len(name)} characters long: at most "
            f"{MAX_NAME_LENGTH} are allowed."
        )


def printable(text: str, *, keep_newlines: bool = False) -> str:
    """`text` safe to print on a terminal: each control character (escape sequences, carriage
    returns, NUL, bidirectional overrides) shown escaped, as Python would write it."""
    if text.isprintable():
        return text
    out = []
    for char in text:
        if keep_newlines and char in "\n\t":
            out.append(char)
        elif unicodedata.category(char) in ("Cc", "Zl", "Zp") or char in _BIDI_CONTROLS:
            out.append(repr(char)[1:-1])
        else:
            out.append(char)
    return "".join(out)


def check_base_url(url: str) -> str:
    """An http(s) base URL without credentials (they would be stored and shown): the key goes in
    the provider's API key variable."""
    from urllib.parse import urlsplit

    unsafe = unsafe_characters(url)
    if unsafe:
        raise ConfigurationError(f"The base URL contains {', '.join(unsafe)}: give a plain URL.")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a port that is not a number)
    except ValueError as error:
        raise ConfigurationError(
            f"The base URL '{redacted_url(url)}' is not a valid URL ({error})."
        ) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"The base URL '{redacted_url(url)}' must start with http:// or https:// and name a host."
        )
    if parts.username is not None or parts.password is not None:
        raise ConfigurationError(
            f"The base URL '{redacted_url(url)}' holds credentials: they would be stored and "
            "shown. Give the URL without 'user:password@' and the key in the provider's API key "
            "variable (see 'batchling providers')."
        )
    return url


def redacted_url(url: str) -> str:
    """`url` with any password in it replaced by ***."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url.split("@")[-1] if "@" in url else url
    if password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))
