"""The together provider: data here, pure wire code, the adapter and its emulator routes."""
