"""``ruroco-ui`` knocks a real server + commander on loopback: the row turns OK, the command
really runs; with ``wait_port`` the row says "open" once a real TCP port accepts."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from e2e_harness import Deployment
from textual import events
from textual.pilot import Pilot
from uipilot import key_input, result, row_texts, run_ui, until

from ruroco.client.saved import SavedCommand, SavedCommands
from ruroco.errors import RurocoError
from ruroco.ui import knock
from ruroco.ui.app import OK, RurocoUI


@pytest.fixture
def tcp_listener() -> Iterator[socket.socket]:
    """A real TCP port on 127.0.0.1 that accepts (the kernel completes the handshake)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock


async def paste_key(app: RurocoUI, pilot: Pilot[None], key: str) -> None:
    await pilot.press("f3")
    key_input(app).post_message(events.Paste(key))
    await pilot.pause()
    await pilot.press("f1")


def test_a_knock_from_the_ui_turns_the_row_ok_and_runs_the_command(deploy: Deployment) -> None:
    entry = SavedCommand(deploy.address(), "default")
    SavedCommands(deploy.client_dir).set([entry])

    async def scenario(app: RurocoUI, pilot: Pilot[None]) -> None:
        await paste_key(app, pilot, deploy.key_text)
        await pilot.press("r")
        await until(pilot, lambda: result(app, entry).state == OK, "the row to turn OK")
        assert row_texts(app) == [
            (f"default@{deploy.address()}", "", f"OK: sent to {deploy.address()}")
        ]

    run_ui(deploy.client_dir, scenario)
    assert deploy.wait_runs(1) == ["127.0.0.1"]


def test_an_entry_with_its_own_key_file_and_a_claimed_ip(deploy: Deployment) -> None:
    entry = SavedCommand(
        deploy.address(), "default", True, "203.0.113.9", key_file=str(deploy.client_key)
    )
    SavedCommands(deploy.client_dir).set([entry])

    async def scenario(app: RurocoUI, pilot: Pilot[None]) -> None:
        await pilot.press("enter")  # no key in the Dashboard
        await until(pilot, lambda: result(app, entry).state == OK, "the row to turn OK")

    run_ui(deploy.client_dir, scenario)
    assert deploy.wait_runs(1) == ["203.0.113.9"]


def test_waiting_for_a_port_says_open_once_it_accepts(
    deploy: Deployment, tcp_listener: socket.socket
) -> None:
    port = tcp_listener.getsockname()[1]
    entry = SavedCommand(deploy.address(), "default", wait_port=port)
    SavedCommands(deploy.client_dir).set([entry])
    seen: list[str] = []

    async def scenario(app: RurocoUI, pilot: Pilot[None]) -> None:
        await paste_key(app, pilot, deploy.key_text)
        await pilot.press("r")

        def done() -> bool:
            seen.append(result(app, entry).text)
            return result(app, entry).state == OK

        await until(pilot, done, "the port to be reported open")
        text = result(app, entry).text
        assert text.startswith(f"open: 127.0.0.1:{port} accepted after ")
        assert text.endswith("(1 knock)")
        assert row_texts(app)[0][1:] == (f"tcp/{port}", f"OK: {text}")

    run_ui(deploy.client_dir, scenario)
    assert deploy.wait_runs(1) == ["127.0.0.1"]
    assert set(seen) <= {"sending…", f"sent, waiting for 127.0.0.1:{port}", seen[-1]}


def test_a_port_that_never_opens_is_an_error_after_the_timeout(deploy: Deployment) -> None:
    """Knocked again every interval like ``connect``; the error says what was tried."""
    with socket.socket() as probe:  # a port nothing listens on: refused at once
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    entry = SavedCommand(deploy.address(), "default", wait_port=closed)
    lines: list[str] = []
    with pytest.raises(RurocoError) as failed:
        knock.knock(
            entry, deploy.key_text, str(deploy.client_dir), lines.append, timeout=1.0, interval=0.4
        )
    message = str(failed.value)
    assert message.startswith(f"No TCP connection to 127.0.0.1:{closed} after ")
    assert "connection refused" in message
    assert lines and set(lines) == {f"sent, waiting for 127.0.0.1:{closed}"}
    assert len(deploy.wait_runs(2)) >= 2  # every knock was real
