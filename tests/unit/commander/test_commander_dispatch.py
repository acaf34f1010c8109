"""Dispatcher (docs/deviations.md #3, #13).

Parallel across names, FIFO within a name, bounded per name.
"""

from __future__ import annotations

import threading
import time

import pytest
from commander_helpers import wait_for

from ruroco.commander import dispatch
from ruroco.commander.dispatch import Dispatcher

WAIT = 10.0


def test_same_name_keeps_arrival_order() -> None:
    dispatcher = Dispatcher(max_workers=8)
    seen: list[int] = []

    def job(i: int) -> None:
        time.sleep(0.02 if i % 3 == 0 else 0)  # uneven durations would reorder parallel runs
        seen.append(i)

    for i in range(40):
        assert dispatcher.submit("same", lambda i=i: job(i))
    assert dispatcher.wait_idle(WAIT)
    dispatcher.shutdown()
    assert seen == list(range(40))


def test_same_name_never_overlaps() -> None:
    dispatcher = Dispatcher(max_workers=8)
    active = 0
    peak = 0
    lock = threading.Lock()

    def job() -> None:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.005)
        with lock:
            active -= 1

    for _ in range(20):
        dispatcher.submit("one", job)
    assert dispatcher.wait_idle(WAIT)
    dispatcher.shutdown()
    assert peak == 1


def test_slow_name_does_not_delay_other_names() -> None:
    dispatcher = Dispatcher(max_workers=4)
    release = threading.Event()
    fast_done = threading.Event()
    dispatcher.submit("slow", lambda: release.wait(WAIT))
    dispatcher.submit("slow", lambda: None)  # queued behind the blocked one
    dispatcher.submit("fast", fast_done.set)
    assert fast_done.wait(WAIT)  # ran while "slow" is still blocked
    assert not release.is_set()
    release.set()
    assert dispatcher.wait_idle(WAIT)
    dispatcher.shutdown()


def test_concurrency_is_bounded() -> None:
    dispatcher = Dispatcher(max_workers=2)
    started: list[str] = []
    release = threading.Event()
    lock = threading.Lock()

    def job(name: str) -> None:
        with lock:
            started.append(name)
        release.wait(WAIT)

    for name in ("a", "b", "c"):
        dispatcher.submit(name, lambda name=name: job(name))
    assert wait_for(lambda: len(started) == 2, WAIT)
    time.sleep(0.3)
    with lock:
        assert sorted(started) == ["a", "b"]  # the third waits for a free worker
    release.set()
    assert dispatcher.wait_idle(WAIT)
    dispatcher.shutdown()
    assert sorted(started) == ["a", "b", "c"]


def test_failing_task_is_logged_and_later_tasks_run(capfd) -> None:
    dispatcher = Dispatcher(max_workers=1)
    done = threading.Event()

    def boom() -> None:
        raise ValueError("boom")

    dispatcher.submit("x", boom)
    dispatcher.submit("x", done.set)
    assert done.wait(WAIT)
    assert dispatcher.wait_idle(WAIT)
    dispatcher.shutdown()
    assert "Error running command x: boom" in capfd.readouterr().err


def test_pending_limit_refuses_extra_work() -> None:
    dispatcher = Dispatcher(max_workers=1, max_pending=3)
    release = threading.Event()
    results = [dispatcher.submit("n", lambda: release.wait(WAIT)) for _ in range(5)]
    assert results == [True, True, True, False, False]
    release.set()
    assert dispatcher.wait_idle(WAIT)
    assert dispatcher.submit("n", lambda: None)  # room again
    assert dispatcher.wait_idle(WAIT)
    dispatcher.shutdown()


def test_close_drops_queued_and_refuses_new() -> None:
    dispatcher = Dispatcher(max_workers=1)
    release = threading.Event()
    running = threading.Event()
    ran: list[str] = []

    def first() -> None:
        running.set()
        release.wait(WAIT)
        ran.append("first")

    dispatcher.submit("a", first)
    assert running.wait(WAIT)
    dispatcher.submit("a", lambda: ran.append("queued-a"))
    dispatcher.submit("b", lambda: ran.append("queued-b"))  # waits for the only worker
    assert dispatcher.close() == 2
    assert not dispatcher.submit("c", lambda: ran.append("late"))
    assert not dispatcher.wait_idle(0.1)  # "first" still runs
    release.set()
    assert dispatcher.wait_idle(WAIT)
    dispatcher.shutdown()
    assert ran == ["first"]


# --- per-name bound (security review finding 5) ------------------------------------------


def test_per_name_limit_refuses_only_that_name() -> None:
    dispatcher = Dispatcher(max_workers=2, max_pending_per_name=3)
    release = threading.Event()
    other_ran = threading.Event()
    results = [dispatcher.submit("slow", lambda: release.wait(WAIT)) for _ in range(5)]
    assert results == [True, True, True, False, False]  # one running plus two queued
    assert dispatcher.pending("slow") == 3
    assert dispatcher.submit("other", other_ran.set)
    assert other_ran.wait(WAIT)
    assert not release.is_set()
    release.set()
    assert dispatcher.wait_idle(WAIT)
    assert dispatcher.pending("slow") == 0 and dispatcher.pending() == 0
    assert dispatcher.submit("slow", lambda: None)  # room again
    assert dispatcher.wait_idle(WAIT)
    dispatcher.shutdown()


def test_global_limit_is_still_a_safety_net() -> None:
    dispatcher = Dispatcher(max_workers=1, max_pending=4, max_pending_per_name=3)
    release = threading.Event()
    block = lambda: release.wait(WAIT)  # noqa: E731
    assert [dispatcher.submit("a", block) for _ in range(3)] == [True, True, True]
    assert dispatcher.submit("b", block)
    assert not dispatcher.submit("c", block)  # four pending across all names
    assert dispatcher.pending() == 4
    release.set()
    assert dispatcher.wait_idle(WAIT)
    dispatcher.shutdown()


def test_close_frees_the_per_name_bound_of_dropped_tasks() -> None:
    dispatcher = Dispatcher(max_workers=1, max_pending_per_name=2)
    release = threading.Event()
    running = threading.Event()

    def first() -> None:
        running.set()
        release.wait(WAIT)

    assert dispatcher.submit("a", first)
    assert running.wait(WAIT)
    assert dispatcher.submit("a", lambda: None)
    assert dispatcher.close() == 1
    assert dispatcher.pending("a") == 1  # only the running one is left
    release.set()
    assert dispatcher.wait_idle(WAIT)
    assert dispatcher.pending("a") == 0
    dispatcher.shutdown()


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Dispatcher(max_workers=1, max_pending_per_name=0)
    with pytest.raises(ValueError, match="at least 1"):
        Dispatcher(max_workers=1, max_pending=0)


def test_default_global_bound_covers_64_full_names() -> None:
    assert dispatch.DEFAULT_MAX_PENDING_PER_NAME == 64
    assert dispatch.DEFAULT_MAX_PENDING >= 64 * dispatch.DEFAULT_MAX_PENDING_PER_NAME
