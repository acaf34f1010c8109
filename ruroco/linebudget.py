"""A budget of log lines for what a peer can cause at will (docs/security.md, "Log lines").

The commander's socket peer is the server's account. Whoever holds it can send malformed,
unknown or refused requests as fast as it writes, and every one was an error line: enough to
make journald's per-unit rate limit drop the commander's other lines, the record of the
commands it really ran among them. ``LineBudget`` lets ``burst`` such lines through at once
and ``rate`` a second after that; the rest are counted, and the count is reported with the
next line let through or by ``flush``. Sans-IO: the caller passes the time (monotonic
seconds) to every call.
"""

from __future__ import annotations


class LineBudget:
    __slots__ = ("burst", "last", "rate", "since", "suppressed", "tokens")

    def __init__(self, burst: int, rate: float) -> None:
        self.burst = burst
        self.rate = rate
        self.tokens = float(burst)
        self.last: float | None = None
        self.suppressed = 0
        self.since = 0.0  # when the first line now counted was suppressed

    def _refill(self, now: float) -> None:
        if self.last is not None:
            self.tokens = min(float(self.burst), self.tokens + (now - self.last) * self.rate)
        self.last = now

    def take(self, now: float) -> int | None:
        """How many lines were suppressed before this one, if it may be written now; None
        (and it is counted) if not."""
        self._refill(now)
        if self.tokens < 1.0:
            if not self.suppressed:
                self.since = now
            self.suppressed += 1
            return None
        self.tokens -= 1.0
        count, self.suppressed = self.suppressed, 0
        return count

    def flush(self, now: float) -> tuple[int, float] | None:
        """``(count, seconds)`` of lines suppressed and not reported yet, once a line may be
        written again (it uses the budget of one); else None."""
        if not self.suppressed:
            return None
        self._refill(now)
        if self.tokens < 1.0:
            return None
        self.tokens -= 1.0
        count, self.suppressed = self.suppressed, 0
        return count, now - self.since
