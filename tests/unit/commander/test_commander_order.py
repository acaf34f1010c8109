"""Requests of one name run in the order the server sent them (docs/deviations.md #3), also
when the first one's connection was accepted before its bytes arrived and the next one's
bytes were there at once (read at accept: docs/performance.md, "The commander's path").

The race needs the loop to accept the first connection between the server's ``connect`` and
its write, and then to meet the listener's event before that connection's: the accept loop is
driven by hand here, on a real socket, so the order of events is the test's."""

from __future__ import annotations

import selectors
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from commander_helpers import message

from ruroco.cmdhash import command_hash
from ruroco.commander.commander import Commander
from ruroco.commander.commands import Command
from ruroco.commander.config import CommanderConfig


class Loop:
    """A started commander whose accept loop the test drives by hand; ``handled`` records
    what it would run, in order."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        config = CommanderConfig(
            config_dir=tmp_path, socket_user="", socket_group="", allow_non_routable_ips=True
        )
        self.commander = Commander(config, {command_hash("seq"): Command("seq", "true", 5)})
        self.commander.start()
        self.handled: list[bytes] = []
        monkeypatch.setattr(self.commander, "_handle", self.handled.append)
        self.sel = selectors.DefaultSelector()
        self.conns: dict = {}
        self.peers: list[socket.socket] = []

    def peer(self) -> socket.socket:
        """A client connected to the commander's socket (not yet accepted)."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.peers.append(sock)
        sock.connect(str(self.commander.socket_path))
        return sock

    def accept(self) -> None:
        self.commander._accept(self.sel, self.conns)

    def close(self) -> None:
        for sock in self.peers:
            sock.close()
        self.sel.close()
        self.commander.close_listener()
        self.commander.finish(lambda: True)


@pytest.fixture
def loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Loop]:
    driven = Loop(tmp_path, monkeypatch)
    try:
        yield driven
    finally:
        driven.close()


def test_a_message_read_at_accept_does_not_overtake_an_earlier_one(loop: Loop) -> None:
    first, second = message("seq", "10.0.0.1"), message("seq", "10.0.0.2")
    early = loop.peer()
    loop.accept()  # accepted without its bytes: it waits in the selector
    assert len(loop.conns) == 1 and loop.handled == []
    early.sendall(first)
    late = loop.peer()
    late.sendall(second)
    loop.accept()  # the listener's event is handled first this round
    assert loop.handled == [first, second]
    assert loop.conns == {}
    # The selector may still report the first connection: nothing is handled twice.
    for key, _ in loop.sel.select(0):
        loop.commander._read(loop.sel, loop.conns, key.fileobj)  # type: ignore[arg-type]
    assert loop.handled == [first, second]


def test_a_stalled_earlier_connection_is_not_waited_for(loop: Loop) -> None:
    """Only bytes already there are read first; a peer that sent nothing holds nobody up."""
    loop.peer()
    loop.accept()
    late = loop.peer()
    late.sendall(message("seq", "10.0.0.2"))
    loop.accept()
    assert loop.handled == [message("seq", "10.0.0.2")] and len(loop.conns) == 1
