"""OpenAI's files + batches protocol, shared by the providers that speak it: the client the
adapters subclass (`client.py`) and the emulator's routes for it (`emulator.py`)."""
