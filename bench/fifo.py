"""The "command started" probe: a FIFO that the benchmarked command writes one byte into.

The bench holds both ends open: the read end so that ``printf x > fifo`` in the command never
blocks, and a spare write end so that the read end never sees end-of-file between commands.
The arrival time of a byte is taken in the bench process right after ``poll`` wakes up.
"""

from __future__ import annotations

import contextlib
import os
import select
import time
from pathlib import Path


class Fifo:
    def __init__(self, path: Path) -> None:
        self.path = path
        os.mkfifo(path, 0o600)
        self._rfd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        self._wfd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        self._poll = select.poll()
        self._poll.register(self._rfd, select.POLLIN)
        self.total = 0

    def wait_byte(self, timeout: float) -> int | None:
        """``perf_counter_ns`` when at least one byte arrived, or None after ``timeout`` s.

        Reads every byte that is pending; all of them count towards ``total``.
        """
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            if self._poll.poll(remaining * 1000):
                now = time.perf_counter_ns()
                if self._read_pending():
                    return now

    def drain(self, settle: float = 0.0) -> int:
        """Read whatever arrives within ``settle`` s; returns the number of bytes read."""
        got = self._read_pending()
        deadline = time.monotonic() + settle
        while (remaining := deadline - time.monotonic()) > 0:
            if self._poll.poll(remaining * 1000):
                got += self._read_pending()
        return got

    def _read_pending(self) -> int:
        got = 0
        while True:
            try:
                chunk = os.read(self._rfd, 4096)
            except BlockingIOError:
                break
            if not chunk:
                break
            got += len(chunk)
        self.total += got
        return got

    def close(self) -> None:
        for fd in (self._rfd, self._wfd):
            with contextlib.suppress(OSError):
                os.close(fd)
