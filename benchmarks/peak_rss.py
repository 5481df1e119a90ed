"""Runs a Python module as `python -m` would and writes this process's peak resident memory.

    python benchmarks/peak_rss.py OUT_FILE MODULE [ARGS...]

runs MODULE with ARGS in this process and, however it exits, writes the process's VmHWM (bytes)
to OUT_FILE. The rusage a parent gets from `wait4` cannot give this figure: a child forked from a
large process starts with that process's high-water mark as its own.
"""

from __future__ import annotations

import atexit
import runpy
import sys

from flux_workloads import peak_rss_bytes  # this folder is first on sys.path when run as a script


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit("usage: peak_rss.py OUT_FILE MODULE [ARGS...]")
    out, module = sys.argv[1], sys.argv[2]

    def write() -> None:
        with open(out, "w") as f:
            f.write(str(peak_rss_bytes()))

    atexit.register(write)
    sys.argv = [module, *sys.argv[3:]]
    del sys.path[0]  # this folder; the module is found as `python -m` would find it
    sys.path.insert(0, "")
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
