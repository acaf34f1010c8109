"""Security review finding 5: one flooded command name must not block the others.

Before the fix the dispatcher's queue bound was shared by all names: 1,100 queued requests
for one slow command filled it, and every other command was refused ("Too many queued
commands") until the slow queue drained. These tests use only the original API and the
default limits, with real threads.
"""

from __future__ import annotations

import threading

from ruroco.commander.dispatch import Dispatcher

WAIT = 10.0
FLOOD = 1100  # the reported scenario


def test_flooded_slow_name_leaves_other_names_accepted_and_prompt() -> None:
    dispatcher = Dispatcher(max_workers=4)
    release = threading.Event()
    ran: list[int] = []

    def slow(i: int) -> None:
        release.wait(WAIT)
        ran.append(i)

    try:
        accepted = sum(dispatcher.submit("slow", lambda i=i: slow(i)) for i in range(FLOOD))
        assert 0 < accepted < FLOOD  # the flood itself is bounded
        for _ in range(3):  # and keeps being refused for that name while it is stuck
            assert not dispatcher.submit("slow", lambda: None)
        default_ran = threading.Event()
        assert dispatcher.submit("default", default_ran.set)
        assert default_ran.wait(WAIT)  # runs while "slow" is still blocked
        assert not release.is_set() and ran == []
    finally:
        release.set()
    assert dispatcher.wait_idle(WAIT)
    dispatcher.shutdown()
    assert ran == list(range(accepted))  # the accepted part of the flood ran, in order


def test_concurrent_floods_of_several_names_do_not_block_a_quiet_name() -> None:
    dispatcher = Dispatcher(max_workers=8)
    release = threading.Event()
    names = [f"flood-{i}" for i in range(4)]
    accepted = dict.fromkeys(names, 0)
    start = threading.Barrier(len(names) + 1)

    def flood(name: str) -> None:
        start.wait(WAIT)
        for _ in range(FLOOD // 2):
            accepted[name] += dispatcher.submit(name, lambda: release.wait(WAIT))

    threads = [threading.Thread(target=flood, args=(name,)) for name in names]
    try:
        for thread in threads:
            thread.start()
        start.wait(WAIT)
        for thread in threads:
            thread.join(WAIT)
            assert not thread.is_alive()
        for round_ in range(5):  # a quiet name is served every time, not just once
            done = threading.Event()
            assert dispatcher.submit("default", done.set), f"refused in round {round_}"
            assert done.wait(WAIT)
        assert all(0 < n < FLOOD // 2 for n in accepted.values()), accepted
        assert dispatcher.pending() == sum(accepted.values())
        assert not release.is_set()
    finally:
        release.set()
    assert dispatcher.wait_idle(WAIT)
    dispatcher.shutdown()


def test_busy_name_takes_turns_with_a_later_name_on_one_worker() -> None:
    dispatcher = Dispatcher(max_workers=1)
    gate = threading.Event()
    order: list[str] = []
    assert dispatcher.submit("busy", lambda: gate.wait(WAIT))
    for i in range(20):
        assert dispatcher.submit("busy", lambda i=i: order.append(f"busy-{i}"))
    assert dispatcher.submit("other", lambda: order.append("other"))
    gate.set()
    assert dispatcher.wait_idle(WAIT)
    dispatcher.shutdown()
    assert order.index("other") < 2  # round robin: not behind all twenty
    assert [o for o in order if o != "other"] == [f"busy-{i}" for i in range(20)]
