"""Hand an accepted request to the commander over its Unix stream socket.

The message is described in docs/protocol.md, "Commander message".

A commander that stopped accepting (full listen backlog, SIGSTOP, a hung process) must not
stall the server's receive loop, so the loop never waits for it: ``Forwarder.submit`` never
blocks. When nothing is queued and the forwarder thread is not delivering, ``submit`` hands
the request over itself, on the receive loop: one non-blocking connect (on Linux it fails at
once with EAGAIN when the commander's backlog is full, and never waits) and one 24-byte send
on the fresh socket, whose empty buffer takes it at once. That saves the thread's wake-up
and a GIL hand-off per knock (docs/performance.md, The direct hand-off). Anything else - a
request behind others, a would-block, any error - goes to a bounded queue that one
forwarder thread drains, so requests still reach the commander in the order they were
accepted. Each delivery of the thread is bounded by one deadline shared by connect and
write (docs/deviations.md #4); its connect is retried on EAGAIN until the deadline in short
steps. A request the direct attempt could not hand over is delivered (or logged as dropped)
by the thread exactly as a queued one, so the log lines are the same either way.

The server asks ``Forwarder.has_room`` *before* it persists a request's counter: the receive
loop is the only producer and the thread only takes entries out, so room seen there is still
there at ``submit``, and a request refused for lack of room leaves the client's counter
unused. On shutdown the queued requests get one last chance of at most the forward timeout in
total; whatever is left is logged as dropped.

A reload (SIGHUP) changes nothing the thread reads: it sees only finished 24-byte messages
and the socket path, which keeps its start value until a restart (``socket_dir``).
"""

from __future__ import annotations

import errno
import os
import socket
import threading
import time
from collections import deque
from typing import Protocol

from ruroco import log
from ruroco.errors import RurocoError, os_reason, qpath

DEFAULT_TIMEOUT = 1.0
_RETRY_STEP = 0.01
#: Requests waiting for the forwarder thread (one more may be in delivery).
QUEUE_LENGTH = 64
#: How much longer than the last chance ``Forwarder.close`` waits for the thread to finish.
_JOIN_MARGIN = 0.5


class ForwardError(RurocoError):
    """The 24-byte message did not reach the commander."""


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, TimeoutError) and not exc.errno:
        return "timed out"
    return os_reason(exc)


