"""Capture mode: batch the calls existing SDK and framework code makes, unchanged.

The public surface is `batchling.capture("name")` (a context manager, `with` or `async with`);
the package is not named `capture` so that `batchling.capture` is always that one class."""

from __future__ import annotations

from batchling.capturing.context import capture
from batchling.errors import DryRun

__all__ = ["DryRun", "capture"]
