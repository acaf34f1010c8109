"""Security review finding 5 against a real ``ruroco-commander`` process and its socket.

The reported scenario: 1,100 requests for one slow command, then a request for
``default``. The shared queue bound made the commander drop ``default`` ("Too many queued
commands") until the slow queue had drained; the bound per name keeps it running.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from commander_helpers import message, wait_for
from loglines import shown_and_counted

FLOOD = 1100
RUN_WAIT = 20.0
DROPPED = "Too many queued commands, dropping"
PER_NAME = 64  # dispatch.DEFAULT_MAX_PENDING_PER_NAME, pinned in test_commander_dispatch


def drops(log: str) -> tuple[int, int]:
    """Drop lines shown, and counted instead past the commander's line budget."""
    return shown_and_counted(log, DROPPED)


def send_waiting(sock_path: Path, data: bytes, timeout: float = RUN_WAIT) -> None:
    """Like ``send``, but waits (bounded) while the listen backlog is full."""
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            try:
                s.connect(os.fspath(sock_path))
            except BlockingIOError:  # backlog full: the commander is still reading
                assert time.monotonic() < deadline, "commander stopped accepting"
                time.sleep(0.005)
                continue
            s.sendall(data)
            return


def test_flood_of_one_slow_command_does_not_block_default(start_commander, tmp_path: Path) -> None:
    started, release, count, ran = (tmp_path / n for n in ("started", "release", "count", "ran"))
    commander = start_commander(
        {
            "slow": (
                f"touch {started}; while [ ! -e {release} ]; do sleep 0.05; done; "
                f"echo x >> {count}",
                60,
            ),
            "default": f"touch {ran}",
        },
        allow_non_routable_ips=True,
    )
    try:
        slow = message("slow")
        for _ in range(FLOOD):
            send_waiting(commander.socket, slow)
        assert wait_for(started.exists, RUN_WAIT)
        commander.send("default")
        assert wait_for(ran.exists, RUN_WAIT), commander.stderr[-2000:]
        assert not release.exists() and not count.exists()  # "slow" is still stuck
        # Every slow request beyond its own bound was refused, and nothing else was.
        expected_drops = FLOOD - PER_NAME
        assert wait_for(lambda: sum(drops(commander.stderr)) == expected_drops, RUN_WAIT)
    finally:
        release.touch()
    assert wait_for(
        lambda: count.exists() and len(count.read_text().split()) == PER_NAME,
        RUN_WAIT,
    )
    assert commander.stop() == 0
    assert sum(drops(commander.stderr)) == FLOOD - PER_NAME
    assert "Traceback" not in commander.stderr
