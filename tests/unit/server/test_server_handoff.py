"""The hand-off to the commander runs off the receive loop (security-review finding 10).

A commander that stops accepting must never block the UDP receive loop: accepted requests go
into a bounded queue that one forwarder thread drains, each delivery bounded by the forward
timeout. When the queue is full, a valid request is refused *before* its counter is
persisted (the client can knock again) with a line that fail2ban does not match. On shutdown
queued requests get one bounded last chance; what is left is logged as dropped.

Real UDP on loopback, real Unix sockets, real key and blocklist files; no mocks.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from server_helpers import FIXTURE_ID, CommanderStandIn, hung_commander, packet, write_setup

from ruroco.ipaddr import parse_ip
from ruroco.protocol import command_hash, encode_commander_data
from ruroco.server.blocklist import Blocklist, open_at_startup
from ruroco.server.config import load_config
from ruroco.server.forward import QUEUE_LENGTH, Forwarder
from ruroco.server.keys import find_key_files, load_keys
from ruroco.server.pipeline import Pipeline
from ruroco.server.server import Server, Stats

LIMITS = "max_requests_per_second = 100000\nmax_requests_per_second_global = 100000\n"
MESSAGE = encode_commander_data(command_hash("default"), parse_ip("127.0.0.1"))


class Harness:
    """A ``Server`` on 127.0.0.1:<free port> with a small hand-off queue, run in a thread."""

    def __init__(self, tmp_path: Path, forward_timeout: float, queue_length: int) -> None:
        config = load_config(write_setup(tmp_path, extra=LIMITS))
        keys = load_keys(find_key_files(config.key_dir()))
        self.blocklist: Blocklist = open_at_startup(
            config.blocklist_path(), keys.keys(), time.time_ns()
        )
        time.sleep(0.002)  # counters made from now on are above the startup floor
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        self.address = sock.getsockname()
        self.socket_path = config.socket_path()
        self.server = Server(
            config,
            Pipeline(config, keys, self.blocklist),
            sock,
            self.socket_path,
            forward_timeout=forward_timeout,
            queue_length=queue_length,
        )
        self.client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.client.bind(("127.0.0.1", 0))
        self.result: Stats | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.result = self.server.run()

    def send(self, data: bytes) -> None:
        self.client.sendto(data, self.address)

    def received_within(self, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.server.stats.received < count:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True

    def stop(self) -> float:
        start = time.monotonic()
        self.server.request_stop()
        self.thread.join(10)
        elapsed = time.monotonic() - start
        assert not self.thread.is_alive()
        self.client.close()
        self.server.close()
        return elapsed


@contextlib.contextmanager
def harness(tmp_path: Path, forward_timeout: float, queue_length: int) -> Iterator[Harness]:
    h = Harness(tmp_path, forward_timeout, queue_length)
    try:
        yield h
    finally:
        if h.thread.is_alive():
            h.stop()


def wait_until(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.005)
    return True


def error_lines(text: str, needle: str) -> list[str]:
    return [line for line in text.splitlines() if "ERROR ]" in line and needle in line]


def test_full_queue_refuses_before_persist_and_the_same_packet_works_later(tmp_path, capfd):
    with harness(tmp_path, forward_timeout=5.0, queue_length=2) as h:
        base = time.time_ns()
        packets = [packet(counter=base + i) for i in range(6)]
        with hung_commander(h.socket_path):
            h.send(packets[0])  # taken by the thread, which now waits for the commander
            assert h.received_within(1, 2.0)
            assert wait_until(lambda: h.server.forwarder.pending == 0)
            for data in packets[1:]:  # two fill the queue, three find it full
                h.send(data)
            h.send(b"probe")  # a rejection after them: the loop is not waiting for anyone
            assert h.received_within(7, 2.5), "the receive loop blocked on the commander"
            assert h.server.stats.forward_busy == 3
            # the floor is the last request that got a place, not one of the refused ones
            assert h.blocklist.entries.get(FIXTURE_ID) == base + 2
            assert h.server.pipeline.stats["accepted"] == 3
        # the hung socket is gone: the delivery under way and the queued ones fail at once
        assert wait_until(lambda: h.server.stats.forward_failed == 3)
        os.unlink(h.socket_path)
        commander = CommanderStandIn(h.socket_path)
        try:
            h.send(packets[5])  # the very packet that was refused: its counter is still good
            assert commander.wait_for(1) == [MESSAGE]
            assert h.blocklist.entries.get(FIXTURE_ID) == base + 5
        finally:
            h.stop()
            commander.close()
    stats = h.result
    assert stats is not None
    assert (stats.forwarded, stats.forward_failed, stats.forward_busy) == (1, 3, 3)
    assert stats.forward_dropped == 0 and stats.pipeline["accepted"] == 4
    assert "forward_busy=3 forward_dropped=0" in stats.summary()
    err = capfd.readouterr().err
    busy = error_lines(err, "commander hand-off queue full")
    assert len(busy) == 3
    for line, counter in zip(busy, (base + 3, base + 4, base + 5), strict=True):
        text = line.split("] ", 1)[1]
        assert not text.startswith("Rejected datagram from")  # fail2ban must not ban for it
        assert text.startswith("Dropped request for key [FF, FF, FF, FF")
        assert "from 127.0.0.1 port " in text
        assert f"counter {counter} not used" in text
    assert len(error_lines(err, "Dropped request for key")) == 3 + 3  # 3 busy, 3 failed


def test_delivery_failures_are_one_dropped_line_each_while_the_loop_keeps_receiving(
    tmp_path, capfd
):
    # Each delivery may block for 2 s; the loop must see all four datagrams well before the
    # first delivery gives up (generous against a loaded machine, still far below 2 s).
    with harness(tmp_path, forward_timeout=2.0, queue_length=QUEUE_LENGTH) as h:
        with hung_commander(h.socket_path):
            start = time.monotonic()
            for _ in range(3):
                h.send(packet())
                time.sleep(0.002)
            h.send(bytes(94))
            assert h.received_within(4, 1.2), "the receive loop waited for the commander"
            assert time.monotonic() - start < 1.5
            assert wait_until(lambda: h.server.stats.forward_failed == 3, timeout=15.0)
        h.stop()
    err = capfd.readouterr().err
    failed = error_lines(err, "Dropped request for key")
    assert len(failed) == 3
    for line in failed:
        assert "(IP 127.0.0.1): Could not connect to socket" in line and "timed out" in line
    assert h.result is not None and h.result.forward_busy == 0


def test_shutdown_is_bounded_and_logs_what_was_not_handed_off(tmp_path, capfd):
    with (
        harness(tmp_path, forward_timeout=0.5, queue_length=4) as h,
        hung_commander(h.socket_path),
    ):
        for _ in range(5):  # one in delivery, four queued
            h.send(packet())
            time.sleep(0.002)
        assert h.received_within(5, 2.0)
        assert wait_until(lambda: h.server.pipeline.stats["accepted"] == 5)
        elapsed = h.stop()
    # the delivery under way ends by its own deadline; nothing waits longer than that
    assert elapsed < 0.5 + 1.5  # the deadline plus slack for a loaded machine
    stats = h.result
    assert stats is not None
    assert stats.forwarded == 0 and stats.forward_busy == 0
    assert stats.forward_failed + stats.forward_dropped == 5 and stats.forward_dropped >= 3
    err = capfd.readouterr().err
    dropped = error_lines(err, "the server stopped before it could be handed to the commander")
    assert len(dropped) == stats.forward_dropped
    assert all("Dropped request for key [FF, FF" in line for line in dropped)
    out_summary = f"forward_busy=0 forward_dropped={stats.forward_dropped}"
    assert out_summary in stats.summary()


def test_shutdown_last_chance_delivers_when_the_commander_wakes_up(tmp_path):
    path = tmp_path / "run" / "ruroco.socket"
    h = Harness(tmp_path, forward_timeout=2.0, queue_length=8)
    try:
        with hung_commander(path) as listener:
            for _ in range(4):  # one in delivery, three queued
                h.send(packet())
                time.sleep(0.002)
            assert wait_until(lambda: h.server.pipeline.stats["accepted"] == 4)
            assert h.server.stats.forwarded == 0
            h.server.request_stop()
            time.sleep(0.2)  # the server is in its last chance now
            messages = []
            listener.settimeout(0.2)
            deadline = time.monotonic() + 3.0
            while len([m for m in messages if m]) < 4 and time.monotonic() < deadline:
                try:
                    conn, _ = listener.accept()  # the backlog fillers first, then the server
                except TimeoutError:
                    continue
                with conn:
                    conn.settimeout(0.1)
                    try:
                        messages.append(conn.recv(64))
                    except TimeoutError:  # a backlog filler: connected, never writes
                        messages.append(b"")
            h.thread.join(5)
    finally:
        if h.thread.is_alive():
            h.stop()
        else:
            h.client.close()
            h.server.close()
    assert [m for m in messages if m] == [MESSAGE] * 4
    stats = h.result
    assert stats is not None
    assert (stats.forwarded, stats.forward_failed, stats.forward_dropped) == (4, 0, 0)


def test_forwarder_queue_is_bounded_and_submit_never_blocks(tmp_path):
    stats = Stats()
    path = tmp_path / "ruroco.socket"
    forwarder = Forwarder(path, stats, timeout=1.0, capacity=2)  # not started yet
    start = time.monotonic()
    assert forwarder.submit(MESSAGE, "first") and forwarder.submit(MESSAGE, "second")
    assert not forwarder.has_room()
    assert forwarder.submit(MESSAGE, "third") is False
    assert time.monotonic() - start < 0.5  # never waits for the (absent) commander
    assert forwarder.pending == 2
    commander = CommanderStandIn(path)
    try:
        forwarder.start()
        assert commander.wait_for(2) == [MESSAGE, MESSAGE]
        assert wait_until(lambda: stats.forwarded == 2)
        assert forwarder.has_room()
    finally:
        assert forwarder.close() == 0
        commander.close()
    assert forwarder.submit(MESSAGE, "late") is False  # closed: nothing new is taken


def test_forwarder_needs_room_for_one():
    with pytest.raises(ValueError):
        Forwarder("/nonexistent", Stats(), capacity=0)
