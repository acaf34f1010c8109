"""Finding the processes a command started, by a unique argument, in a scan of ``/proc``.

Inside a per-command PID namespace ``$$`` and ``$!`` are that namespace's numbers, not the
host's, so a command cannot tell a test its pids by writing them to a file; a ``sleep`` with
an argument no other process has (``marker()``) can be found from outside instead.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
from collections.abc import Iterator
from pathlib import Path

_serial = itertools.count()


def pid_gone(pid: int) -> bool:
    """Dead means no /proc entry or a zombie waiting for its (new) parent to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def marker(base: int = 1000) -> str:
    """A ``sleep`` argument no other process on this machine has (``1000.<pid><n>``)."""
    return f"{base}.{os.getpid()}{next(_serial):03d}"


def marked_pids(mark: str) -> list[int]:
    """Live processes that have ``mark`` as one whole argument (``sh -c`` strings do not)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            argv = Path(f"/proc/{name}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if mark.encode() in argv and not pid_gone(int(name)):
            found.append(int(name))
    return found


@contextlib.contextmanager
def no_survivors(*marks: str) -> Iterator[None]:
    """Kill whatever carries one of ``marks`` at the end, so a failing run leaves nothing."""
    try:
        yield
    finally:
        for mark in marks:
            for pid in marked_pids(mark):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
