"""Ids in each provider's real format, made from the emulator's counter so that they sort in
creation order (the emulated lists page by id) and never repeat within one emulator."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

IdFormat = Callable[[int], str]

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"
BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def digits(value: int, alphabet: str, width: int) -> str:
    out = []
    for _ in range(width):
        value, rest = divmod(value, len(alphabet))
        out.append(alphabet[rest])
    return "".join(reversed(out))


def salted(sequence: int, salt: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{salt}:{sequence}".encode()).digest()[:16], "big")


def ulid(prefix: str) -> IdFormat:
    """`<prefix>01` and 24 lowercase Crockford digits (a ULID), as "batch_01jh6xa7reempvjyh6n3yst2zw"."""

    def make(sequence: int) -> str:
        noise = salted(sequence, prefix)
        return f"{prefix}01{digits(sequence, CROCKFORD, 8)}{digits(noise, CROCKFORD, 16)}"

    return make


def uuid4(prefix: str = "") -> IdFormat:
    """A version-4 UUID (Mistral's and Together's ids) whose first group is the counter."""

    def make(sequence: int) -> str:
        noise = f"{salted(sequence, prefix or 'uuid'):032x}"
        variant = "89ab"[int(noise[3], 16) % 4]
        return (
            f"{prefix}{sequence:08x}-{noise[0:4]}-4{noise[4:7]}-{variant}{noise[8:11]}-"
            f"{noise[11:23]}"
        )

    return make
