"""SIGHUP before the receive loop runs: noted, never fatal (docs/files.md, Reload on SIGHUP).

SIGHUP's default disposition terminates the process, and ``systemctl reload`` may send it
while the server is still starting (a ``Type=simple`` unit counts as started at once). So
``ruroco.server.cli`` calls ``defer`` before it imports anything else: from then on a SIGHUP
only sets a flag, and the server, once its own handler is installed, takes the flag
(``take``) and reloads once, which re-reads files that may have changed after start read
them. Only the interpreter's own start, before that import, is left uncovered.

Imports nothing but ``signal``, so that calling it first costs nothing.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

_pending = False


def _note(signum: int, frame: FrameType | None) -> None:
    global _pending
    _pending = True


def defer() -> None:
    """Note SIGHUP instead of dying on it, if nobody has claimed it yet (main thread only;
    elsewhere, or where SIGHUP already has a handler or is ignored, nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGHUP) is signal.SIG_DFL:
        signal.signal(signal.SIGHUP, _note)


def take() -> bool:
    """Whether a SIGHUP was noted since the last call (and forget it)."""
    global _pending
    noted, _pending = _pending, False
    return noted
