"""Real ``ruroco-server`` / ``ruroco-commander`` processes on loopback, for end-to-end tests.

Everything here drives the installed console scripts from ``.venv/bin`` the way an operator
would: config files on disk, a key file, UDP datagrams on 127.0.0.1/::1 and a Unix socket.
Each daemon's output goes to a log file so a test can wait for, and assert on, the lines it
must produce. Every wait is bounded; every process started here is stopped by its owner.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import msgpack
from tomltext import toml_document, toml_str

from ruroco import protocol
from ruroco.ipaddr import parse_ip

BIN = Path(sys.executable).parent
SERVER = BIN / "ruroco-server"
COMMANDER = BIN / "ruroco-commander"
CLIENT = BIN / "ruroco-client"

#: Generous bounds: a slow CI box must not make a correct implementation fail.
START_TIMEOUT = 20.0
RUN_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0


class WaitTimeout(AssertionError):
    """A bounded wait that ran out; the message says what was awaited."""


def wait_for(
    predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.02
) -> object:
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)


def free_udp_port(host: str) -> int:
    """A port the kernel just handed out for ``host``; the daemon binds it right after."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def base_env(**extra: str) -> dict[str, str]:
    """The daemons' environment: debug logging so every rejection reason is visible."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"RUROCO_LISTEN_ADDRESS", "LISTEN_PID", "LISTEN_FDS", "RUROCO_CONF_DIR"}
    }
    env["RUROCO_LOG"] = "debug"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class Daemon:
    """One background process whose stdout+stderr are appended to ``log_path``."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        log_path: Path,
        pass_fds: Iterable[int] = (),
    ) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_path
        self.pass_fds = tuple(pass_fds)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_start = 0
        self.expect_exit = False  # set for processes meant to exit on their own
        self.stopped = False

    def start(self) -> Daemon:
        self.log_path.touch()
        self.log_start = self.log_path.stat().st_size
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=self.pass_fds,
                start_new_session=True,  # a test's Ctrl-C must not reach it before cleanup
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self, since: int = 0) -> str:
        """Log text from byte offset ``since`` (``mark()`` gives the current offset)."""
        with open(self.log_path, "rb") as fh:
            fh.seek(since)
            return fh.read().decode("utf-8", "replace")

    def mark(self) -> int:
        return self.log_path.stat().st_size

    def find(self, pattern: str, since: int | None = None) -> list[str]:
        start = self.log_start if since is None else since
        rx = re.compile(pattern)
        return [line for line in self.log(start).splitlines() if rx.search(line)]

    def wait_log(self, pattern: str, since: int | None = None, timeout: float = RUN_TIMEOUT) -> str:
        """The first line matching ``pattern`` (a regex) written after ``since``."""

        def found() -> str | None:
            lines = self.find(pattern, since)
            if lines:
                return lines[0]
            if not self.alive():
                raise AssertionError(
                    f"{self.name} exited (rc={self.proc.returncode if self.proc else None}) "
                    f"before logging /{pattern}/; log:\n{self.log(self.log_start)[-3000:]}"
                )
            return None

        try:
            return str(wait_for(found, timeout, f"{self.name} to log /{pattern}/"))
        except WaitTimeout as exc:
            raise WaitTimeout(f"{exc}; log tail:\n{self.log(self.log_start)[-3000:]}") from None

    def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise WaitTimeout(f"{self.name} did not exit within {timeout:.1f}s") from None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int | None:
        """Signal, wait bounded, then SIGKILL the process group; returns the exit status.

        Raises if the process had died on its own before anyone asked it to stop.
        """
        if self.proc is None:
            return None
        died_early = self.proc.poll() is not None and not self.stopped and not self.expect_exit
        self.stopped = True
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=timeout)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=timeout)
        if died_early:
            raise AssertionError(
                f"{self.name} had exited on its own (rc={self.proc.returncode}); log tail:\n"
                f"{self.log(self.log_start)[-3000:]}"
            )
        return self.proc.returncode


