"""A task that returns a ``Tail`` ends its name's turn there: the name's next request runs
while the tail's work still runs (docs/performance.md, "The commander's path")."""

from __future__ import annotations

import threading

import pytest
from commander_helpers import wait_for

from ruroco.commander.dispatch import Dispatcher, Tail

WAIT = 10.0


def test_the_next_request_of_the_name_runs_while_the_tail_still_works() -> None:
    dispatcher = Dispatcher(max_workers=4)
    events: list[str] = []
    tail_may_end = threading.Event()

    def tail() -> None:
        events.append("tail begins")
        assert tail_may_end.wait(WAIT)
        events.append("tail ends")

    def first() -> Tail:
        events.append("first")
        return Tail(tail)

    def second() -> None:
        events.append("second")

    assert dispatcher.submit("same", first)
    assert dispatcher.submit("same", second)
    assert wait_for(lambda: "second" in events, WAIT)
    assert not dispatcher.wait_idle(0.05)  # the tail is work still running
    tail_may_end.set()
    assert dispatcher.wait_idle(WAIT)
    dispatcher.shutdown()
    assert events.index("first") < events.index("second") < events.index("tail ends")
    assert events.index("first") < events.index("tail begins")


def test_without_a_tail_the_next_request_waits_for_the_whole_task() -> None:
    dispatcher = Dispatcher(max_workers=4)
    events: list[str] = []
    may_end = threading.Event()

    def first() -> None:
        events.append("first begins")
        assert may_end.wait(WAIT)
        events.append("first ends")

    assert dispatcher.submit("same", first)
    assert dispatcher.submit("same", lambda: events.append("second"))
    assert wait_for(lambda: "first begins" in events, WAIT)
    assert not wait_for(lambda: "second" in events, 0.2)
    may_end.set()
    assert dispatcher.wait_idle(WAIT)
    dispatcher.shutdown()
    assert events == ["first begins", "first ends", "second"]


def test_a_running_tail_counts_against_starting_at_once() -> None:
    """Three workers: one runs "a"'s tail apart, the others "c"'s and "d"'s tasks, whose tails
    had to stay within their turns. A request of another name is then not started on the
    submitting thread (its rest would have no worker) but queued, and runs once one is free."""
    dispatcher = Dispatcher(max_workers=3)
    events: list[str] = []
    tails_may_end = threading.Event()
    in_turn = threading.Semaphore(0)

    def tail_a() -> None:
        assert tails_may_end.wait(WAIT)

    def tail_in_turn() -> None:
        in_turn.release()
        assert tails_may_end.wait(WAIT)

    assert dispatcher.submit("a", lambda: Tail(tail_a))
    assert wait_for(lambda: dispatcher._tails == 1 and dispatcher.pending() == 0, WAIT)
    for name in ("c", "d"):
        assert dispatcher.submit(name, lambda: Tail(tail_in_turn))
    for _ in range(2):
        assert in_turn.acquire(timeout=WAIT)
    assert dispatcher._tails == 1 and dispatcher.pending() == 2  # c's and d's: in their turns
    assert dispatcher.submit("b", lambda: events.append("b ran"), lambda: lambda: None)
    assert dispatcher.started_at_once == 0
    assert not wait_for(lambda: "b ran" in events, 0.2)
    tails_may_end.set()
    assert dispatcher.wait_idle(WAIT)
    dispatcher.shutdown()
    assert events == ["b ran"]


def test_a_tail_runs_apart_only_with_a_worker_to_spare_after_the_names_next_turn() -> None:
    """Three workers are needed: the tail, the name's own next turn (its next request may come
    right after), and one free for any other name. With two, the tail stays in the turn even
    when nothing is queued yet, and the name's later request waits for it."""
    for workers, apart in ((2, False), (3, True)):
        dispatcher = Dispatcher(max_workers=workers)
        may_end = threading.Event()
        began = threading.Event()

        def tail(began: threading.Event = began, may_end: threading.Event = may_end) -> None:
            began.set()
            assert may_end.wait(WAIT)

        assert dispatcher.submit("same", lambda tail=tail: Tail(tail))
        assert began.wait(WAIT)
        assert (dispatcher._tails == 1) is apart
        assert (dispatcher.pending("same") == 0) is apart
        may_end.set()
        assert dispatcher.wait_idle(WAIT)
        dispatcher.shutdown()


def test_a_name_never_holds_more_than_two_workers_or_the_last_free_one() -> None:
    """A flood of one name whose tails wait long (a background process holding a command's
    output): one of its tails runs apart, the next stay within their turns, so the name holds
    two of four workers and another name is served at once."""
    dispatcher = Dispatcher(max_workers=4)
    release = threading.Event()
    other = threading.Event()
    try:
        for _ in range(10):
            assert dispatcher.submit("slow", lambda: Tail(lambda: release.wait(WAIT)))
        assert wait_for(lambda: dispatcher._tails == 1, WAIT)
        assert not wait_for(lambda: dispatcher._tails > 1, 0.2)
        assert dispatcher.submit("other", other.set)
        assert other.wait(2.0), "another name waited for the flooded name's tails"
    finally:
        release.set()
    assert dispatcher.wait_idle(WAIT)
    dispatcher.shutdown()


def test_with_two_workers_no_tail_runs_apart() -> None:
    """Running a tail apart would take the last free worker: the name's next request waits
    for the whole task, as without tails."""
    dispatcher = Dispatcher(max_workers=2)
    events: list[str] = []
    may_end = threading.Event()

    def tail() -> None:
        events.append("tail begins")
        assert may_end.wait(WAIT)
        events.append("tail ends")

    assert dispatcher.submit("same", lambda: Tail(tail))
    assert dispatcher.submit("same", lambda: events.append("second"))
    assert wait_for(lambda: "tail begins" in events, WAIT)
    assert not wait_for(lambda: "second" in events, 0.2)
    may_end.set()
    assert dispatcher.wait_idle(WAIT)
    dispatcher.shutdown()
    assert events == ["tail begins", "tail ends", "second"]


def test_a_failing_tail_is_one_log_line_and_the_worker_goes_on(
    capfd: pytest.CaptureFixture[str],
) -> None:
    dispatcher = Dispatcher(max_workers=1)
    ran: list[str] = []

    def broken() -> None:
        raise RuntimeError("tail broke")

    assert dispatcher.submit("x", lambda: Tail(broken))
    assert dispatcher.wait_idle(WAIT)
    assert dispatcher.submit("x", lambda: ran.append("next"))
    assert dispatcher.wait_idle(WAIT)
    dispatcher.shutdown()
    assert ran == ["next"]
    assert "Error running command x: tail broke" in capfd.readouterr().err
