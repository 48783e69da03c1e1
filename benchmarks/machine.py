"""Machine description for the results file: no hostname, no user, no environment variables."""

from __future__ import annotations

import os
import platform
import re
import sys
from typing import Any


def total_memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    memory = total_memory_bytes()
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "platform": f"{platform.system()} {platform.release()} {platform.machine()}",
        "total_memory_gb": round(memory / 2**30, 1) if memory else None,
        "executable_prefix_is_venv": sys.prefix != sys.base_prefix,
    }


def slug(info: dict[str, Any]) -> str:
    """A filename-safe, hostname-free machine description, e.g. linux-x86_64-2cpu-py3.11."""
    system = platform.system().lower()
    text = f"{system}-{platform.machine()}-{info['cpu_count']}cpu-py{info['python']}"
    text = re.sub(r"\.\d+$", "", text)  # drop the patch version
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text)
