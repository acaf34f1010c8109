"""At most one error line per 5 seconds for rejected datagrams (spec §3.10).

Rejections are caused by whoever sends packets, so logging each one would let any host on
the internet flood the journal. Every rejection is still available at debug level, and the
emitted line says how many were swallowed. Messages are passed as a callable and
formatted only when a line is actually written: under a flood almost every
call is a counter increment.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ruroco import log

INTERVAL = 5.0


def suppressed_suffix(count: int) -> str:
    return f" ({count} more suppressed in the last 5s)" if count else ""


class ErrorThrottle:
    __slots__ = ("_debug", "_emit", "interval", "last", "suppressed")

    def __init__(
        self,
        interval: float = INTERVAL,
        emit: Callable[[str], None] = log.error,
        debug: bool | None = None,
    ) -> None:
        self.interval = interval
        self.last: float | None = None
        self.suppressed = 0
        self._emit = emit
        self._debug = log.debug_enabled() if debug is None else debug

    def gate(self, now: float | None = None) -> int | None:
        """Suppressed count to report if a line may be written now, else None (and count it)."""
        now = time.monotonic() if now is None else now
        last = self.last
        if last is not None and now - last < self.interval:
            self.suppressed += 1
            return None
        count = self.suppressed
        self.last = now
        self.suppressed = 0
        return count

    def report(self, render: Callable[[], str], now: float | None = None) -> bool:
        """Log ``render()`` at debug always and at error when the gate opens."""
        if self._debug:
            log.debug(render())
        count = self.gate(now)
        if count is None:
            return False
        self._emit(render() + suppressed_suffix(count))
        return True
