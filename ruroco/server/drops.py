"""What the kernel dropped at the server's socket: the periodic summary line.

Datagrams the kernel drops never reach the server, so without this line an operator would
not see a flood at all once the kernel filter is on, and would not see a full receive queue
ever. ``SO_MEMINFO`` gives the socket's drop counter (``SK_MEMINFO_DROPS``, the same count
as the ``drops`` column of /proc/net/udp): for a UDP socket the kernel raises it for a
datagram its socket filter refused and for one that found the receive queue full (both
verified against the real kernel by tests/unit/server/test_server_drops.py). It cannot tell
the two apart per socket; /proc/net/snmp can, but only for the whole network namespace,
which under systemd's ``PrivateNetwork=`` is not the socket's (docs/performance.md, Floods
in the default deployment).

The counter belongs to the socket, which systemd keeps across server restarts, so the
server reports what changed since its own start. It is 32 bits wide and wraps.
"""

from __future__ import annotations

import math
import socket
import struct

SO_MEMINFO = getattr(socket, "SO_MEMINFO", 55)  # <asm-generic/socket.h>
SK_MEMINFO_DROPS = 8  # <linux/sock_diag.h>: index in the u32 array SO_MEMINFO returns
_MEMINFO_BYTES = 4 * 16  # room for later kernels' longer arrays; the kernel writes fewer
_U32 = struct.Struct("=I")
WRAP = 1 << 32


def read_drops(sock: socket.socket) -> int | None:
    """The socket's drop counter, or None where the kernel does not give it."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, _MEMINFO_BYTES)
    except OSError:
        return None
    if len(raw) < _U32.size * (SK_MEMINFO_DROPS + 1):
        return None
    return int(_U32.unpack_from(raw, _U32.size * SK_MEMINFO_DROPS)[0])


def drop_line(count: int, seconds: float, kernel_filter: bool) -> str:
    """The summary line; names the kernel filter only when it is on."""
    why = "receive queue full or kernel filter" if kernel_filter else "receive queue full"
    return f"Kernel dropped {count} datagrams in the last {seconds:.0f} s ({why})"


class DropReport:
    """Counts the socket's drops over intervals; ``check`` says when one ends with drops.

    ``interval`` 0, or a kernel without the counter, turns the report off (``due`` is then
    infinitely far). Sans-IO apart from ``getsockopt``: the caller passes the monotonic time
    and logs the line.
    """

    def __init__(self, sock: socket.socket, interval: float, now: float) -> None:
        self.sock = sock
        self.interval = interval
        self.last = read_drops(sock)
        self.since = now
        self.due = self._end(now)

    def _end(self, start: float) -> float:
        if self.interval <= 0 or self.last is None:
            return math.inf
        return start + self.interval

    def check(self, now: float, kernel_filter: bool) -> str | None:
        """The line for the interval that ended by ``now``, if the kernel dropped anything
        in it; None otherwise (also before the interval ended, or without a counter)."""
        if self.interval <= 0 or now < self.due or self.last is None:
            return None
        current = read_drops(self.sock)
        if current is None:
            return None
        count = (current - self.last) % WRAP
        seconds = now - self.since
        self.last, self.since = current, now
        self.due = self._end(now)
        return drop_line(count, seconds, kernel_filter) if count else None

    def reschedule(self, interval: float, now: float) -> None:
        """A reload changed the interval: the running one ends at its start + ``interval``."""
        if interval == self.interval:
            return
        if self.interval <= 0:  # was off: count from now
            self.last, self.since = read_drops(self.sock), now
        self.interval = interval
        self.due = self._end(self.since)
