"""Socket set-up (spec §4.4) and the accept loop (§4.5 with deviation 3).

The loop is one thread around ``selectors``: every connection gets 1 s to deliver its 24
bytes, and a connection that stalls only occupies a slot, never the loop, so other requests
keep flowing. Work is handed to the ``Dispatcher``; nothing a peer sends can raise out of
the loop.

Stopping (SIGTERM/SIGINT): stop accepting, remove the socket file, drop requests that are
queued but not started, and let running commands finish within their own timeouts. A second
signal kills the running commands' process groups at once (for "no deadline" commands).
"""

from __future__ import annotations

import contextlib
import errno
import os
import selectors
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ruroco import log
from ruroco.commander.commands import Command
from ruroco.commander.config import LOCK_NAME, CommanderConfig
from ruroco.commander.dispatch import Dispatcher
from ruroco.commander.executor import Executor
from ruroco.commander.ipfilter import is_non_routable
from ruroco.errors import RurocoError, qpath
from ruroco.fs import chown_by_name
from ruroco.ipaddr import ip_text
from ruroco.lock import InstanceLock
from ruroco.protocol import COMMANDER_DATA_SIZE, decode_commander_data

SOCKET_MODE = 0o204
READ_TIMEOUT_SEC = 1.0
# Connections being read at once; beyond this new ones wait in the kernel backlog.
MAX_OPEN_CONNECTIONS = 64
LISTEN_BACKLOG = 128


@dataclass
class _Conn:
    sock: socket.socket
    deadline: float
    buf: bytearray = field(default_factory=bytearray)


def socket_dir_of(socket_path: Path) -> Path:
    """The directory holding socket and lock; a path without a parent cannot have either."""
    parent = socket_path.parent
    if parent == socket_path:
        raise RurocoError(f"Could not get parent dir for {qpath(socket_path)}")
    return parent


def bind_socket(path: Path, user: str, group: str) -> socket.socket:
    """Bind under umask 077 (never connectable by others, even briefly), then 0204 + chown."""
    log.info(f"Binding Unix Listener on {qpath(path)} with permissions 204")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    bound = False
    try:
        old_umask = os.umask(0o077)
        try:
            sock.bind(os.fspath(path))
            bound = True
            sock.listen(LISTEN_BACKLOG)  # listening before the file becomes connectable (0204)
        except OSError as exc:
            raise RurocoError(f"Could not bind to socket {qpath(path)}") from exc
        finally:
            os.umask(old_umask)
        try:
            os.chmod(path, SOCKET_MODE)
        except OSError as exc:
            raise RurocoError(f"Could not set permissions 204 for {qpath(path)}") from exc
        chown_by_name(path, user, group)
    except BaseException:
        sock.close()
        if bound:
            with contextlib.suppress(OSError):
                path.unlink()  # a socket nobody listens on would only confuse the server
        raise
    return sock


