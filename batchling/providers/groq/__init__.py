"""Groq's Batch API: OpenAI's files + batches protocol below /openai/v1, with Groq's turns.

The folder: `provider.toml` (settings, limits, statuses, prices: data), `wire.py` (pure
encode/decode), `adapter.py` (I/O over the official SDK), `emulator.py` (the emulator's routes),
`PROTOCOL.md` (the wire protocol and its quirks).
"""

from batchling.providers.info import load_info

INFO = load_info(__name__)
