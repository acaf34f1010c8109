"""Waking a daemon's ``poll``/``select`` on SIGTERM and SIGINT: one socket pair for both daemons.

The read end goes into the daemon's wait set. ``install`` points ``signal.set_wakeup_fd`` at
the write end (the interpreter writes the signal number there at once, even while the main
thread sits in a C call) and installs the handler for the stop signals; ``wake`` writes a
byte from any thread or handler. ``uninstall`` (also done by ``close``) puts the previous
handlers and wake-up descriptor back. Both ends are non-blocking: a full pair already means
a wake-up is pending, so nothing is lost by dropping the byte and nothing is warned.
"""

from __future__ import annotations

import contextlib
import signal
import socket
from collections.abc import Callable, Iterable
from types import FrameType, TracebackType
from typing import Any

#: The signals both daemons stop on.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

SignalHandler = Callable[[int, FrameType | None], Any]


class Wakeup:
    """A non-blocking socket pair: ``reader`` for the wait set, written by signals and ``wake``."""

    def __init__(self) -> None:
        self.reader, self.writer = socket.socketpair()
        self.reader.setblocking(False)
        self.writer.setblocking(False)
        self._previous: dict[int, Any] | None = None
        self._previous_fd = -1

    def wake(self) -> None:
        """Safe from signal handlers and other threads; never blocks, never raises."""
        with contextlib.suppress(OSError):
            self.writer.send(b"\0")

    def drain(self) -> None:
        """Read every pending wake-up byte (call when ``reader`` polls readable)."""
        with contextlib.suppress(OSError):
            while self.reader.recv(4096):
                pass

    def install(self, handler: SignalHandler, signals: Iterable[int] = STOP_SIGNALS) -> None:
        """Main thread only: ``handler`` for ``signals``, and signals wake ``reader``.

        Installing again replaces the handler but keeps what ``uninstall`` restores.
        """
        previous = {s: signal.signal(s, handler) for s in signals}
        old_fd = signal.set_wakeup_fd(self.writer.fileno(), warn_on_full_buffer=False)
        if self._previous is None:
            self._previous, self._previous_fd = previous, old_fd

    def uninstall(self) -> None:
        """Main thread only: restore the handlers and wake-up descriptor ``install`` replaced."""
        previous, self._previous = self._previous, None
        if previous is None:
            return
        signal.set_wakeup_fd(self._previous_fd)
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    def close(self) -> None:
        self.uninstall()
        self.reader.close()
        self.writer.close()

    def __enter__(self) -> Wakeup:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
