"""A stopped (SIGSTOP) commander must never block the server (security-review finding 10).

Before: the server handed every accepted knock to the commander on its receive loop, so
once the commander's listen backlog was full each knock held the loop for the whole forward
timeout (1 s) and every later datagram - valid or not - waited behind it.

Now the hand-off runs in a forwarder thread behind a bounded queue: the receive loop keeps
deciding datagrams at full speed, a knock that finds the queue full is dropped *before* its
counter is persisted with a line fail2ban does not match, a hand-off that times out is one
``Dropped request`` line, and after SIGCONT the commander works again.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import time

from e2e_harness import RUN_TIMEOUT, Deployment, DeploymentFactory, wait_for
from loglines import shown_and_counted

KNOCKS = 300
#: A rejected datagram sent while the commander is stopped must be logged within this.
PROMPT = 2.0
PROBES = 5

KEY = r"Dropped request for key \[[0-9A-F, ]+\]"
BUSY = KEY + r" from 127\.0\.0\.1 port \d+: commander hand-off queue full"
TIMED_OUT = KEY + r" \(IP 127\.0\.0\.1\): Could not connect to socket .*timed out"
ACCEPTED = r"INFO \] Valid data for key"
DELIVERED = r"INFO \] Successfully sent data to commander"
FAILED = r"Dropped request for key .*: Could not "


def process_state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()[0]


def probe(dep: Deployment, since: int) -> float:
    """Send a 5-byte datagram; seconds until the server logged its (debug) rejection line."""
    start = time.monotonic()
    _, port = dep.send_raw(b"probe")
    dep.wait_rejection(since, f"port {port}:", pattern=r"Invalid read count 5,")
    return time.monotonic() - start


def summary(text: str) -> dict[str, int]:
    lines = [line for line in text.splitlines() if "Server statistics:" in line]
    assert len(lines) == 1, text[-3000:]
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", lines[0])}


def test_stopped_commander_never_blocks_the_server(make_deployment: DeploymentFactory) -> None:
    dep = make_deployment()
    dep.write_config(max_requests_per_second=1_000_000, max_requests_per_second_global=1_000_000)
    dep.start()
    server, commander = dep.server, dep.commander
    assert server is not None and commander is not None
    dep.send_raw(dep.packet())
    assert dep.wait_runs(1) == ["127.0.0.1"]
    since = server.mark()
    commander_since = commander.mark()

    os.kill(commander.pid, signal.SIGSTOP)
    try:
        wait_for(lambda: process_state(commander.pid) == "T", RUN_TIMEOUT, "commander stopped")
        base = time.time_ns()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            for i in range(KNOCKS):  # distinct counters, all valid
                s.sendto(dep.packet(counter=base + i), ("127.0.0.1", dep.port))

        # every knock is decided (handed to the queue or dropped as busy) without waiting
        # for the commander; before, the loop sat 1 s on each knock past the backlog
        def decided() -> bool:
            return len(server.find(ACCEPTED, since)) + len(server.find(BUSY, since)) >= KNOCKS

        wait_for(
            decided, RUN_TIMEOUT, f"all {KNOCKS} knocks decided while the commander is stopped"
        )
        assert len(server.find(ACCEPTED, since)) + len(server.find(BUSY, since)) == KNOCKS

        # the receive loop stays prompt while the commander is stopped
        delays = []
        for _ in range(PROBES):
            delays.append(probe(dep, since))
            time.sleep(0.2)
        assert max(delays) < PROMPT, f"rejections logged late while stopped: {delays}"

        # a knock that could not be queued: one clear line, not a fail2ban "Rejected" line,
        # and its counter was not persisted
        busy = server.find(BUSY, since)
        assert busy, "no knock found the hand-off queue full"
        for line in busy:
            assert "not used, the client can knock again" in line
        rejected = server.find(r"Rejected datagram from", since)  # what fail2ban counts
        assert len(server.find(r"DEBUG \] Rejected datagram from", since)) == PROBES
        assert all("Invalid read count 5," in r for r in rejected), rejected
        # a hand-off that the stopped commander never takes: one line after the timeout
        server.wait_log(TIMED_OUT, since=since, timeout=RUN_TIMEOUT)
        assert commander.alive() and server.alive()
        assert process_state(commander.pid) == "T"
    finally:
        os.kill(commander.pid, signal.SIGCONT)

    # the commander works again: the queue drains, what was delivered runs
    def drained() -> bool:
        accepted = len(server.find(ACCEPTED, since))
        return accepted == len(server.find(DELIVERED, since)) + len(server.find(FAILED, since))

    wait_for(drained, RUN_TIMEOUT, "the hand-off queue to drain after SIGCONT")
    delivered = len(server.find(DELIVERED, since))
    assert delivered > 0

    # the commander reads every delivered request (it may shed some under its own bound on
    # queued commands: that is its decision, logged there)
    def handled() -> int:
        ran = len(commander.find(r"Running command", commander_since))
        # past its line budget the commander counts such lines instead (ruroco/linebudget.py)
        shed = sum(shown_and_counted(commander.log(commander_since), r"Too many queued commands"))
        return ran if ran + shed >= delivered else 0

    ran = int(wait_for(handled, 60.0, f"the commander to handle {delivered} requests"))
    assert ran > 0
    dep.wait_runs(1 + ran, timeout=60.0)
    dep.assert_nothing_ran(before=1 + ran)  # a fresh knock runs, nothing else does
    delays = [probe(dep, server.mark()) for _ in range(PROBES)]
    assert max(delays) < PROMPT, f"rejections logged late after SIGCONT: {delays}"

    start = time.monotonic()
    assert server.stop(signal.SIGTERM) == 0
    assert time.monotonic() - start < RUN_TIMEOUT
    stats = summary(server.log(since))
    # the first knock, the knocks, the probes, the sentinel
    assert stats["received"] == 1 + KNOCKS + 2 * PROBES + 1
    assert stats["forward_busy"] == len(server.find(BUSY, since)) > 0
    assert stats["forward_failed"] == len(server.find(FAILED, since)) > 0
    assert stats["forwarded"] == 1 + delivered + 1
    assert stats["accepted"] == stats["forwarded"] + stats["forward_failed"]
    assert stats["forward_dropped"] == 0
