"""Google Gemini's Batch Mode (Developer API): a JSONL file through the Files API.

The folder: `provider.toml` (settings, limits, statuses, prices: data), `wire.py` (pure
encode/decode), `adapter.py` (I/O over the official SDK), `emulator.py` (the emulator's routes),
`PROTOCOL.md` (the wire protocol and its quirks).
"""

from batchling.providers.info import load_info

INFO = load_info(__name__)
