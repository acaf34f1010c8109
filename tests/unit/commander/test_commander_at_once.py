"""A real ``Commander`` in this process (real socket, 24-byte messages, ``sh`` commands): a
request whose command name is idle is spawned on the loop's thread at once; requests of a
busy name queue and keep their order (docs/performance.md, docs/deviations.md #3)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from commander_helpers import message, send, wait_for

from ruroco.cmdhash import command_hash
from ruroco.commander.commander import Commander
from ruroco.commander.commands import Command
from ruroco.commander.config import CommanderConfig

WAIT = 15.0


class Running:
    """``Commander.serve`` on a thread; ``stop()`` ends it the way the daemon does."""

    def __init__(self, directory: Path, commands: dict[str, str], workers: int = 8) -> None:
        config = CommanderConfig(
            config_dir=directory,
            socket_user="",
            socket_group="",
            allow_non_routable_ips=True,
            max_concurrent_commands=workers,
        )
        table = {command_hash(name): Command(name, cmd, 30) for name, cmd in commands.items()}
        self.commander = Commander(config, table)
        self.commander.start()
        self.socket = self.commander.socket_path
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread = threading.Thread(target=self.commander.serve, args=(self._wake_r,))
        self._thread.start()

    @property
    def at_once(self) -> int:
        assert self.commander.dispatcher is not None
        return self.commander.dispatcher.started_at_once

    def idle(self) -> bool:
        assert self.commander.dispatcher is not None
        return self.commander.dispatcher.wait_idle(WAIT)

    def stop(self) -> None:
        self.commander.request_stop()
        self._wake_w.send(b"x")
        self._thread.join(WAIT)
        self.commander.close_listener()
        self.commander.finish(lambda: True)
        self._wake_r.close()
        self._wake_w.close()


@pytest.fixture
def running(tmp_path: Path) -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for r in started:
        r.stop()


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_idle_name_is_spawned_at_once_and_runs(tmp_path: Path, running: list[Running]) -> None:
    out = tmp_path / "out"
    r = Running(tmp_path, {"a": f'echo "$RUROCO_IP" >> {out}'})
    running.append(r)
    for i in range(1, 6):
        send(r.socket, message("a", f"1.0.0.{i}"))
        assert wait_for(lambda i=i: len(lines(out)) == i, WAIT)
        assert r.idle()
    assert lines(out) == [f"1.0.0.{i}" for i in range(1, 6)]
    assert r.at_once == 5  # each found its name idle


def test_burst_of_one_name_runs_in_order_one_at_a_time(
    tmp_path: Path, running: list[Running]
) -> None:
    out = tmp_path / "out"
    lock = tmp_path / "lock"
    gate = tmp_path / "gate"
    # mkdir fails if another command of the name runs at the same time. The first request
    # waits for the gate, so all others arrive while the name is busy.
    cmd = (
        f"mkdir {lock} || echo OVERLAP >> {out}; "
        f'case "$RUROCO_IP" in 1.0.0.1) while [ ! -e {gate} ]; do sleep 0.01; done;; '
        f"1.0.0.*[05]) sleep 0.02;; esac; "
        f'echo "$RUROCO_IP" >> {out}; rmdir {lock}'
    )
    r = Running(tmp_path, {"seq": cmd, "other": f"touch {tmp_path / 'other'}"})
    running.append(r)
    ips = [f"1.0.0.{i}" for i in range(1, 41)]
    for ip in ips:
        send(r.socket, message("seq", ip))
    # Another name is idle: it starts at once while "seq" is blocked.
    send(r.socket, message("other"))
    assert wait_for((tmp_path / "other").exists, WAIT)
    assert lines(out) == []
    gate.touch()
    assert wait_for(lambda: len(lines(out)) >= len(ips), WAIT)
    assert r.idle()
    assert lines(out) == ips  # arrival order, and no OVERLAP line
    assert r.at_once == 2  # the first "seq" and "other"; the 39 others queued


def test_full_workers_queue_an_idle_name(tmp_path: Path, running: list[Running]) -> None:
    gate = tmp_path / "gate"
    out = tmp_path / "out"
    wait_gate = f"while [ ! -e {gate} ]; do sleep 0.01; done"
    r = Running(
        tmp_path,
        {"a": f"{wait_gate}; echo a >> {out}", "b": f"echo b >> {out}"},
        workers=1,
    )
    running.append(r)
    send(r.socket, message("a"))
    assert wait_for(lambda: r.at_once == 1, WAIT)
    send(r.socket, message("b"))
    assert wait_for(
        lambda: r.commander.dispatcher is not None and r.commander.dispatcher.pending() == 2, WAIT
    )
    assert lines(out) == []  # "b" waits for the only worker: never more than 1 command
    gate.touch()
    assert wait_for(lambda: len(lines(out)) == 2, WAIT)
    assert lines(out) == ["a", "b"]
    assert r.at_once == 1


def test_message_read_at_accept_or_later_runs_once(
    tmp_path: Path, running: list[Running], capfd: pytest.CaptureFixture[str]
) -> None:
    """The 24 bytes whole at accept (extra bytes ignored), split across writes, or none."""
    out = tmp_path / "out"
    r = Running(tmp_path, {"a": f'echo "$RUROCO_IP" >> {out}'})
    running.append(r)
    send(r.socket, message("a", "1.0.0.1") + b"extra bytes")
    assert wait_for(lambda: lines(out) == ["1.0.0.1"], WAIT)
    data = message("a", "1.0.0.2")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(r.socket))
        s.sendall(data[:10])
        assert r.idle()  # nothing to run yet: the connection waits in the selector
        s.sendall(data[10:])
        assert wait_for(lambda: lines(out) == ["1.0.0.1", "1.0.0.2"], WAIT)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(r.socket))
    assert wait_for(lambda: "connection closed after 0 of 24 bytes" in capfd.readouterr().err, WAIT)
    send(r.socket, message("a", "1.0.0.3"))
    assert wait_for(lambda: len(lines(out)) == 3, WAIT)
    assert r.idle()
    assert lines(out) == ["1.0.0.1", "1.0.0.2", "1.0.0.3"]
