"""At most one error line per 5 seconds for rejected datagrams.

Rejections are caused by whoever sends packets, so logging each one would let any host on
the internet flood the journal. Every rejection is still available at debug level, and the
emitted line says how many were swallowed. ``gate`` only says whether a line may be
written now, so the caller formats a message only then: under a flood almost every call is
a counter increment. The caller passes the time (monotonic seconds).
"""

from __future__ import annotations

INTERVAL = 5.0


def suppressed_suffix(count: int) -> str:
    return f" ({count} more suppressed in the last 5s)" if count else ""


class ErrorThrottle:
    __slots__ = ("interval", "last", "suppressed")

    def __init__(self, interval: float = INTERVAL) -> None:
        self.interval = interval
        self.last: float | None = None
        self.suppressed = 0

    def gate(self, now: float) -> int | None:
        """Suppressed count to report if a line may be written now, else None (and count it)."""
        last = self.last
        if last is not None and now - last < self.interval:
            self.suppressed += 1
            return None
        count = self.suppressed
        self.last = now
        self.suppressed = 0
        return count
