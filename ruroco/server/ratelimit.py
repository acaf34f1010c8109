"""Fixed one-second windows per source IP and for the whole server (docs/deviations.md #2).

A window opens at the first request after the previous one expired and admits ``max``
requests. Per-IP state sits in an ``OrderedDict`` ordered by window start (a reset window
moves to the end), so expiring old entries only looks at the front: O(1) amortized per
check, however many spoofed sources a flood uses, and memory stays bounded by one second
of distinct sources.

Deliberate difference from the original: a window that reopens counts the request against
``max`` like any other, so ``max = 0`` refuses everything for the global cap as well (the
original let one request per idle second through).

Sans-IO: the caller passes the time (monotonic seconds) to every check; nothing here reads a
clock. A ``WindowLimit`` made without a start opens its first window at its first request.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

WINDOW = 1.0


class WindowLimit:
    """One fixed window: the global cap."""

    __slots__ = ("count", "max", "start")

    def __init__(self, max_per_window: int, now: float = float("-inf")) -> None:
        self.max = max_per_window
        self.start = now
        self.count = 0

    def allow(self, now: float) -> bool:
        if now - self.start >= WINDOW:
            self.start = now
            self.count = 0
        if self.count >= self.max:
            return False
        self.count += 1
        return True


class PerSourceLimit:
    """One fixed window per source; entries expire one window after they opened."""

    __slots__ = ("entries", "max")

    def __init__(self, max_per_window: int) -> None:
        self.max = max_per_window
        self.entries: OrderedDict[Hashable, list[float | int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self.entries)

    def sweep(self, now: float) -> None:
        """Drop the windows that expired: ``now - start >= WINDOW``, the same expression as
        ``WindowLimit`` (``start > now - WINDOW`` rounds differently right at the edge)."""
        entries = self.entries
        while entries:
            first = next(iter(entries.values()))
            if now - first[0] < WINDOW:
                return
            entries.popitem(last=False)

    def allow(self, source: Hashable, now: float) -> bool:
        self.sweep(now)
        slot = self.entries.get(source)
        if slot is None:
            if self.max <= 0:
                return False
            self.entries[source] = [now, 1]
            return True
        # The sweep removed every expired window, so ``slot`` is current.
        if slot[1] >= self.max:
            return False
        slot[1] += 1
        return True
