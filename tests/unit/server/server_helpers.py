"""Shared helpers for the server tests: real key files, real packets, a real Unix listener."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path

from ruroco.ipaddr import parse_ip
from ruroco.protocol import ClientData, Key, build_packet, command_hash, parse_key

FIXTURE_KEY = "///////////erb7v3q2+796tvu/erb7v3q2+796tvu/erb7v3q2+7w=="
FIXTURE_ID = b"\xff" * 8


def fixture_key() -> Key:
    return parse_key(FIXTURE_KEY)


def write_setup(
    root: Path,
    ips: tuple[str, ...] = ("127.0.0.1", "::1"),
    extra: str = "",
    key_text: str = FIXTURE_KEY,
) -> Path:
    """A config dir with one key and a config.toml pointing at it; returns the config path."""
    conf = root / "etc"
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "ruroco.key").write_text(key_text)
    (conf / "ruroco.key").chmod(0o600)  # as deployed: a key readable by others gets a warning
    state = root / "state"
    state.mkdir(exist_ok=True)
    run = root / "run"
    run.mkdir(exist_ok=True)
    ip_list = ", ".join(f'"{ip}"' for ip in ips)
    config = conf / "config.toml"
    config.write_text(
        f"ips = [{ip_list}]\n"
        f'config_dir = "{conf}"\n'
        f'blocklist_dir = "{state}"\n'
        f'socket_dir = "{run}"\n' + extra
    )
    return config


def packet(
    key: Key | None = None,
    counter: int | None = None,
    command: str = "default",
    strict: bool = True,
    src: str | None = None,
    dst: str = "127.0.0.1",
) -> bytes:
    key = key or fixture_key()
    data = ClientData(
        command_hash(command),
        time.time_ns() if counter is None else counter,
        strict,
        None if src is None else parse_ip(src),
        parse_ip(dst),
    )
    return build_packet(key, data)


@contextlib.contextmanager
def hung_commander(path: Path):
    """A commander socket that never accepts, its backlog already full: connects must wait."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(0)
    fillers = []
    try:
        for _ in range(8):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.connect(str(path))
            except BlockingIOError:
                s.close()
                break
            fillers.append(s)
        yield listener
    finally:
        for s in fillers:
            s.close()
        listener.close()


class CommanderStandIn:
    """A Unix stream listener that records every message, standing in for the commander."""

    def __init__(self, path: Path, accept: bool = True, backlog: int = 16) -> None:
        self.path = path
        self.messages: list[bytes] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(backlog)
        self.sock.settimeout(0.1)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if accept:
            self.start()

    def start(self) -> None:
        """Begin accepting (with ``accept=False``, after a small backlog has been filled)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(1)
                data = b""
                try:
                    while len(data) < 64:
                        chunk = conn.recv(64)
                        if not chunk:
                            break
                        data += chunk
                except OSError:
                    pass
                self.messages.append(data)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return list(self.messages)

    def close(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(2)
        self.sock.close()
