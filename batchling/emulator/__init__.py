"""An offline HTTP emulator of the six providers' batch APIs, for tests, demos and users' CI."""

from batchling.emulator.engine import EmulatorConfig, Fault
from batchling.emulator.server import Emulator, create_app, exports, running_emulator

__all__ = ["Emulator", "EmulatorConfig", "Fault", "create_app", "exports", "running_emulator"]
