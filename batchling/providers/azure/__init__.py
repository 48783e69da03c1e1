"""Azure OpenAI's Global Batch: OpenAI's files + batches protocol below the resource's /openai,
with an `api-version` on every call, the `api-key` header and a deployment name as the model.

The folder: `provider.toml` (settings, limits, statuses, prices: data), `wire.py` (pure
encode/decode), `adapter.py` (I/O over the openai SDK's Azure client), `emulator.py` (the
emulator's routes), `PROTOCOL.md` (the wire protocol, its quirks and their sources).
"""

from batchling.providers.info import load_info

INFO = load_info(__name__)
