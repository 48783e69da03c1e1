"""Capture mode: batch the calls existing SDK and framework code makes, unchanged.

`batchling.capture("name")` (a context manager, `with` or `async with`) is the public surface."""

from __future__ import annotations

import sys
import types
from typing import Any

from batchling.capture.context import capture
from batchling.errors import DryRun

__all__ = ["DryRun", "capture"]


class _CallableModule(types.ModuleType):
    """`batchling.capture` names this package and is also the function users call: whichever
    `import batchling.capture...` ran first, `batchling.capture("name")` opens a capture."""

    def __call__(self, *args: Any, **kwargs: Any) -> capture:
        return capture(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
