"""Run a command as a child process and measure its wall time, CPU time and peak RSS."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Measurement:
    wall_s: float
    cpu_s: float
    user_s: float
    sys_s: float
    peak_rss_mb: float
    returncode: int
    stdout: str
    stderr: str
    host_cpu_s: float
    """CPU used meanwhile by this (parent) process: the in-process emulator's share."""


def measure(
    argv: list[str], *, env: dict[str, str], cwd: Path | None = None, timeout: float = 3600
) -> Measurement:
    """Start argv, wait with wait4 to get the child's own rusage (wall, CPU, ru_maxrss)."""
    parent_before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    with (
        open(os.devnull, "rb") as stdin,
        _temp_file() as out,
        _temp_file() as err,
    ):
        process = subprocess.Popen(argv, env=env, cwd=cwd, stdin=stdin, stdout=out, stderr=err)
        timer = threading.Timer(timeout, process.kill)
        timer.start()
        try:
            # Blocking wait4 releases the GIL, so the in-process emulator thread keeps serving.
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        stderr = err.read().decode("utf-8", "replace")
    parent_after = resource.getrusage(resource.RUSAGE_SELF)
    # ru_maxrss is in kilobytes on Linux, bytes on macOS.
    rss_mb = usage.ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)
    return Measurement(
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        user_s=usage.ru_utime,
        sys_s=usage.ru_stime,
        peak_rss_mb=rss_mb,
        returncode=process.returncode,
        stdout=stdout,
        stderr=stderr,
        host_cpu_s=(parent_after.ru_utime + parent_after.ru_stime)
        - (parent_before.ru_utime + parent_before.ru_stime),
    )


def _temp_file():  # type: ignore[no-untyped-def]
    import tempfile

    return tempfile.TemporaryFile()