def send_to_commander(
    path: str | os.PathLike[str], message: bytes, timeout: float = DEFAULT_TIMEOUT
) -> None:
    """Connect, write ``message``, close; raise ``ForwardError`` within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    target = os.fspath(path)
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    except OSError as exc:
        raise ForwardError(
            f"Could not connect to socket {qpath(target)}: {_os_reason(exc)}"
        ) from None
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ForwardError(f"Could not connect to socket {qpath(target)}: timed out")
            sock.settimeout(remaining)
            try:
                sock.connect(target)
                break
            except OSError as exc:
                if exc.errno == errno.EAGAIN:  # the backlog is full: wait for room, not past
                    left = deadline - time.monotonic()
                    if left > 0:
                        time.sleep(min(_RETRY_STEP, left))
                        continue
                    # The try began before the deadline and met the full backlog after it:
                    # this delivery timed out, whatever the last errno was.
                    raise ForwardError(
                        f"Could not connect to socket {qpath(target)}: timed out"
                    ) from None
                raise ForwardError(
                    f"Could not connect to socket {qpath(target)}: {_os_reason(exc)}"
                ) from None
        try:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("timed out")
            sock.settimeout(remaining)
            sock.sendall(message)
        except OSError as exc:
            raise ForwardError(
                f"Could not send data to commander via socket {qpath(target)}: {_os_reason(exc)}"
            ) from None
    finally:
        sock.close()


class HandoffStats(Protocol):
    """The counters the forwarder keeps (``Stats`` of the server)."""

    forwarded: int
    forwarded_direct: int
    forward_failed: int
    forward_dropped: int


def try_send_now(target: str, message: bytes) -> bool:
    """Connect and send ``message`` without ever waiting; False if any step would block or
    fails (nothing was delivered then, or at most a cut message the commander refuses)."""
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
    except OSError:
        return False
    try:
        sock.connect(target)  # EAGAIN (BlockingIOError) at once when the backlog is full
        return sock.send(message, socket.MSG_NOSIGNAL) == len(message)
    except OSError:
        return False
    finally:
        sock.close()


class Forwarder:
    """One thread delivering queued requests to the commander, each within ``timeout``.

    Counting: ``forwarded`` and ``forward_failed`` are written by the thread, and
    ``forwarded`` and ``forwarded_direct`` by ``submit`` while the thread is idle (nothing
    queued, nothing in delivery: it writes none then); ``forward_dropped`` (never attempted:
    shutdown, or ``submit`` refused) by the caller only.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        stats: HandoffStats,
        timeout: float = DEFAULT_TIMEOUT,
        capacity: int = QUEUE_LENGTH,
    ) -> None:
        if capacity < 1:
            raise ValueError("the hand-off queue needs room for at least one request")
        self.path = path
        self._target = os.fspath(path)
        self.stats = stats
        self.timeout = timeout
        self.capacity = capacity
        self._queue: deque[tuple[bytes, str]] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._closing = False
        # True from the moment the thread takes a request until its outcome is counted and
        # logged; set before the queue shrinks, so "queue empty and not delivering" means
        # every earlier request has reached the commander or failed.
        self._delivering = False
        self._deadline = 0.0
        self._thread: threading.Thread | None = None

    @property
    def pending(self) -> int:
        """Requests queued and not yet taken by the thread."""
        return len(self._queue)

    def has_room(self) -> bool:
        """Whether ``submit`` would take one more request now (cheap, no lock)."""
        return len(self._queue) < self.capacity and not self._closing

    def submit(self, message: bytes, label: str) -> bool:
        """Hand ``message`` over or queue it, without blocking; False (nothing taken) when
        full or closing.

        Directly (``try_send_now``) only when nothing is queued or in delivery, so requests
        keep their order; otherwise, or when that would block or fails, it is queued for the
        thread. The one producer is the receive loop, so nothing can be queued between the
        check and the send. ``label`` names the request in log lines, e.g.
        ``key [FF, …] (IP 1.2.3.4)``.
        """
        return self.hand_over_now(message) or self.enqueue(message, label)

    def hand_over_now(self, message: bytes) -> bool:
        """The direct part of ``submit``: True (counted and logged as delivered) if the
        thread is idle and ``try_send_now`` succeeded; False and nothing done otherwise, and
        the caller must ``enqueue`` the request (the server builds the label only then)."""
        if (
            not self._queue
            and not self._delivering
            and not self._closing
            and try_send_now(self._target, message)
        ):
            self.stats.forwarded += 1
            self.stats.forwarded_direct += 1
            log.info("Successfully sent data to commander")
            return True
        return False

    def enqueue(self, message: bytes, label: str) -> bool:
        """The queue part of ``submit``: for the thread, False when full or closing."""
        with self._cond:
            if self._closing or len(self._queue) >= self.capacity:
                return False
            self._queue.append((message, label))
            self._cond.notify()
        return True

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="ruroco-forwarder", daemon=True)
            self._thread.start()

    def close(self, grace: float | None = None) -> int:
        """Stop taking requests; give queued ones ``grace`` seconds in total (default: the
        forward timeout), then log what is left as dropped. Returns how many were dropped."""
        grace = self.timeout if grace is None else max(0.0, grace)
        with self._cond:
            self._closing = True
            self._deadline = time.monotonic() + grace
            self._cond.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            # a delivery under way started before close, with at most ``timeout`` to run
            thread.join(max(grace, self.timeout) + _JOIN_MARGIN)
        with self._cond:
            left = list(self._queue)
            self._queue.clear()
        for _, label in left:
            self.stats.forward_dropped += 1
            log.error(
                f"Dropped request for {label}: the server stopped before it could be handed "
                "to the commander"
            )
        return len(left)

    def _next(self) -> tuple[bytes, str, float] | None:
        """The next request and the time its delivery may take; None once the thread ends."""
        with self._cond:
            while not self._queue and not self._closing:
                self._cond.wait()
            if not self._closing:
                self._delivering = True
                message, label = self._queue.popleft()
                return message, label, self.timeout
            remaining = self._deadline - time.monotonic()
            if not self._queue or remaining <= 0:
                return None  # close() logs whatever is still queued
            self._delivering = True
            message, label = self._queue.popleft()
            return message, label, min(self.timeout, remaining)

    def _run(self) -> None:
        while (item := self._next()) is not None:
            try:
                self._deliver(*item)
            finally:
                self._delivering = False

    def _deliver(self, message: bytes, label: str, timeout: float) -> None:
        try:
            send_to_commander(self.path, message, timeout)
        except ForwardError as exc:
            self.stats.forward_failed += 1
            log.error(f"Dropped request for {label}: {exc}")
            return
        except Exception as exc:  # the thread must outlive any surprise, or the queue fills
            self.stats.forward_failed += 1
            log.error(f"Dropped request for {label}: unexpected error: {exc!r}")
            return
        self.stats.forwarded += 1
        log.info("Successfully sent data to commander")
