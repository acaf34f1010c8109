"""Dispatcher: starting a request at once on the submitting thread (docs/performance.md).

``submit(name, task, start)`` runs ``start`` on the caller's thread only while ``name`` has
nothing queued or running and a worker is free; a worker runs the rest. Everything else goes
through the queue exactly as without ``start``, and both parts together count as one running
request of the name.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from commander_helpers import wait_for

from ruroco.commander.dispatch import Dispatcher, Task

WAIT = 10.0


class Recorder:
    """Split jobs that note which thread ran each part and in which order."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[tuple[str, int, int]] = []  # (part, job, thread id)
        self.active = 0
        self.peak: dict[str, int] = {}

    def note(self, part: str, job: int) -> None:
        with self.lock:
            self.events.append((part, job, threading.get_ident()))

    def job(
        self, name: str, i: int, rest: Callable[[], object] = lambda: None
    ) -> tuple[Task, Callable[[], Task]]:
        """``(task, start)`` for job ``i``: the same work, whole or split in two."""

        def begin() -> None:
            self.note("start", i)

        def finish() -> None:
            self.note("rest", i)
            rest()

        def start() -> Task:
            begin()
            return finish

        def task() -> None:
            begin()
            finish()

        return task, start

    def parts(self, part: str) -> list[int]:
        with self.lock:
            return [job for p, job, _ in self.events if p == part]

    def thread_of(self, part: str, job: int) -> int:
        with self.lock:
            return next(t for p, j, t in self.events if p == part and j == job)


def test_idle_name_starts_on_the_calling_thread_and_finishes_on_a_worker() -> None:
    dispatcher = Dispatcher(max_workers=2)
    rec = Recorder()
    task, start = rec.job("a", 1)
    assert dispatcher.submit("a", task, start)
    # ``start`` already ran, before submit returned, on this thread.
    assert rec.parts("start") == [1]
    assert rec.thread_of("start", 1) == threading.get_ident()
    assert dispatcher.wait_idle(WAIT)
    assert rec.parts("rest") == [1]
    assert rec.thread_of("rest", 1) != threading.get_ident()
    assert dispatcher.started_at_once == 1
    dispatcher.shutdown()


def test_name_with_a_running_request_queues_behind_it() -> None:
    dispatcher = Dispatcher(max_workers=4)
    rec = Recorder()
    release = threading.Event()
    first, first_start = rec.job("a", 1, lambda: release.wait(WAIT))
    assert dispatcher.submit("a", first, first_start)
    second, second_start = rec.job("a", 2)
    assert dispatcher.submit("a", second, second_start)
    assert rec.parts("start") == [1]  # the second did not start: its name is busy
    assert dispatcher.pending("a") == 2
    time.sleep(0.1)
    assert rec.parts("start") == [1]
    release.set()
    assert dispatcher.wait_idle(WAIT)
    assert rec.parts("start") == [1, 2] and rec.parts("rest") == [1, 2]
    assert rec.thread_of("start", 2) != threading.get_ident()  # queued: a worker ran it
    assert dispatcher.started_at_once == 1
    dispatcher.shutdown()


def test_no_start_at_once_without_a_free_worker() -> None:
    dispatcher = Dispatcher(max_workers=1)
    rec = Recorder()
    release = threading.Event()
    busy, busy_start = rec.job("busy", 1, lambda: release.wait(WAIT))
    assert dispatcher.submit("busy", busy, busy_start)
    other, other_start = rec.job("other", 2)
    assert dispatcher.submit("other", other, other_start)
    time.sleep(0.1)
    assert rec.parts("start") == [1]  # "other" is idle, but the only worker is taken
    release.set()
    assert dispatcher.wait_idle(WAIT)
    assert rec.parts("rest") == [1, 2]
    assert rec.thread_of("start", 2) != threading.get_ident()
    assert dispatcher.started_at_once == 1
    dispatcher.shutdown()


