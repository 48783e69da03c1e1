"""Ids in each provider's real format, made from the emulator's counter so that they sort in
creation order (the emulated lists page by id) and never repeat within one emulator."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

IdFormat = Callable[[int], str]

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"
BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def _digits(value: int, alphabet: str, width: int) -> str:
    out = []
    for _ in range(width):
        value, rest = divmod(value, len(alphabet))
        out.append(alphabet[rest])
    return "".join(reversed(out))


def _noise(sequence: int, salt: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{salt}:{sequence}".encode()).digest()[:16], "big")


def openai_file(sequence: int) -> str:
    """`file-` and 22 letters and digits, as "file-2Ycrm6KrJu3fxtPYFTQy6x"."""
    noise = _noise(sequence, "file")
    return f"file-{_digits(sequence, BASE62, 6)}{_digits(noise, BASE62, 16)}"


def openai_batch(sequence: int) -> str:
    """`batch_` and 32 hex digits, as "batch_67f0c1b2d2c881908f9e3b8a4b1c2d3e"."""
    return f"batch_{sequence:08x}{_noise(sequence, 'batch'):032x}"[:38]


def gemini_name(length: int) -> IdFormat:
    """Lowercase letters and digits, as live Gemini names: batches/ and 36, files/ and 12
    ("7h9w4gzuqot3bb3fpd1e2nqcp980iwnmjs7n", "85nave4ld71j" in the listing captured in
    https://github.com/flachesis/gemini-rust/pull/13)."""

    def make(sequence: int) -> str:
        noise = _noise(sequence, f"gemini-{length}")
        return _digits(sequence, BASE36, 6) + _digits(noise, BASE36, length - 6)

    return make


def anthropic_batch(sequence: int) -> str:
    """`msgbatch_01` and 22 letters and digits, as "msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d"."""
    noise = _noise(sequence, "msgbatch")
    return f"msgbatch_01{_digits(sequence, BASE62, 8)}{_digits(noise, BASE62, 14)}"


def ulid(prefix: str) -> IdFormat:
    """Groq's `<prefix>01` and 24 lowercase Crockford digits, as "batch_01jh6xa7reempvjyh6n3yst2zw"."""

    def make(sequence: int) -> str:
        noise = _noise(sequence, prefix)
        return f"{prefix}01{_digits(sequence, CROCKFORD, 8)}{_digits(noise, CROCKFORD, 16)}"

    return make


def uuid4(prefix: str = "") -> IdFormat:
    """A version-4 UUID (Mistral's and Together's ids) whose first group is the counter."""

    def make(sequence: int) -> str:
        noise = f"{_noise(sequence, prefix or 'uuid'):032x}"
        variant = "89ab"[int(noise[3], 16) % 4]
        return (
            f"{prefix}{sequence:08x}-{noise[0:4]}-4{noise[4:7]}-{variant}{noise[8:11]}-"
            f"{noise[11:23]}"
        )

    return make