class Commander:
    def __init__(self, config: CommanderConfig, commands: dict[int, Command]) -> None:
        self.config = config
        self.commands = commands
        self.socket_path = config.socket_path()
        self.executor = Executor()
        self.dispatcher: Dispatcher | None = None
        self._lock: InstanceLock | None = None
        self._listener: socket.socket | None = None
        self._socket_ino: int | None = None
        self._stop = False

    # -- start-up ---------------------------------------------------------------------------

    def start(self) -> None:
        """§4.4 in order: parent dir, lock, unlink old socket, bind, chmod, chown."""
        directory = socket_dir_of(self.socket_path)
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RurocoError(f"Could not create parents for {qpath(directory)}") from exc
        # The lock comes before the unlink so a second instance fails loudly instead of
        # deleting the live socket (original commit 908a8d5).
        self._lock = InstanceLock(directory / LOCK_NAME, "Commander").acquire()
        try:
            with contextlib.suppress(OSError):
                self.socket_path.unlink()
            self._listener = bind_socket(
                self.socket_path, self.config.socket_user, self.config.socket_group
            )
            self._socket_ino = os.stat(self.socket_path).st_ino
            self._listener.setblocking(False)
        except BaseException:
            self.release()
            raise
        self.dispatcher = Dispatcher(self.config.max_concurrent_commands)

    # -- loop --------------------------------------------------------------------------------

    def request_stop(self) -> None:
        self._stop = True

    def serve(self, wakeup: socket.socket | None = None) -> None:
        """Accept and read connections until ``request_stop``; ``wakeup`` ends a select early."""
        assert self._listener is not None, "start() first"
        sel = selectors.DefaultSelector()
        conns: dict[socket.socket, _Conn] = {}
        sel.register(self._listener, selectors.EVENT_READ, "listen")
        if wakeup is not None:
            sel.register(wakeup, selectors.EVENT_READ, "wakeup")
        listening = True
        try:
            while not self._stop:
                now = time.monotonic()
                timeout = min((c.deadline for c in conns.values()), default=now + 1.0) - now
                for key, _ in sel.select(max(0.0, min(timeout, 1.0))):
                    if key.data == "listen":
                        self._accept(sel, conns)
                    elif key.data == "wakeup":
                        with contextlib.suppress(OSError):
                            wakeup.recv(512)
                    else:
                        self._read(sel, conns, key.fileobj)
                self._expire(sel, conns)
                if listening and len(conns) >= MAX_OPEN_CONNECTIONS:
                    sel.unregister(self._listener)
                    listening = False
                elif not listening and len(conns) < MAX_OPEN_CONNECTIONS:
                    sel.register(self._listener, selectors.EVENT_READ, "listen")
                    listening = True
        finally:
            for conn in conns.values():
                log.error("Could not read command from Unix Stream: commander is stopping")
                conn.sock.close()
            sel.close()

    def _accept(self, sel: selectors.BaseSelector, conns: dict[socket.socket, _Conn]) -> None:
        assert self._listener is not None
        while len(conns) < MAX_OPEN_CONNECTIONS:
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.error(f"Connection for {qpath(self.socket_path)} failed: {exc}")
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    time.sleep(0.05)  # the listener stays readable: do not spin
                return
            sock.setblocking(False)
            conns[sock] = _Conn(sock, time.monotonic() + READ_TIMEOUT_SEC)
            sel.register(sock, selectors.EVENT_READ, "conn")
            # The server writes right after connecting: the 24 bytes are usually there
            # already, and reading now saves a trip through select() per request.
            self._read(sel, conns, sock)

    def _read(
        self, sel: selectors.BaseSelector, conns: dict[socket.socket, _Conn], sock: socket.socket
    ) -> None:
        conn = conns[sock]
        try:
            chunk = sock.recv(COMMANDER_DATA_SIZE - len(conn.buf))
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._drop(sel, conns, conn, f"Could not read command from Unix Stream: {exc}")
            return
        if not chunk:
            self._drop(
                sel,
                conns,
                conn,
                "Could not read command from Unix Stream: connection closed after "
                f"{len(conn.buf)} of {COMMANDER_DATA_SIZE} bytes",
            )
            return
        conn.buf += chunk
        if len(conn.buf) == COMMANDER_DATA_SIZE:
            self._drop(sel, conns, conn, None)  # bytes beyond 24 are ignored
            self._handle(bytes(conn.buf))

    def _expire(self, sel: selectors.BaseSelector, conns: dict[socket.socket, _Conn]) -> None:
        now = time.monotonic()
        for conn in [c for c in conns.values() if c.deadline <= now]:
            self._drop(
                sel,
                conns,
                conn,
                f"Could not read command from Unix Stream: timed out after {READ_TIMEOUT_SEC:g}s "
                f"with {len(conn.buf)} of {COMMANDER_DATA_SIZE} bytes",
            )

    @staticmethod
    def _drop(
        sel: selectors.BaseSelector,
        conns: dict[socket.socket, _Conn],
        conn: _Conn,
        problem: str | None,
    ) -> None:
        if problem:
            log.error(problem)
        sel.unregister(conn.sock)
        del conns[conn.sock]
        conn.sock.close()

    def _handle(self, message: bytes) -> None:
        """Decide about one complete message; errors become one log line, never an exception."""
        try:
            cmd_hash, ip = decode_commander_data(message)
            command = self.commands.get(cmd_hash)
            if command is None:
                log.error(f"Unknown command name: {cmd_hash}")
                return
            if not self.config.allow_non_routable_ips and is_non_routable(ip):
                log.error(
                    f"refusing to execute with non-routable IP: {ip_text(ip)} "
                    f"(command ({cmd_hash}))"
                )
                return
            assert self.dispatcher is not None
            if not self.dispatcher.submit(command.name, lambda: self.executor.run(command, ip)):
                log.error(f"Too many queued commands, dropping ({cmd_hash}) for {ip_text(ip)}")
        except Exception as exc:
            log.error(f"Could not handle command message: {exc}")

    # -- shutdown ----------------------------------------------------------------------------

    def close_listener(self) -> None:
        """Stop accepting and remove our socket file (not one that replaced it)."""
        if self._listener is not None:
            self._listener.close()
            self._listener = None
            with contextlib.suppress(OSError):
                if os.stat(self.socket_path).st_ino == self._socket_ino:
                    self.socket_path.unlink()

    def finish(self, kill_requested: Callable[[], bool]) -> None:
        """Drop queued work, wait for running commands; kill them once ``kill_requested()``."""
        if self.dispatcher is not None:
            dropped = self.dispatcher.close()
            if dropped:
                log.error(f"Dropped {dropped} queued command(s) on shutdown")
            killed = False
            while not self.dispatcher.wait_idle(0.1):
                if kill_requested() and not killed:
                    log.info(f"Killed {self.executor.kill_all()} running command(s)")
                    killed = True
            self.dispatcher.shutdown()
        self.executor.close()
        self.release()

    def release(self) -> None:
        if self._listener is not None:
            self.close_listener()
        if self._lock is not None:
            self._lock.release()
            self._lock = None


def run(config: CommanderConfig, commands: dict[int, Command]) -> None:
    """The daemon: start, serve until SIGTERM/SIGINT, shut down as documented above."""
    commander = Commander(config, commands)
    commander.start()
    signals = {"count": 0}
    wake_r, wake_w = socket.socketpair()
    wake_r.setblocking(False)
    wake_w.setblocking(False)

    def on_signal(signum: int, _frame: object) -> None:
        signals["count"] += 1
        commander.request_stop()
        if signals["count"] == 1:
            log.info(f"Received signal {signum}, stopping")

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    old_wakeup = signal.set_wakeup_fd(wake_w.fileno())
    try:
        log.info(
            f"Commander listening on {qpath(commander.socket_path)} with {len(commands)} "
            f"command(s), up to {config.max_concurrent_commands} in parallel"
        )
        commander.serve(wake_r)
        commander.close_listener()
        commander.finish(lambda: signals["count"] >= 2)
    finally:
        commander.release()
        signal.set_wakeup_fd(old_wakeup)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        wake_r.close()
        wake_w.close()
    log.info("Commander stopped")