def test_concurrency_stays_bounded_with_starts_at_once() -> None:
    dispatcher = Dispatcher(max_workers=2)
    release = threading.Event()
    lock = threading.Lock()
    running: set[str] = set()
    peak = 0
    started: list[str] = []

    def split(name: str) -> tuple[Task, Callable[[], Task]]:
        def start() -> Task:
            nonlocal peak
            with lock:
                running.add(name)
                peak = max(peak, len(running))
                started.append(name)

            def rest() -> None:
                release.wait(WAIT)
                with lock:
                    running.discard(name)

            return rest

        return lambda: start()(), start

    for name in ("a", "b", "c", "d"):
        task, start = split(name)
        assert dispatcher.submit(name, task, start)
    time.sleep(0.2)
    with lock:
        assert sorted(started) == ["a", "b"]  # c and d wait for a worker
    release.set()
    assert dispatcher.wait_idle(WAIT)
    dispatcher.shutdown()
    assert sorted(started) == ["a", "b", "c", "d"]
    assert peak == 2
    assert dispatcher.started_at_once == 2


def test_burst_of_one_name_keeps_order_and_never_overlaps() -> None:
    dispatcher = Dispatcher(max_workers=8)
    lock = threading.Lock()
    order: list[int] = []
    active = 0
    peak = 0

    def split(i: int) -> tuple[Task, Callable[[], Task]]:
        def start() -> Task:
            nonlocal active, peak
            with lock:
                active += 1
                peak = max(peak, active)
                order.append(i)

            def rest() -> None:
                nonlocal active
                time.sleep(0.01 if i % 3 == 0 else 0)  # uneven: a parallel run would reorder
                with lock:
                    active -= 1

            return rest

        return lambda: start()(), start

    for round_ in range(3):  # each round begins idle, so its first request starts at once
        for i in range(round_ * 30, round_ * 30 + 30):
            task, start = split(i)
            assert dispatcher.submit("same", task, start)
        assert dispatcher.wait_idle(WAIT)
    dispatcher.shutdown()
    assert order == list(range(90))
    assert peak == 1
    assert 3 <= dispatcher.started_at_once < 90


def test_per_name_bound_counts_a_request_started_at_once() -> None:
    dispatcher = Dispatcher(max_workers=2, max_pending_per_name=3)
    release = threading.Event()
    rec = Recorder()
    results = []
    for i in range(5):
        task, start = rec.job("n", i, lambda: release.wait(WAIT))
        results.append(dispatcher.submit("n", task, start))
    assert results == [True, True, True, False, False]
    assert dispatcher.pending("n") == 3 and dispatcher.pending() == 3
    release.set()
    assert dispatcher.wait_idle(WAIT)
    assert rec.parts("rest") == [0, 1, 2]
    dispatcher.shutdown()


def test_failing_start_is_logged_and_frees_the_name(capfd) -> None:
    dispatcher = Dispatcher(max_workers=2)

    def start() -> Task:
        raise ValueError("spawn went wrong")

    assert dispatcher.submit("x", lambda: None, start)
    assert dispatcher.wait_idle(WAIT)
    assert dispatcher.pending("x") == 0
    done = threading.Event()
    assert dispatcher.submit("x", done.set)
    assert done.wait(WAIT)
    assert dispatcher.wait_idle(WAIT)
    dispatcher.shutdown()
    assert "Error running command x: spawn went wrong" in capfd.readouterr().err


def test_close_keeps_a_request_started_at_once_and_drops_the_queued() -> None:
    dispatcher = Dispatcher(max_workers=2)
    rec = Recorder()
    release = threading.Event()
    first, first_start = rec.job("a", 1, lambda: release.wait(WAIT))
    assert dispatcher.submit("a", first, first_start)
    second, second_start = rec.job("a", 2)
    assert dispatcher.submit("a", second, second_start)
    assert dispatcher.close() == 1  # only the queued one
    assert not dispatcher.wait_idle(0.1)  # the started one still runs
    release.set()
    assert dispatcher.wait_idle(WAIT)
    dispatcher.shutdown()
    assert rec.parts("rest") == [1]


def test_without_start_nothing_runs_on_the_calling_thread() -> None:
    dispatcher = Dispatcher(max_workers=2)
    threads: list[int] = []
    assert dispatcher.submit("a", lambda: threads.append(threading.get_ident()))
    assert wait_for(lambda: threads, WAIT)
    assert dispatcher.wait_idle(WAIT)
    dispatcher.shutdown()
    assert threads[0] != threading.get_ident()
    assert dispatcher.started_at_once == 0
