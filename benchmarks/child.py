"""Run one scenario in this (fresh) interpreter: `python -m benchmarks.child NAME N WORKDIR RAW`.

Prints one JSON line prefixed with RESULT_PREFIX; optional cProfile output with --profile PATH.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

RESULT_PREFIX = "BENCHMARK-RESULT "


def vm_hwm_mb() -> float | None:
    """This process's own peak RSS (Linux VmHWM). ru_maxrss of a child is no good here: Linux
    carries the forking parent's high-water mark over into the exec'd child."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def main(argv: list[str]) -> int:
    name, n, workdir, raw = argv[:4]
    profile = argv[5] if len(argv) > 5 and argv[4] == "--profile" else None
    from benchmarks.scenarios import SCENARIOS

    function = SCENARIOS[name]
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        details = profiler.runcall(function, int(n), Path(workdir), Path(raw))
        profiler.dump_stats(profile)
    else:
        details = function(int(n), Path(workdir), Path(raw))
    peak = vm_hwm_mb()
    if peak is not None:
        # A scenario that runs its work in processes of its own reports their peak instead.
        details.setdefault("vm_hwm_mb", peak)
    sys.stdout.write(RESULT_PREFIX + json.dumps(details) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
