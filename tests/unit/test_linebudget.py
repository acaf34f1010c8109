"""The log-line budget for what a socket peer can cause at will (ruroco/linebudget.py)."""

from __future__ import annotations

from ruroco.linebudget import LineBudget


def test_a_burst_passes_then_the_rate_and_the_count_comes_with_the_next_line() -> None:
    budget = LineBudget(burst=3, rate=2.0)
    assert [budget.take(0.0) for _ in range(5)] == [0, 0, 0, None, None]
    assert budget.take(0.25) is None  # half a line earned
    assert budget.take(0.5) == 3  # one line: it reports the three before it
    assert budget.take(0.5) is None
    assert budget.take(10.0) == 1  # refilled to the burst, never beyond
    assert [budget.take(10.0) for _ in range(3)] == [0, 0, None]


def test_flush_reports_what_no_later_line_carried_once_there_is_room() -> None:
    budget = LineBudget(burst=1, rate=1.0)
    assert budget.flush(0.0) is None  # nothing suppressed
    assert budget.take(0.0) == 0
    assert budget.take(0.1) is None and budget.take(0.2) is None
    assert budget.flush(0.5) is None  # no room yet
    assert budget.flush(1.2) == (2, 1.2 - 0.1)
    assert budget.flush(5.0) is None  # reported once
