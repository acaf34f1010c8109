"""Concurrent but ordered execution, bounded per command name (docs/deviations.md #3, #13).

Each command name has its own FIFO and at most one running job, so requests of one name keep
their order, while different names run in parallel on a bounded thread pool. A name with more
work re-queues itself behind the others after every job, so a busy name cannot starve the
rest of the workers.

At most ``max_pending_per_name`` requests of one name may be pending (queued or running);
beyond that only that name's new requests are refused. ``max_pending`` across all names is a
memory safety net: names come only from commands.toml, and with up to
``max_pending // max_pending_per_name`` names (64 with the defaults) it is never the bound
that refuses a request.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from ruroco import log

# Requests of one name waiting or running at once; beyond this new ones of that name are
# refused (and only those). Working limit: a legitimate client never queues this many.
DEFAULT_MAX_PENDING_PER_NAME = 64
# Requests waiting or running across all names: a memory safety net, sized so that 64
# names can each fill their own bound before it applies.
DEFAULT_MAX_PENDING = 64 * DEFAULT_MAX_PENDING_PER_NAME

Task = Callable[[], object]


class _Lane:
    """One name's FIFO; exists while that name has a runner scheduled or running."""

    __slots__ = ("pending", "queue")

    def __init__(self, task: Task) -> None:
        self.queue: deque[Task] = deque((task,))
        self.pending = 1  # queued plus running


class Dispatcher:
    def __init__(
        self,
        max_workers: int,
        max_pending: int = DEFAULT_MAX_PENDING,
        max_pending_per_name: int = DEFAULT_MAX_PENDING_PER_NAME,
    ) -> None:
        if max_pending < 1 or max_pending_per_name < 1:
            raise ValueError("max_pending and max_pending_per_name must be at least 1")
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="ruroco-cmd")
        self._max_pending = max_pending
        self._max_per_name = max_pending_per_name
        self._cond = threading.Condition()
        self._lanes: dict[str, _Lane] = {}
        self._pending = 0
        self._closed = False

    def submit(self, name: str, task: Task) -> bool:
        """Queue ``task`` behind earlier tasks of ``name``; False when closed or full.

        Full means ``name`` already has ``max_pending_per_name`` requests pending, or all
        names together have ``max_pending``; a full name does not make other names full.
        """
        with self._cond:
            if self._closed or self._pending >= self._max_pending:
                return False
            lane = self._lanes.get(name)
            if lane is not None:  # a runner for this name is already scheduled
                if lane.pending >= self._max_per_name:
                    return False
                lane.queue.append(task)
                lane.pending += 1
            else:
                self._lanes[name] = _Lane(task)
                try:
                    self._pool.submit(self._drain_one, name)
                except RuntimeError as exc:  # cannot start a thread: refuse, keep running
                    del self._lanes[name]
                    log.error(f"Could not schedule command {name}: {exc}")
                    return False
            self._pending += 1
            return True

    def pending(self, name: str | None = None) -> int:
        """Requests queued or running: of ``name``, or of all names when ``name`` is None."""
        with self._cond:
            if name is None:
                return self._pending
            lane = self._lanes.get(name)
            return 0 if lane is None else lane.pending

    def _drain_one(self, name: str) -> None:
        """Run the oldest task of ``name``, then hand the rest back to the pool."""
        while True:
            with self._cond:
                lane = self._lanes[name]
                if not lane.queue:  # emptied by close() before this runner started
                    del self._lanes[name]
                    return
                task = lane.queue.popleft()
            try:
                task()
            except Exception as exc:  # a task must never kill the worker thread
                log.error(f"Error running command {name}: {exc}")
            with self._cond:
                self._pending -= 1
                lane.pending -= 1
                self._cond.notify_all()
                if not lane.queue:
                    del self._lanes[name]
                    return
                try:
                    self._pool.submit(self._drain_one, name)  # back of the line: fairness
                    return
                except RuntimeError:
                    pass  # no new thread available: keep draining here instead

    def close(self) -> int:
        """Refuse new work and drop queued (not yet started) tasks; returns how many dropped."""
        with self._cond:
            self._closed = True
            dropped = 0
            for lane in self._lanes.values():
                dropped += len(lane.queue)
                lane.pending -= len(lane.queue)
                lane.queue.clear()
            self._pending -= dropped
            self._cond.notify_all()
            return dropped

    def wait_idle(self, timeout: float | None = None) -> bool:
        """True once no task is queued or running (False if ``timeout`` passed first)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._pending == 0, timeout)

    def shutdown(self) -> None:
        """Close, then wait for the running tasks; call after ``wait_idle`` for a bound."""
        self.close()
        self._pool.shutdown(wait=True)
