"""Requests of one name run in the order the server sent them (docs/deviations.md #3), also
when the first one's connection was accepted before its bytes arrived and the next one's
bytes were there at once (read at accept: docs/performance.md, "The commander's path").

The race needs the loop to accept the first connection between the server's ``connect`` and
its write, and then to meet the listener's event before that connection's: the accept loop is
driven by hand here, on a real socket, so the order of events is the test's."""

from __future__ import annotations

import selectors
import socket
from pathlib import Path

import pytest
from commander_helpers import message

from ruroco.cmdhash import command_hash
from ruroco.commander.commander import Commander
from ruroco.commander.commands import Command
from ruroco.commander.config import CommanderConfig


def test_a_message_read_at_accept_does_not_overtake_an_earlier_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = CommanderConfig(
        config_dir=tmp_path, socket_user="", socket_group="", allow_non_routable_ips=True
    )
    commander = Commander(config, {command_hash("seq"): Command("seq", "true", 5)})
    commander.start()
    handled: list[bytes] = []
    monkeypatch.setattr(commander, "_handle", handled.append)
    sel = selectors.DefaultSelector()
    conns: dict = {}
    first, second = message("seq", "10.0.0.1"), message("seq", "10.0.0.2")
    early = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    late = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        early.connect(str(commander.socket_path))
        commander._accept(sel, conns)  # accepted without its bytes: it waits in the selector
        assert len(conns) == 1 and handled == []
        early.sendall(first)
        late.connect(str(commander.socket_path))
        late.sendall(second)
        commander._accept(sel, conns)  # the listener's event is handled first this round
        assert handled == [first, second]
        assert conns == {}
        # The selector may still report the first connection: nothing is handled twice.
        for key, _ in sel.select(0):
            commander._read(sel, conns, key.fileobj)  # type: ignore[arg-type]
        assert handled == [first, second]
    finally:
        early.close()
        late.close()
        sel.close()
        commander.close_listener()
        commander.finish(lambda: True)


def test_a_stalled_earlier_connection_is_not_waited_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only bytes already there are read first; a peer that sent nothing holds nobody up."""
    config = CommanderConfig(
        config_dir=tmp_path, socket_user="", socket_group="", allow_non_routable_ips=True
    )
    commander = Commander(config, {command_hash("seq"): Command("seq", "true", 5)})
    commander.start()
    handled: list[bytes] = []
    monkeypatch.setattr(commander, "_handle", handled.append)
    sel = selectors.DefaultSelector()
    conns: dict = {}
    stalled = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    late = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        stalled.connect(str(commander.socket_path))
        commander._accept(sel, conns)
        late.connect(str(commander.socket_path))
        late.sendall(message("seq", "10.0.0.2"))
        commander._accept(sel, conns)
        assert handled == [message("seq", "10.0.0.2")] and len(conns) == 1
    finally:
        stalled.close()
        late.close()
        sel.close()
        commander.close_listener()
        commander.finish(lambda: True)