def read_blocklist(dep: Deployment) -> dict[bytes, int]:
    """The server's blocklist file as ``{key_id: floor}`` (docs/files.md, blocklist.msgpck)."""
    top = msgpack.unpackb(
        dep.blocklist.read_bytes(), raw=False, use_list=False, strict_map_key=False
    )
    assert isinstance(top, tuple) and len(top) == 1, top
    return {
        bytes(k): (int.from_bytes(v, "big") if isinstance(v, bytes) else v)
        for k, v in top[0].items()
    }


class Deployment:
    """A config dir, key, commands and the daemons started on it; one per test."""

    DEFAULT_CMD = "printf '%s\\n' \"$RUROCO_IP\" >> {out}/default.out"

    def __init__(self, root: Path, extra_commands: dict[str, str] | None = None) -> None:
        self.root = root
        self.etc = root / "etc"
        self.state = root / "state"
        self.run = root / "run"
        self.out = root / "out"
        self.client_dir = root / "client"
        self.logs = root / "logs"
        for d in (self.etc, self.state, self.run, self.out, self.client_dir, self.logs):
            d.mkdir(parents=True, exist_ok=True)
        self.config = self.etc / "config.toml"
        self.commands = self.etc / "commands.toml"
        self.socket_path = self.run / "ruroco.socket"
        self.blocklist = self.state / "blocklist.msgpck"
        self.client_key = self.client_dir / "test.key"
        self.key_text = self._gen_key()
        (self.etc / "test.key").write_text(self.key_text)
        self.client_key.write_text(self.key_text)
        os.chmod(self.etc / "test.key", 0o400)
        os.chmod(self.client_key, 0o600)
        self.key = protocol.parse_key(self.key_text)
        self.extra_commands = extra_commands or {}
        self.ips = ["127.0.0.1", "::1", "::"]
        self.write_config()
        self.write_commands()
        self.daemons: list[Daemon] = []
        self.server: Daemon | None = None
        self.commander: Daemon | None = None
        self.port = 0
        self.host = "127.0.0.1"
        self._starts = 0

    # -- files ---------------------------------------------------------------------------

    def _gen_key(self) -> str:
        """The key as ``ruroco-client gen`` prints it; never passed on a command line."""
        res = self.client_cmd("gen")
        assert res.returncode == 0, f"ruroco-client gen failed: {res.stderr!r}"
        return res.stdout

    def write_config(self, **overrides: object) -> None:
        values: dict[str, object] = {
            "ips": self.ips,
            "config_dir": str(self.etc),
            "blocklist_dir": str(self.state),
            "socket_dir": str(self.run),
            "socket_user": "",
            "socket_group": "",
            "allow_non_routable_ips": True,
            # many packets from 127.0.0.1 per second in one test: keep rate limits out of the way
            "max_requests_per_second": 1000,
            "max_requests_per_second_global": 1000,
        }
        values.update(overrides)
        self.config.write_text(toml_document(values))

    def write_commands(self) -> None:
        out = str(self.out)
        lines = ["[commands]", f"default = {toml_str(self.DEFAULT_CMD.replace('{out}', out))}"]
        for name, spec in self.extra_commands.items():
            lines.append(f"{toml_str(name)} = {spec.replace('{out}', out)}")
        self.commands.write_text("\n".join(lines) + "\n")
        os.chmod(self.commands, 0o600)

    # -- daemons ---------------------------------------------------------------------------

    def _log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def start_commander(self, wait: bool = True) -> Daemon:
        d = Daemon(
            "commander",
            [str(COMMANDER), "-c", str(self.config), "--commands", str(self.commands)],
            base_env(),
            self._log("commander"),
        ).start()
        self.daemons.append(d)
        self.commander = d
        if wait:
            self.wait_commander_socket(d)
        return d

    def wait_commander_socket(self, d: Daemon) -> None:
        def ready() -> bool:
            if not d.alive():
                raise AssertionError(f"commander exited early; log:\n{d.log(d.log_start)}")
            try:
                return stat.S_ISSOCK(os.stat(self.socket_path).st_mode)
            except FileNotFoundError:
                return False

        wait_for(ready, START_TIMEOUT, f"commander socket {self.socket_path}")

    def start_server(self, host: str | None = None, port: int | None = None) -> Daemon:
        """Start the server on ``host``:``port`` via ``RUROCO_LISTEN_ADDRESS``; wait until ready."""
        self.host = host or self.host
        self.port = port or self.port or free_udp_port(self.host)
        addr = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        d = Daemon(
            "server",
            [str(SERVER), "-c", str(self.config)],
            base_env(RUROCO_LISTEN_ADDRESS=addr),
            self._log("server"),
        ).start()
        return self._server_started(d)

    def start_server_on_fd3(self, sock: socket.socket) -> Daemon:
        """Hand ``sock`` over as fd 3 with LISTEN_PID/LISTEN_FDS, as systemd does.

        LISTEN_PID must be the server's own PID, which only exists after the fork: a tiny
        ``bash`` (it allows multi-digit fd redirections) sets it to ``$$``, moves the socket
        to fd 3 and ``exec``s the server, which keeps that PID.
        """
        self.host, self.port = sock.getsockname()[:2]
        fd = sock.fileno()
        script = f'LISTEN_PID=$$ LISTEN_FDS=1 exec "$@" 3<&{fd} {fd}<&-'
        d = Daemon(
            "server",
            ["/bin/bash", "-c", script, "sh", str(SERVER), "-c", str(self.config)],
            base_env(),
            self._log("server"),
            pass_fds=(fd,),
        ).start()
        return self._server_started(d)

    def _server_started(self, d: Daemon) -> Daemon:
        self.daemons.append(d)
        self.server = d
        d.wait_log(r"Running server", timeout=START_TIMEOUT)
        return d

    def start(self, host: str = "127.0.0.1") -> Deployment:
        self.start_commander()
        self.start_server(host)
        return self

    def stop_all(self) -> None:
        """Stop every daemon; then fail if one died on its own or printed a traceback."""
        problems = []
        for d in reversed(self.daemons):
            try:
                d.stop()
            except AssertionError as exc:
                problems.append(str(exc))
        for p in sorted(self.logs.glob("*.log")):
            if "Traceback (most recent call last)" in p.read_text(errors="replace"):
                problems.append(f"traceback in {p.name}:\n{p.read_text(errors='replace')[-3000:]}")
        if problems:
            raise AssertionError("\n".join(problems))

    # -- client and packets ------------------------------------------------------------------

    def client_cmd(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        env = base_env(RUROCO_CONF_DIR=str(self.client_dir))
        env.pop("RUROCO_LOG")
        return subprocess.run(
            [str(CLIENT), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def address(self, host: str | None = None) -> str:
        host = host or self.host
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    def knock(self, *args: str, to: str | None = None) -> subprocess.CompletedProcess[str]:
        """``ruroco-client send`` to the server (``to`` = host to address; default its bind)."""
        res = self.client_cmd(
            "send", "-a", self.address(to), "-k", str(self.client_key), "-d", "0", *args
        )
        assert res.returncode == 0, f"client send failed ({res.returncode}): {res.stderr}"
        return res

    def client_counter(self) -> int:
        return int.from_bytes((self.client_dir / "counter").read_bytes()[:16], "big")

    def packet(
        self,
        cmd: str = "default",
        counter: int | None = None,
        strict: bool = True,
        src: str | None = None,
        dst: str = "127.0.0.1",
        key: protocol.Key | None = None,
    ) -> bytes:
        """A 94-byte datagram built with the shared protocol module (fresh counter = now)."""
        data = protocol.ClientData(
            cmd_hash=protocol.command_hash(cmd),
            counter=time.time_ns() if counter is None else counter,
            strict=strict,
            src_ip=None if src is None else parse_ip(src),
            dst_ip=parse_ip(dst),
        )
        return protocol.build_packet(key or self.key, data)

    def send_raw(self, datagram: bytes, src_host: str = "127.0.0.1") -> tuple[str, int]:
        """Send one datagram from our own socket; returns its source (host, port)."""
        fam = socket.AF_INET6 if ":" in src_host else socket.AF_INET
        with socket.socket(fam, socket.SOCK_DGRAM) as s:
            s.bind((src_host, 0))
            s.sendto(datagram, ("127.0.0.1" if fam == socket.AF_INET else "::1", self.port))
            return s.getsockname()[:2]

    def capture_client_packet(self, *args: str, at: str = "127.0.0.1") -> bytes:
        """The exact datagram ``ruroco-client send`` emits, caught on our own socket at ``at``."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((at, 0))
            s.settimeout(RUN_TIMEOUT)
            port = s.getsockname()[1]
            res = self.client_cmd(
                "send", "-a", f"{at}:{port}", "-k", str(self.client_key), "-d", "0", *args
            )
            assert res.returncode == 0, f"client send failed: {res.stderr}"
            data, _ = s.recvfrom(4096)
        return data

    # -- command output ---------------------------------------------------------------------

    def runs(self, name: str = "default") -> list[str]:
        """One line per run of the command (the ``RUROCO_IP`` it saw)."""
        try:
            return (self.out / f"{name}.out").read_text().splitlines()
        except FileNotFoundError:
            return []

    def wait_runs(
        self, count: int, name: str = "default", timeout: float = RUN_TIMEOUT
    ) -> list[str]:
        def enough() -> list[str] | None:
            lines = self.runs(name)
            return lines if len(lines) >= count else None

        try:
            return list(wait_for(enough, timeout, f"{count} run(s) of {name!r}"))  # type: ignore[arg-type]
        except WaitTimeout as exc:
            raise WaitTimeout(f"{exc}; {self.log_tails()}") from None

    SENTINEL_IP = "198.51.100.77"

    def assert_nothing_ran(self, before: int) -> None:
        """Prove no extra run of ``default`` happened since it had ``before`` runs.

        A permissive sentinel knock claiming a unique IP is sent last; the server handles
        datagrams in order and the commander runs one command name in arrival order, so once
        the sentinel has run, any run the earlier packet caused would already be in the file.
        """
        self.send_raw(self.packet(strict=False, src=self.SENTINEL_IP))
        lines = self.wait_runs(before + 1)
        assert lines[before:] == [self.SENTINEL_IP], (
            f"unexpected command run(s): {lines[before:]}; {self.log_tails()}"
        )

    def wait_rejection(self, since: int, *needles: str, pattern: str = "") -> str:
        """The server line explaining a rejection: contains every needle and matches pattern.

        Needles carry the information the line must give (the source address, the counter,
        the key id ...); wording is free, so only ``pattern`` names the reason, loosely.
        """
        assert self.server is not None

        server = self.server

        def found() -> str | None:
            for line in server.find(pattern or ".", since):
                if all(n in line for n in needles):
                    return line
            if not server.alive():
                raise AssertionError(
                    f"server exited (rc={server.proc.returncode if server.proc else None}) "
                    f"instead of logging a rejection; {self.log_tails()}"
                )
            return None

        try:
            return str(wait_for(found, RUN_TIMEOUT, f"server line with {needles} /{pattern}/"))
        except WaitTimeout as exc:
            raise WaitTimeout(f"{exc}; {self.log_tails()}") from None

    def log_tails(self) -> str:
        parts = []
        for name in ("server", "commander"):
            p = self._log(name)
            if p.exists():
                parts.append(f"--- {name} log tail ---\n{p.read_text(errors='replace')[-2500:]}")
        return "\n".join(parts)

    def all_logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.logs.glob("*.log")))


#: ``make_deployment(extra_commands=None)`` from the fixture of the same name.
DeploymentFactory = Callable[..., Deployment]
