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
    """With one worker busy with a tail, a request of another name is not started on the
    submitting thread (its rest would have no worker), but queued, and runs after the tail."""
    dispatcher = Dispatcher(max_workers=1)
    events: list[str] = []
    tail_may_end = threading.Event()

    def tail() -> None:
        assert tail_may_end.wait(WAIT)
        events.append("tail ends")

    def started() -> None:
        events.append("started on the submitting thread")

    assert dispatcher.submit("a", lambda: Tail(tail))
    assert wait_for(lambda: dispatcher.pending() == 0, WAIT)  # turn over, tail running
    assert dispatcher.submit("b", lambda: events.append("b ran"), lambda: started)
    assert dispatcher.started_at_once == 0
    assert not wait_for(lambda: "b ran" in events, 0.2)
    tail_may_end.set()
    assert dispatcher.wait_idle(WAIT)
    dispatcher.shutdown()
    assert events == ["tail ends", "b ran"]


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
