"""Helpers for the commander tests: a real ``ruroco-commander`` process and its socket."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from tomltext import toml_document, toml_str

from ruroco.commander.commands import Command
from ruroco.commander.executor import Executor, Outcome
from ruroco.ipaddr import parse_ip
from ruroco.protocol import command_hash, encode_commander_data

STARTUP_TIMEOUT = 15.0


def wait_for(predicate: Callable[[], object], timeout: float, interval: float = 0.02) -> bool:
    """Poll ``predicate`` until truthy or ``timeout`` seconds passed (bounded loop)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def message(name: str, ip: str = "1.2.3.4") -> bytes:
    return encode_commander_data(command_hash(name), parse_ip(ip))


def send(sock_path: Path, data: bytes) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(os.fspath(sock_path))
        s.sendall(data)


def write_config(directory: Path, **keys: object) -> Path:
    path = directory / "config.toml"
    path.write_text(toml_document(keys))
    return path


def write_commands(directory: Path, commands: dict[str, str | tuple[str, int]]) -> Path:
    lines = ["[commands]"]
    for name, spec in commands.items():
        if isinstance(spec, tuple):
            lines.append(
                f"{toml_str(name)} = {{ cmd = {toml_str(spec[0])}, timeout_sec = {spec[1]} }}"
            )
        else:
            lines.append(f"{toml_str(name)} = {toml_str(spec)}")
    path = directory / "commands.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


class CommanderProcess:
    """One ``python -m ruroco.commander`` with its output in files (no pipe can fill up)."""

    def __init__(self, directory: Path, config: Path, commands: Path, umask: int = 0o022) -> None:
        self.dir = directory
        self.socket = directory / "ruroco.socket"
        self.out_path = directory / f"commander-{time.monotonic_ns()}.out"
        self.err_path = self.out_path.with_suffix(".err")
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "ruroco.commander",
                    "-c",
                    str(config),
                    "--commands",
                    str(commands),
                ],
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                umask=umask,
                start_new_session=True,
            )

    @property
    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def wait_ready(self) -> None:
        ok = wait_for(
            lambda: "Commander listening" in self.stdout or self.proc.poll() is not None,
            STARTUP_TIMEOUT,
        )
        assert ok and self.proc.poll() is None, (
            f"commander did not start:\n{self.stdout}\n{self.stderr}"
        )

    def send(self, name: str, ip: str = "1.2.3.4") -> None:
        send(self.socket, message(name, ip))

    def send_raw(self, data: bytes) -> None:
        send(self.socket, data)

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


class WarmFirst(Executor):
    """An executor that keeps a warm shell for each command right before starting it, so
    every ``start`` releases a warm shell (asserted) instead of spawning cold: the tests of the
    cold path run unchanged through the warm one (docs/performance.md, "Warm shells")."""

    def __init__(self, pid_namespace: bool = True) -> None:
        super().__init__(pid_namespace)
        self._one_at_a_time = threading.Lock()  # concurrent starts: each gets a shell of its own

    def start(self, command: Command, ip: bytes) -> Callable[[], Outcome]:
        with self._one_at_a_time:
            self.keep_warm([command])  # spawns one if the last was taken ...
            assert wait_for(lambda: self.warm_waiting() > 0, 10)  # ... or another thread does
            released = self.released_warm
            finish = super().start(command, ip)
            assert self.released_warm == released + 1, "the warm shell was not released"
        return finish


def executor_for(mode: str) -> Iterator[Executor]:
    """``pid-namespace`` / ``process-group``, with ``-warm``: a ``WarmFirst``; closed after
    (its warm shells end)."""
    cls = WarmFirst if mode.endswith("-warm") else Executor
    executor = cls() if mode.startswith("pid-namespace") else cls(pid_namespace=False)
    assert executor.isolation == mode.removesuffix("-warm")
    yield executor
    executor.close()
    assert executor.warm_waiting() == 0
