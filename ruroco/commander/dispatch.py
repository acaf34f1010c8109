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

Starting at once (docs/performance.md): a request whose name has nothing queued or running,
while a worker is free, may have its quick first part (``start``: spawning the command) run
on the submitting thread, so the command starts without waiting for a worker to wake up; a
worker then runs what ``start`` returned (waiting for the command). Both parts count as one
running request of that name, so ordering, the bounds and ``max_workers`` hold as before.

Ending a turn early: a task may return a ``Tail``. Its name's turn ends there (the next
request of the name is let go, on another worker) and the tail's ``work`` runs afterwards on
the same worker. The executor's tasks end their turn when ``sh`` has exited and is reaped;
reading what is left of its output and logging the outcome are the tail, so a request that
comes right after another of the same name does not wait for them (docs/performance.md, "The
commander's path"). A name has one such tail at most, and only while, besides it, a worker
is left for every other name's turn, for the name's own next turn, and one more is free;
otherwise its tail runs within its turn, as before. So one name never holds more than two
workers, nor the last free one.
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
# The first part of a task, run on the submitting thread; returns the rest, for a worker.
Start = Callable[[], Task]


class Tail:
    """What a task returns to end its name's turn before all of its work is done: ``work``
    runs on the same worker once the name's next request has been let go."""

    __slots__ = ("work",)

    def __init__(self, work: Callable[[], object]) -> None:
        self.work = work


def _nothing() -> None:
    """The rest of a request whose ``start`` failed (already logged)."""


_NOTHING: Task = _nothing


class _Lane:
    """One name's FIFO; exists while that name has a runner scheduled or running (or a
    request started at once)."""

    __slots__ = ("pending", "queue")

    def __init__(self, task: Task | None) -> None:
        self.queue: deque[Task] = deque(() if task is None else (task,))
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
        self._max_workers = max_workers
        self._max_pending = max_pending
        self._max_per_name = max_pending_per_name
        self._cond = threading.Condition()
        self._lanes: dict[str, _Lane] = {}
        self._pending = 0
        self._tails = 0  # tails running: work of requests whose turn has ended
        self._tail_names: set[str] = set()  # the names those tails belong to
        self._closed = False
        self.started_at_once = 0  # requests whose ``start`` ran on the submitting thread

    def submit(self, name: str, task: Task, start: Start | None = None) -> bool:
        """Queue ``task`` behind earlier tasks of ``name``; False when closed or full.

        Full means ``name`` already has ``max_pending_per_name`` requests pending, or all
        names together have ``max_pending``; a full name does not make other names full.

        ``start``, if given, must do what ``task`` does, split in two (``start()()`` is
        ``task()``). When ``name`` has nothing queued or running and fewer names than
        ``max_workers`` have work (a running tail counts as work), ``start`` runs now on this
        thread and a worker runs what it returned. One thread submits (the commander's loop)
        and only ``submit`` adds lanes, so the free worker is still free when the rest is
        handed over.
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
                start = None
            elif start is not None and len(self._lanes) + self._tails < self._max_workers:
                self._lanes[name] = _Lane(None)  # running: later ones of name queue behind
                self.started_at_once += 1
            else:
                self._lanes[name] = _Lane(task)
                try:
                    self._pool.submit(self._drain_one, name)
                except RuntimeError as exc:  # cannot start a thread: refuse, keep running
                    del self._lanes[name]
                    log.error(f"Could not schedule command {name}: {exc}")
                    return False
                start = None
            self._pending += 1
        if start is not None:
            self._start_at_once(name, start)
        return True

    def _start_at_once(self, name: str, start: Start) -> None:
        """Run ``start`` here, then hand its rest to a worker (its lane is already counted)."""
        try:
            rest = start()
        except Exception as exc:  # as in a worker: one log line, the lane moves on
            log.error(f"Error running command {name}: {exc}")
            rest = _NOTHING
        try:
            self._pool.submit(self._drain_one, name, rest)
        except RuntimeError as exc:  # no thread for the rest: do it here rather than lose it
            log.error(f"Could not schedule command {name}, running it on the loop: {exc}")
            self._drain_one(name, rest)

    def pending(self, name: str | None = None) -> int:
        """Requests queued or running: of ``name``, or of all names when ``name`` is None."""
        with self._cond:
            if name is None:
                return self._pending
            lane = self._lanes.get(name)
            return 0 if lane is None else lane.pending

    def _drain_one(self, name: str, first: Task | None = None) -> None:
        """Run ``first`` (the rest of a request started at once) or the oldest task of
        ``name``, then hand the rest of the lane back to the pool."""
        task = first
        while True:
            with self._cond:
                lane = self._lanes[name]
                if task is None:
                    if not lane.queue:  # emptied by close() before this runner started
                        del self._lanes[name]
                        return
                    task = lane.queue.popleft()
            tail: Tail | None = None
            try:
                result = task()
                if isinstance(result, Tail):
                    tail = result
            except Exception as exc:  # a task must never kill the worker thread
                log.error(f"Error running command {name}: {exc}")
            task = None
            if tail is not None and not self._tail_apart(name):
                self._run_tail(name, tail)  # within the turn, as if it returned no tail
                tail = None
            more = False
            with self._cond:
                self._pending -= 1
                lane.pending -= 1
                if not lane.queue:
                    del self._lanes[name]
                else:
                    try:
                        self._pool.submit(self._drain_one, name)  # back of the line: fairness
                    except RuntimeError:
                        more = True  # no new thread available: keep draining here instead
                self._cond.notify_all()
            if tail is not None:
                self._run_tail(name, tail)
                with self._cond:
                    self._tails -= 1
                    self._tail_names.discard(name)
                    self._cond.notify_all()
            if not more:
                return

    def _tail_apart(self, name: str) -> bool:
        """Whether ``name``'s turn may end before its tail runs (counted as running if so).

        Only one tail per name runs apart, and only if, with a worker for every other name's
        turn and every tail, this tail and the name's own next turn (its next request may come
        at any moment), one more worker is still free: a name whose tails wait long (a
        background process holding a command's output for the whole second) holds two workers
        at most, and never the last free one.
        """
        with self._cond:
            others = len(self._lanes) - 1  # this name's lane is there until its turn ends
            if name in self._tail_names or others + self._tails + 3 > self._max_workers:
                return False
            self._tail_names.add(name)
            self._tails += 1
            return True

    @staticmethod
    def _run_tail(name: str, tail: Tail) -> None:
        try:
            tail.work()
        except Exception as exc:  # as for a task
            log.error(f"Error running command {name}: {exc}")

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
        """True once no task is queued or running, tails included (False if ``timeout``
        passed first)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._pending == 0 == self._tails, timeout)

    def shutdown(self) -> None:
        """Close, then wait for the running tasks; call after ``wait_idle`` for a bound."""
        self.close()
        self._pool.shutdown(wait=True)
