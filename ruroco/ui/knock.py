"""Running one saved command for the terminal UI, without Textual (docs/ui.md, Execute).

A plain knock is ``ruroco.client.sender.send``, exactly what ``ruroco-client send`` does,
with the key text handed over in memory (never a file). An entry with ``wait_port`` is
knocked the way ``ruroco-client connect`` knocks (``connect.knock_until_open``): again with
a fresh counter every ``interval`` until the port accepts or ``timeout`` passes. Both take
the client lock only while they advance the counter, so the UI never locks the CLI out.

Runs in a thread of its own, off the UI's event loop; ``say`` reports progress and must be
safe to call from that thread.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from ruroco.client.address import ensure_port
from ruroco.client.connect import ConnectRequest, claimed_ip, knock_until_open
from ruroco.client.request import DEFAULT_PROTOCOL, SendRequest
from ruroco.client.saved import SavedCommand, is_blank
from ruroco.client.sender import read_key_text, send
from ruroco.errors import RurocoError, error_chain
from ruroco.protocol import parse_key

#: How long a send waits for the client lock another client holds (a CLI send takes
#: milliseconds); the CLI itself fails at once.
LOCK_WAIT_S = 10.0

Say = Callable[[str], None]


def describe_error(exc: BaseException) -> str:
    """A failure as one line: the message and its causes, joined as the Ansible module does."""
    return ": ".join(error_chain(exc)) or type(exc).__name__


def key_file_path(command: SavedCommand, conf_dir: str) -> str | None:
    """The entry's own key file: ``~`` expanded, a relative path taken from the conf dir."""
    if command.key_file is None or is_blank(command.key_file):
        return None
    return os.path.join(conf_dir, os.path.expanduser(command.key_file))


def key_source(command: SavedCommand, key: str, conf_dir: str) -> tuple[str | None, str | None]:
    """``(key_file, key_text)`` for the request: the entry's key file, else the Dashboard's
    key; neither is an error that says where to put one."""
    path = key_file_path(command, conf_dir)
    if path is not None:
        return path, None
    if is_blank(key):
        raise RurocoError(
            "No key: generate or paste one in the Dashboard, or give the entry a key file"
        )
    return None, key


def send_request(
    command: SavedCommand, key: str, conf_dir: str, protocol: int = DEFAULT_PROTOCOL
) -> SendRequest:
    """The ``ruroco-client send`` request of an entry (a blank ``ip`` is none)."""
    key_file, key_text = key_source(command, key, conf_dir)
    return SendRequest(
        command.address,
        key_file=key_file,
        key=key_text,
        command=command.command,
        permissive=command.permissive,
        ip=None if is_blank(command.ip) else command.ip,
        ipv4=command.ipv4,
        ipv6=command.ipv6,
        protocol=protocol,
    )


def knock(
    command: SavedCommand,
    key: str,
    conf_dir: str,
    say: Say,
    protocol: int = DEFAULT_PROTOCOL,
    timeout: float | None = None,
    interval: float | None = None,
) -> str:
    """Knock for ``command``; the result line (``sent …`` or ``open …``), or ``RurocoError``.
    ``timeout`` and ``interval`` of the port wait default to ``connect``'s (30 s, 2 s)."""
    request = send_request(command, key, conf_dir, protocol)
    if command.wait_port is None:
        results = send(request, conf_dir=conf_dir, lock_timeout=LOCK_WAIT_S)
        sent = [r.destination for r in results if r.error is None]
        failed = [f"{r.destination}: {r.error}" for r in results if r.error is not None]
        return f"sent to {', '.join(sent)}" + (
            f" (could not send to {'; '.join(failed)})" if failed else ""
        )
    return _knock_and_wait(request, command.wait_port, conf_dir, say, timeout, interval)


def _knock_and_wait(
    request: SendRequest,
    port: int,
    conf_dir: str,
    say: Say,
    timeout: float | None,
    interval: float | None,
) -> str:
    start = time.monotonic()
    host = ensure_port(request.address).rpartition(":")[0]
    wait = ConnectRequest(
        host,
        port,
        key_file=None,
        address=request.address,
        command=request.command,
        permissive=request.permissive,
        ip=request.ip,
        ipv4=request.ipv4,
        ipv6=request.ipv6,
        protocol=request.protocol,
    )
    if timeout is not None:
        wait.timeout = timeout
    if interval is not None:
        wait.interval = interval
    claim = claimed_ip(wait)
    key = parse_key(read_key_text(request))
    waiting = f"sent, waiting for {host}:{port}"

    def progress(message: str) -> None:
        if message.startswith("Knocked"):  # connect's line for each datagram that left
            say(waiting)

    try:
        sock, route, knocker = knock_until_open(wait, conf_dir, key, claim, progress, start)
    finally:
        key.wipe()
    sock.close()
    knocks = f"{knocker.sent} knock" + ("" if knocker.sent == 1 else "s")
    return f"open: {route.target.text} accepted after {time.monotonic() - start:.1f}s ({knocks})"
