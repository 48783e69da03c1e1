"""`python -m benchmarks.cli_probe ARGS...`: run `batchling ARGS...` and print its own peak RSS
(VmHWM) to stderr at exit, since a child's ru_maxrss carries over the forking parent's."""

from __future__ import annotations

import atexit
import sys

from benchmarks.child import vm_hwm_mb

if __name__ == "__main__":
    atexit.register(lambda: sys.stderr.write(f"\nVMHWM {vm_hwm_mb()}\n"))
    sys.argv = ["batchling", *sys.argv[1:]]
    from batchling.cli import main

    main()
