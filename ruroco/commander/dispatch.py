"""Concurrent but ordered execution (deviation 3).

The original ran every command synchronously in the accept loop, so one slow command
delayed all others. Here each command name has its own FIFO, and at most one job per name
runs at a time (so ``open_port`` followed by ``close_port`` style pairs of one name keep
their order), while different names run in parallel on a bounded thread pool. A name with
more work re-queues itself behind the others after every job, so a busy name cannot starve
the rest.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from ruroco import log

# Requests waiting (queued or running) across all names; beyond this new ones are refused,
# so a flood cannot grow memory without bound. Only the server can connect, and it is
# rate-limited, so this is a safety net rather than a working limit.
DEFAULT_MAX_PENDING = 1024

Task = Callable[[], object]


class Dispatcher:
    def __init__(self, max_workers: int, max_pending: int = DEFAULT_MAX_PENDING) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="ruroco-cmd")
        self._max_pending = max_pending
        self._cond = threading.Condition()
        self._queues: dict[str, deque[Task]] = {}
        self._pending = 0
        self._closed = False

    def submit(self, name: str, task: Task) -> bool:
        """Queue ``task`` behind earlier tasks of ``name``; False when closed or full."""
        with self._cond:
            if self._closed or self._pending >= self._max_pending:
                return False
            queue = self._queues.get(name)
            if queue is not None:  # a runner for this name is already scheduled
                queue.append(task)
            else:
                self._queues[name] = deque((task,))
                try:
                    self._pool.submit(self._drain_one, name)
                except RuntimeError as exc:  # cannot start a thread: refuse, keep running
                    del self._queues[name]
                    log.error(f"Could not schedule command {name}: {exc}")
                    return False
            self._pending += 1
            return True

    def _drain_one(self, name: str) -> None:
        """Run the oldest task of ``name``, then hand the rest back to the pool."""
        while True:
            with self._cond:
                queue = self._queues[name]
                if not queue:  # emptied by close() before this runner started
                    del self._queues[name]
                    return
                task = queue.popleft()
            try:
                task()
            except Exception as exc:  # a task must never kill the worker thread
                log.error(f"Error running command {name}: {exc}")
            with self._cond:
                self._pending -= 1
                self._cond.notify_all()
                if not queue:
                    del self._queues[name]
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
            dropped = sum(len(q) for q in self._queues.values())
            for queue in self._queues.values():
                queue.clear()
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
