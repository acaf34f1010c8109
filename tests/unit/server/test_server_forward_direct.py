"""The direct hand-off: on the receive loop when the forwarder thread is idle, else the queue.

``Forwarder.submit`` connects (non-blocking) and sends the 24 bytes itself when nothing is
queued or in delivery; a full backlog (EAGAIN), a missing socket or any other failure sends
the request to the queue, where the thread delivers it as before. Real Unix listeners, real
UDP knocks through a real ``Server``; no mocks.
"""

from __future__ import annotations

import time

from server_helpers import CommanderStandIn, hung_commander, packet
from test_server_handoff import error_lines, harness, wait_until

from ruroco.ipaddr import parse_ip
from ruroco.protocol import command_hash, encode_commander_data
from ruroco.server.forward import Forwarder, try_send_now
from ruroco.server.server import Stats

HASH = command_hash("default")


def message(i: int) -> bytes:
    return encode_commander_data(HASH, parse_ip(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"))


def test_try_send_now_never_waits_for_a_full_backlog(tmp_path):
    path = tmp_path / "ruroco.socket"
    with hung_commander(path):
        start = time.monotonic()
        for _ in range(20):
            assert try_send_now(str(path), message(1)) is False
        assert time.monotonic() - start < 0.2  # EAGAIN at once, no waiting
    assert try_send_now(str(path), message(1)) is False  # nobody listens: ECONNREFUSED
    path.unlink()
    assert try_send_now(str(path), message(1)) is False  # no socket: ENOENT
    listener = CommanderStandIn(path)
    try:
        assert try_send_now(str(path), message(7)) is True
        assert listener.wait_for(1) == [message(7)]
    finally:
        listener.close()


def test_idle_forwarder_hands_over_on_the_calling_thread(tmp_path):
    stats = Stats()
    path = tmp_path / "ruroco.socket"
    listener = CommanderStandIn(path)
    forwarder = Forwarder(path, stats, timeout=1.0)
    forwarder.start()
    try:
        for i in range(5):
            assert forwarder.submit(message(i), f"request {i}")
            assert stats.forwarded == i + 1  # counted before submit returned: no thread
            assert forwarder.pending == 0
            assert listener.wait_for(i + 1) == [message(j) for j in range(i + 1)]
        assert (stats.forwarded, stats.forwarded_direct, stats.forward_failed) == (5, 5, 0)
    finally:
        assert forwarder.close() == 0
        listener.close()
    assert forwarder.submit(message(9), "late") is False  # closing: nothing sent, nothing queued
    assert stats.forwarded == 5


def test_full_backlog_falls_back_to_the_queue_and_order_holds(tmp_path):
    stats = Stats()
    path = tmp_path / "ruroco.socket"
    recorder = CommanderStandIn(path, accept=False, backlog=2)
    forwarder = Forwarder(path, stats, timeout=10.0, capacity=1000)
    forwarder.start()
    count = 300
    try:
        start = time.monotonic()
        for i in range(count):  # back to back; nobody accepts yet
            assert forwarder.submit(message(i), f"request {i}")
        assert time.monotonic() - start < 1.0, "submit waited for the commander"
        # the backlog took the first few directly, then EAGAIN: the rest waits in the queue
        direct = stats.forwarded_direct
        assert 1 <= direct <= 8 and stats.forwarded == direct
        assert forwarder.pending >= count - direct - 1
        recorder.start()
        assert recorder.wait_for(count) == [message(i) for i in range(count)]
        assert wait_until(lambda: stats.forwarded == count)
        assert stats.forwarded_direct == direct and stats.forward_failed == 0
        # idle again: the next request goes directly, behind all of them
        assert forwarder.submit(message(count), "one more")
        assert stats.forwarded_direct == direct + 1
        assert recorder.wait_for(count + 1)[-1] == message(count)
    finally:
        assert forwarder.close() == 0
        recorder.close()


def test_missing_socket_goes_to_the_thread_which_logs_it_once(tmp_path, capfd):
    stats = Stats()
    path = tmp_path / "ruroco.socket"
    forwarder = Forwarder(path, stats, timeout=1.0)
    forwarder.start()
    try:
        assert forwarder.submit(message(1), "key [FF] (IP 10.0.0.1)")
        assert wait_until(lambda: stats.forward_failed == 1)
    finally:
        assert forwarder.close() == 0
    assert (stats.forwarded, stats.forwarded_direct) == (0, 0)
    err = capfd.readouterr().err
    assert error_lines(err, "Dropped request for key [FF] (IP 10.0.0.1)") == [
        line for line in err.splitlines() if "ERROR ]" in line
    ]
    assert len(error_lines(err, "No such file or directory (os error 2)")) == 1


def test_server_knocks_back_to_back_arrive_in_order_and_idle_ones_go_direct(tmp_path, capfd):
    count = 200
    with harness(tmp_path, forward_timeout=5.0, queue_length=1000) as h:
        recorder = CommanderStandIn(h.socket_path, accept=False, backlog=16)
        recorder.start()
        try:
            # spaced: each finds the thread idle and goes directly
            for i in range(5):
                h.send(packet(counter=time.time_ns(), strict=False, src=f"10.9.0.{i}"))
                assert recorder.wait_for(i + 1)
            assert wait_until(lambda: h.server.stats.forwarded == 5)
            assert h.server.stats.forwarded_direct == 5
            # back to back, each claiming its own source: the commander sees them in order
            base = time.time_ns()
            for i in range(count):
                h.send(packet(counter=base + i, strict=False, src=f"10.1.{i >> 8}.{i & 255}"))
            got = recorder.wait_for(5 + count)
            assert got[5:] == [message((1 << 16) + i) for i in range(count)]
        finally:
            h.stop()
            recorder.close()
    stats = h.result
    assert stats is not None
    assert stats.forwarded == 5 + count and stats.forward_failed == 0
    assert stats.forward_busy == 0 and stats.forward_dropped == 0
    assert 5 <= stats.forwarded_direct <= 5 + count
    assert stats.summary().endswith(f" forwarded_direct={stats.forwarded_direct}")
    out = capfd.readouterr().out
    assert out.count("Successfully sent data to commander") == 5 + count
    assert out.count("INFO ] Valid data for key") == 5 + count
