"""Reloading real daemons with SIGHUP, and knocks that prove what ran, for the reload tests.

``sighup`` works on any ``Daemon`` (server now, commander once it reloads): it signals and
waits for the line that ends the reload. ``Knocker`` sends paced knocks from a thread, each
claiming its own address, so the command's output file says which knock ran and how often;
it takes the command name, so a test may knock a command a reload adds to commands.toml.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

from e2e_harness import RUN_TIMEOUT, SERVER, Daemon, Deployment, base_env, free_udp_port
from tomltext import toml_str

from ruroco import protocol

#: The line a server writes when a reload ends, either way.
RELOAD_DONE = r"Reloaded |Reload failed"


def output_command(name: str) -> str:
    """A commands.toml value that appends ``$RUROCO_IP`` to ``<out>/<name>.out``."""
    return toml_str(f"printf '%s\\n' \"$RUROCO_IP\" >> {{out}}/{name}.out")


def sighup(daemon: Daemon, done: str = RELOAD_DONE, timeout: float = RUN_TIMEOUT) -> str:
    """Send SIGHUP and return the line (regex ``done``) that says the reload ended."""
    since = daemon.mark()
    os.kill(daemon.pid, signal.SIGHUP)
    return daemon.wait_log(done, since=since, timeout=timeout)


def add_key(dep: Deployment, name: str, text: str | None = None) -> protocol.Key | None:
    """Put a key file into the server's key directory (as deployed: mode 0400); a new key
    unless ``text`` is given. Returns the key, or None if ``text`` is not one."""
    text = text or protocol.generate_key()
    path = dep.etc / name
    path.write_text(text)
    path.chmod(0o400)
    try:
        return protocol.parse_key(text)
    except protocol.ProtocolError:
        return None


def new_key(dep: Deployment, name: str) -> protocol.Key:
    key = add_key(dep, name)
    assert key is not None
    return key


def start_server_unwaited(dep: Deployment) -> Daemon:
    """``Deployment.start_server`` on 127.0.0.1 without waiting for it to run, to signal
    it while it starts."""
    dep.port = dep.port or free_udp_port(dep.host)
    server = Daemon(
        "server",
        [str(SERVER), "-c", str(dep.config)],
        base_env(RUROCO_LISTEN_ADDRESS=dep.address()),
        dep.logs / "server.log",
    ).start()
    dep.daemons.append(server)
    dep.server = server
    return server


def claim(index: int) -> str:
    """A distinct address per knock (10.77.0.0/16), which the command writes down."""
    return f"10.77.{index // 250}.{index % 250 + 1}"


class Knocker(threading.Thread):
    """Send permissive knocks for ``command``, one every ``interval`` seconds, the i-th
    claiming ``claim(i)``, from our own socket with the deployment's key; until ``stop`` or
    ``limit`` knocks."""

    def __init__(self, dep: Deployment, command: str, interval: float, limit: int) -> None:
        super().__init__(name="knocker", daemon=True)
        self.dep = dep
        self.command = command
        self.interval = interval
        self.limit = limit
        self.sent: list[str] = []
        self.error: BaseException | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            counter = 0
            start = time.monotonic()
            for i in range(self.limit):
                if self._halt.wait(max(0.0, start + i * self.interval - time.monotonic())):
                    return
                counter = max(counter + 1, time.time_ns())
                ip = claim(i)
                self.dep.send_raw(
                    self.dep.packet(cmd=self.command, counter=counter, strict=False, src=ip)
                )
                self.sent.append(ip)
        except BaseException as exc:  # reported by finish()
            self.error = exc

    def wait_sent(self, count: int, timeout: float = RUN_TIMEOUT) -> None:
        """Until ``count`` knocks are out (fails if the knocker stopped short)."""
        deadline = time.monotonic() + timeout
        while len(self.sent) < count:
            assert self.is_alive() and time.monotonic() < deadline, f"{len(self.sent)} sent"
            time.sleep(self.interval)

    def finish(self, timeout: float = RUN_TIMEOUT) -> list[str]:
        """Stop and return the addresses claimed, in the order sent."""
        self._halt.set()
        self.join(timeout)
        assert not self.is_alive(), "the knocker did not finish"
        if self.error is not None:
            raise self.error
        return self.sent


def stats_line(daemon: Daemon) -> dict[str, int]:
    """The ``Server statistics:`` line of a stopped server, as numbers."""
    lines = daemon.find(r"Server statistics: ")
    assert len(lines) == 1, lines
    fields = lines[0].split("Server statistics: ", 1)[1].split()
    return {k: int(v) for k, v in (f.split("=", 1) for f in fields)}


def took_ms(line: str) -> float:
    """The duration a ``Reloaded`` line reports."""
    return float(line.rsplit("took ", 1)[1].split(" ms", 1)[0])


def move(path: Path, to: Path) -> None:
    os.replace(path, to)
