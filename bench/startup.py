"""What starting a process costs here, and why (stages ``exec_*`` and ``cpuid`` of
``bench/breakdown.py``).

A warm shell's start-up is what a back-to-back knock still competes with
(docs/performance.md, "Back to back: the replacement shell"). These stages split it: a static
binary that only exits (``execve`` and exit alone), the same with the C library's start-up
(``main`` returning 0), ``sh -c 'exit 0'``, and the cost of one ``cpuid`` instruction, which
glibc's start-up runs dozens of times and which traps to the hypervisor in a virtual machine.
Each exec stage times ``posix_spawn`` to ``waitpid`` from this process. Built from
``bench/startup.c`` with the C compiler the flood sender uses (``bench/cflood.py``).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from bench import cflood

SOURCE = Path(__file__).resolve().parent / "startup.c"
OUT = cflood.BINARY.parent
#: build name -> compiler flags
BUILDS = {
    "nolibc": ["-static", "-nostdlib", "-DNOLIBC"],
    "glibc_static": ["-static"],
    "cpuid": ["-DCPUID"],
}


def build(name: str) -> Path | None:
    """The up-to-date binary ``name`` of ``BUILDS``, or None where it cannot be built."""
    return cflood.compile_c(SOURCE, OUT / f"startup-{name}", BUILDS[name])


def spawn_to_reaped_ns(argv: list[str], reps: int) -> list[int]:
    """``posix_spawn`` of ``argv`` (empty environment) until ``waitpid`` returns, ``reps``
    times; a run that does not exit 0 is an error."""
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter_ns()
        pid = os.posix_spawn(argv[0], argv, {})
        _, status = os.waitpid(pid, 0)
        samples.append(time.perf_counter_ns() - t0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"{argv[0]} exited with status {status}")
    return samples


def cpuid_ns(binary: Path, reps: int) -> list[float]:
    """Nanoseconds per ``cpuid`` instruction, one figure per run of ``binary``."""
    return [
        float(
            subprocess.run(
                [str(binary)], capture_output=True, text=True, check=True, timeout=10
            ).stdout
        )
        for _ in range(reps)
    ]
