"""Socket set-up (docs/files.md, ruroco.socket and commander.lock) and the accept loop, which
reads 24-byte messages (docs/protocol.md, Commander message) and hands them to the
``Dispatcher`` (docs/deviations.md #3).

The loop is one thread around ``selectors``: every connection gets 1 s to deliver its 24
bytes, and a connection that stalls only occupies a slot, never the loop, so other requests
keep flowing. Work is handed to the ``Dispatcher``; nothing a peer sends can raise out of
the loop. A connection whose 24 bytes are already there when it is accepted (the usual case)
is read and closed without meeting the selector, and a command whose name is idle is spawned
on this thread at once, leaving only the wait to a worker (docs/performance.md).

Grants (docs/grants.md): with ``[grants]`` configured, ``start`` applies the nftables table
before the socket exists, and a watcher keeps it in place; ``open_NAME``/``close_NAME`` go
through the same dispatcher as commands, but run ``nft`` directly (``guard.GrantKeeper``),
never a shell. Stopping leaves the table: guards stay, grants expire in the kernel.

Reloading (SIGHUP; docs/files.md, "Reload on SIGHUP (commander)"): the handler only sets a
flag and wakes the loop, which re-reads both files between two messages (``Commander.reload``),
so a burst of signals is one or two reloads and no message is lost. Every check comes before
the one side effect, the grants' nftables transaction; only when that succeeded is the command
table swapped whole. Requests already queued or running keep the definition they were
dispatched with.

Warm shells (docs/performance.md, "Warm shells"): the executor keeps ``sh`` started ahead for
each command; ``start`` and every reload tell it which commands (``warm_shells``), and a
request releases one instead of spawning. Stopping ends them without running anything.

Stopping (SIGTERM/SIGINT): stop accepting, remove the socket file, drop requests that are
queued but not started, and let running commands finish within their own timeouts. A second
signal kills the running commands' process groups at once (for "no deadline" commands).
"""

from __future__ import annotations

import contextlib
import errno
import os
import selectors
import shutil
import signal
import socket
import stat
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from ruroco import hangup, log, trust
from ruroco.commander import nft, tablelock
from ruroco.commander.check import socket_user_warning
from ruroco.commander.commands import Command, CommandFile, load_command_file
from ruroco.commander.config import CommanderConfig, load_config
from ruroco.commander.dispatch import Dispatcher, Tail, Task
from ruroco.commander.executor import Executor, Wait
from ruroco.commander.grants import Grant, GrantAction
from ruroco.commander.guard import GrantKeeper, WatcherError
from ruroco.commander.ipfilter import is_non_routable
from ruroco.commander.reload import (
    FAILED,
    applied,
    live_changes,
    needs_restart,
    restart_line,
    summary,
)
from ruroco.errors import RurocoError, qpath
from ruroco.fs import lookup_ids
from ruroco.ipaddr import ip_text
from ruroco.ipc import (
    COMMANDER_DATA_SIZE,
    COMMANDER_LOCK_NAME,
    check_socket_path,
    decode_commander_data,
)
from ruroco.linebudget import LineBudget
from ruroco.lock import InstanceLock
from ruroco.wakeup import STOP_SIGNALS, Wakeup

SOCKET_MODE = 0o204
# Staging directory for bind (kept short: its path must fit sun_path as well).
PRIVATE_BIND_DIR = ".ruroco.d"
READ_TIMEOUT_SEC = 1.0
# Connections being read at once; beyond this new ones wait in the kernel backlog.
MAX_OPEN_CONNECTIONS = 64
# Error lines about requests (malformed, unknown, refused, or shed from a full queue): 100 at
# once, then 10 a second; the rest are counted (ruroco/linebudget.py). Real traffic stays far
# below: the server hands over at most max_requests_per_second_global (100) a second.
NOISE_BURST = 100
NOISE_RATE = 10.0
LISTEN_BACKLOG = 128
# The accepting thread shares the GIL with workers and the warm thread. When one of them runs
# Python at the moment a request arrives, the accepting thread waits for the GIL up to the
# switch interval (5 ms by default) or until that thread blocks; 100 µs bounds that wait at
# a few of a request's own steps (docs/performance.md, "The commander's path").
GIL_SWITCH_INTERVAL_SEC = 0.0001


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


def prepare_socket_dir(socket_path: Path) -> str:
    """Create the socket directory if needed and return its real path once it is trusted.

    Root creates, locks and renames files here, so a directory that another user can write
    (or that such a user could swap) is refused; see docs/security.md.
    """
    check_socket_path(socket_path)
    directory = socket_dir_of(socket_path)
    return trust.for_process().make_directory(directory, "socket_dir")


def bind_socket(directory: str, path: Path, user: str, group: str) -> socket.socket:
    """Bind, set mode 0204 and owner, all inside a private 0700 directory, then rename into place.

    Nobody else can reach the socket while its mode and owner are set, so chmod and chown by
    path cannot be redirected through a swapped-in link, and the rename replaces (never
    follows) whatever is at ``path``. The socket is listening before it becomes visible.
    """
    log.info(f"Binding Unix Listener on {qpath(path)} with permissions 204")
    uid, gid = lookup_ids(user, group)
    private = os.path.join(directory, PRIVATE_BIND_DIR)
    _remove_private_dir(private)
    try:
        os.mkdir(private, 0o700)
    except OSError as exc:
        raise RurocoError(f"Could not bind to socket {qpath(path)}") from exc
    staged = os.path.join(private, "s")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        old_umask = os.umask(0o077)
        try:
            sock.bind(staged)
            sock.listen(LISTEN_BACKLOG)
        except OSError as exc:
            raise RurocoError(f"Could not bind to socket {qpath(path)}") from exc
        finally:
            os.umask(old_umask)
        try:
            os.chmod(staged, SOCKET_MODE)  # nobody else can reach the staging directory
        except OSError as exc:
            raise RurocoError(f"Could not set permissions 204 for {qpath(path)}") from exc
        if uid != -1 or gid != -1:
            try:
                os.chown(staged, uid, gid, follow_symlinks=False)
            except OSError as exc:
                shown = f"{None if uid == -1 else uid}:{None if gid == -1 else gid}"
                raise RurocoError(
                    f"Could not change ownership of {qpath(path)} to {shown}"
                ) from exc
        try:
            os.rename(staged, path)
        except OSError as exc:
            raise RurocoError(f"Could not bind to socket {qpath(path)}") from exc
    except BaseException:
        sock.close()
        _remove_private_dir(private)
        raise
    _remove_private_dir(private)
    return sock


def _remove_private_dir(private: str) -> None:
    """Remove our staging directory (left over if a previous commander was killed).

    Only root can create entries in a trusted socket_dir, so what is there is ours;
    ``shutil.rmtree`` works on descriptors and never follows a link inside it.
    """
    try:
        st = os.lstat(private)
    except FileNotFoundError:
        return
    try:
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(private)
        else:
            os.unlink(private)
    except OSError as exc:
        raise RurocoError(f"Could not remove stale staging directory {qpath(private)}") from exc


class Commander:
    def __init__(
        self,
        config: CommanderConfig,
        commands: dict[int, Command] | CommandFile,
        config_path: str | os.PathLike[str] | None = None,
        commands_path: str | os.PathLike[str] | None = None,
    ) -> None:
        """``config_path``/``commands_path``: where a reload reads; without them it fails."""
        self.config = config
        self.config_path = config_path
        self.commands_path = commands_path
        loaded = commands if isinstance(commands, CommandFile) else CommandFile(commands)
        self.commands = loaded.commands
        self.actions: dict[int, GrantAction] = loaded.actions
        self.grants = loaded.grants
        self.keeper: GrantKeeper | None = None
        self.socket_path = config.socket_path()
        self.executor = Executor(
            pid_namespace=config.pid_namespace, shell_groups=config.warm_shell_groups
        )
        self.dispatcher: Dispatcher | None = None
        self._lock: InstanceLock | None = None
        self._listener: socket.socket | None = None
        self._socket_ino: int | None = None
        self._stop = False
        self._reload = False
        self._noise = LineBudget(NOISE_BURST, NOISE_RATE)

    # -- start-up ---------------------------------------------------------------------------

    def start(self) -> None:
        """Parent dir (created, then checked: docs/security.md), lock, bind, chmod, chown."""
        directory = prepare_socket_dir(self.socket_path)
        self.socket_path = Path(directory) / self.socket_path.name
        warning = socket_user_warning(directory, self.config.socket_user)
        if warning:
            log.error(f"Warning: {warning}")
        # The lock comes before the socket so a second instance fails loudly instead of
        # replacing the live socket.
        self._lock = InstanceLock(
            os.path.join(directory, COMMANDER_LOCK_NAME), "Commander"
        ).acquire()
        try:
            self._start_grants()
            self._listener = bind_socket(
                directory, self.socket_path, self.config.socket_user, self.config.socket_group
            )
            self._socket_ino = os.stat(self.socket_path).st_ino
            self._listener.setblocking(False)
        except BaseException:
            self.release()
            raise
        self.dispatcher = Dispatcher(self.config.max_concurrent_commands)
        self._keep_warm()

    def _keep_warm(self) -> None:
        """A warm shell per command (docs/performance.md, "Warm shells"), spawned after the
        socket is made (its umask is ours again) and again at every reload: shells of removed
        or changed commands are ended unreleased, new ones spawned."""
        self.executor.keep_warm(self.commands.values(), self.config.warm_shells)

    def _start_grants(self) -> None:
        """Apply the grants' table before anyone can knock; without grants, remove a table an
        earlier ``commands.toml`` left (its guards would keep those ports shut for good)."""
        if not self.grants:
            _remove_stale_table()
            return
        keeper = GrantKeeper(self.grants, nft.Nft(), os.path.dirname(self.socket_path))
        kept = keeper.apply()
        log.info(
            f"Grants: table {nft.FAMILY} {nft.TABLE} applied ({keeper.describe()}); "
            f"{kept} live grant(s) kept"
        )
        try:
            keeper.watch()
        except WatcherError as exc:
            keeper.stop()  # the table stays: its guards keep the ports shut, as wanted
            raise RurocoError(f"Grants: {exc}") from None
        self.keeper = keeper

    # -- loop --------------------------------------------------------------------------------

    def request_stop(self) -> None:
        self._stop = True

    def request_reload(self) -> None:
        """Safe from a signal handler: the loop reloads before its next wait; requests made
        before that reload starts are one reload."""
        self._reload = True

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
                if self._reload:
                    self._reload = False  # cleared first: a SIGHUP during it is one more
                    self.reload()
                now = time.monotonic()
                timeout = min((c.deadline for c in conns.values()), default=now + 1.0) - now
                for key, _ in sel.select(max(0.0, min(timeout, 1.0))):
                    if key.data == "listen":
                        self._accept(sel, conns)
                    elif key.data == "wakeup":
                        assert wakeup is not None  # registered only when given
                        with contextlib.suppress(OSError):
                            wakeup.recv(512)
                    else:
                        assert isinstance(key.fileobj, socket.socket)  # what _accept registers
                        self._read(sel, conns, key.fileobj)
                self._expire(sel, conns)
                self._report_suppressed()
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
            # The server writes right after connecting: the 24 bytes are often there already,
            # and then the connection is read, closed and handled without the selector.
            try:
                chunk = sock.recv(COMMANDER_DATA_SIZE, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                chunk = None
            except OSError as exc:
                sock.close()
                self._request_error(f"Could not read command from Unix Stream: {exc}")
                continue
            if chunk is not None and len(chunk) == COMMANDER_DATA_SIZE:
                self._read_older(sel, conns, None)  # sent before this one: handled before it
                self._handle(chunk)  # bytes beyond 24 are ignored
                sock.close()  # after: the command starts before our end is torn down
                continue
            if chunk == b"":
                sock.close()
                self._request_error(
                    "Could not read command from Unix Stream: connection closed after "
                    f"0 of {COMMANDER_DATA_SIZE} bytes"
                )
                continue
            sock.setblocking(False)
            conns[sock] = _Conn(sock, time.monotonic() + READ_TIMEOUT_SEC, bytearray(chunk or b""))
            sel.register(sock, selectors.EVENT_READ, "conn")

    def _read(
        self, sel: selectors.BaseSelector, conns: dict[socket.socket, _Conn], sock: socket.socket
    ) -> None:
        conn = conns.get(sock)
        if conn is None:  # handled earlier in this round (``_read_older``)
            return
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
            self._read_older(sel, conns, sock)
            self._drop(sel, conns, conn, None)  # bytes beyond 24 are ignored
            self._handle(bytes(conn.buf))

    def _read_older(
        self,
        sel: selectors.BaseSelector,
        conns: dict[socket.socket, _Conn],
        until: socket.socket | None,
    ) -> None:
        """Read the connections accepted before ``until`` (all of them when None) whose bytes
        are there, so that their messages are handled first.

        The server sends one message after another (connect, write, next), so accept order is
        send order, and requests of one name must run in that order (docs/deviations.md #3).
        A connection accepted before its bytes arrived waits for the selector; without this, a
        later one read at accept could overtake it. One still without its bytes (a stalled
        peer) is not waited for.
        """
        for sock in list(conns):
            if sock is until:
                return
            if sock in conns:  # a recursive read may have handled and dropped it
                self._read(sel, conns, sock)

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

    def _drop(
        self,
        sel: selectors.BaseSelector,
        conns: dict[socket.socket, _Conn],
        conn: _Conn,
        problem: str | None,
    ) -> None:
        if problem:
            self._request_error(problem)
        sel.unregister(conn.sock)
        del conns[conn.sock]
        conn.sock.close()

    def _request_error(self, message: str) -> None:
        """An error line about a request, within the budget (``NOISE_BURST``); over it, only a
        debug line, counted for the next line let through."""
        suppressed = self._noise.take(time.monotonic())
        if suppressed is None:
            log.debug(message)
        elif suppressed:
            log.error(f"{message} ({suppressed} more such lines suppressed before this one)")
        else:
            log.error(message)

    def _report_suppressed(self) -> None:
        flushed = self._noise.flush(time.monotonic())
        if flushed is not None:
            count, seconds = flushed
            log.error(
                f"Suppressed {count} error lines about requests in the last {seconds:.0f}s "
                "(malformed, unknown, refused or shed; RUROCO_LOG=debug shows each)"
            )

    def _handle(self, message: bytes) -> None:
        """Decide about one complete message; errors become one log line, never an exception."""
        try:
            cmd_hash, ip = decode_commander_data(message)
            command = self.commands.get(cmd_hash)
            action = self.actions.get(cmd_hash) if command is None else None
            if command is None and action is None:
                self._request_error(f"Unknown command name: {cmd_hash} (for {ip_text(ip)})")
                return
            if not self.config.allow_non_routable_ips and is_non_routable(ip):
                self._request_error(
                    f"refusing to execute with non-routable IP: {ip_text(ip)} "
                    f"(command ({cmd_hash}))"
                )
                return
            assert self.dispatcher is not None
            task: Callable[[], object]
            start: Callable[[], Callable[[], object]] | None = None
            if command is not None:
                # Started at once on this thread when the name is idle, and the name's turn
                # ends once sh is reaped (docs/performance.md, "The commander's path")
                parts = partial(self.executor.start_parts, command, ip)
                name, task = command.name, partial(_whole_turn, parts)
                start = partial(_started_turn, parts)
            else:
                assert action is not None and self.keeper is not None  # actions need grants
                name, task = action.name, partial(self.keeper.act, action, ip)
            if not self.dispatcher.submit(name, task, start):
                self._request_error(
                    f"Too many queued commands, dropping ({cmd_hash}) for {ip_text(ip)}"
                )
        except Exception as exc:
            self._request_error(f"Could not handle command message: {exc}")

    # -- reload ------------------------------------------------------------------------------

    def reload(self) -> bool:
        """Re-read config and commands, re-apply the grants, swap; or keep everything.

        Runs on the loop's thread, between two messages. The files are read with the same
        trust checks as at start; the grants' table is the only side effect and comes last
        (one nft transaction, atomic). Only then are the command table and the live settings
        replaced, each by a complete new object. A failure is one error line naming the file
        and the problem. Returns whether the new configuration is in use.
        """
        started = time.monotonic()
        if self.config_path is None or self.commands_path is None:
            log.error(f"{FAILED}: the commander was not started from files")
            return False
        try:
            config = load_config(self.config_path)
            loaded = load_command_file(self.commands_path)
        except RurocoError as exc:
            log.error(f"{FAILED}: {exc}")
            return False
        try:
            kept = self._reload_grants(loaded.grants)
        except RurocoError as exc:  # nft refused, or another commander manages the table
            log.error(f"{FAILED}: {qpath(self.commands_path)}: grants: {exc}")
            return False
        old = CommandFile(self.commands, self.grants, self.actions)
        self.commands, self.actions, self.grants = loaded.commands, loaded.actions, loaded.grants
        running, self.config = self.config, applied(self.config, config)
        self._keep_warm()
        restart = needs_restart(running, config)
        if restart:
            log.error(restart_line(self.config_path, restart))
        log.info(
            summary(
                self.commands_path,
                self.config_path,
                old,
                loaded,
                kept,
                live_changes(running, config),
                time.monotonic() - started,
            )
        )
        return True

    def _reload_grants(self, grants: tuple[Grant, ...]) -> int | None:
        """Bring the table to ``grants`` as a start would, without a restart; the live grants
        kept, or None when there was no table to apply (no grants before or after).

        The first grants start a keeper (table, then watcher); the last ones removed delete
        the table and stop it. ``NftError``: nothing changed.
        """
        if self.keeper is None:
            if not grants:
                # As a start without grants: a table an earlier failure left goes
                _remove_stale_table()
                return None
            keeper = GrantKeeper(grants, nft.Nft(), os.path.dirname(self.socket_path))
            try:
                kept = keeper.apply()
                try:
                    keeper.watch()
                except WatcherError as exc:
                    # The reload fails and the file in use had no grants: no table either,
                    # rather than guards nobody keeps or opens.
                    try:
                        keeper.update(())
                    except nft.NftError as left:
                        raise RurocoError(
                            f"{exc}; the table stays, its ports shut until a reload or a "
                            f"restart removes it: {left}"
                        ) from None
                    raise
            except BaseException:
                keeper.stop()  # gives the table lock back: a later reload may try again
                raise
            self.keeper = keeper
            return kept
        kept = self.keeper.update(grants)
        if not grants:
            self.keeper.stop()
            self.keeper = None
        return kept

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
        self.executor.close()  # warm shells end unreleased (again a no-op after ``finish``)
        if self.keeper is not None:
            self.keeper.stop()  # the table stays: guards stay, grants expire in the kernel
            self.keeper = None
        if self._listener is not None:
            self.close_listener()
        if self._lock is not None:
            self._lock.release()
            self._lock = None


def _started_turn(parts: Callable[[], Wait]) -> Task:
    """A dispatcher ``start`` for ``Executor.start_parts``: spawn now; the rest waits until
    ``sh`` is reaped and hands the report (output, outcome line) back as the ``Tail``."""
    return partial(_turn_tail, parts())


def _turn_tail(wait: Wait) -> Tail:
    return Tail(wait())


def _whole_turn(parts: Callable[[], Wait]) -> Tail:
    """The same as one task, for a request that waited in its name's queue."""
    return _turn_tail(parts())


def _remove_stale_table() -> None:
    """Delete ``inet ruroco`` if nft is installed and the table exists, unless another running
    commander manages it (``tablelock``); nothing otherwise."""
    try:
        runner = nft.Nft()
        current, unreadable = runner.listing()
        if current is None and unreadable is None:
            return
        claim = tablelock.claim("")
        try:
            runner.run([{"delete": {"table": {"family": nft.FAMILY, "name": nft.TABLE}}}])
        finally:
            claim.release()
    except tablelock.TableBusy:
        log.info(
            f"Grants: none configured; table {nft.FAMILY} {nft.TABLE} left alone, another "
            "running ruroco-commander manages it"
        )
        return
    except RurocoError as exc:
        if "not usable" not in str(exc):
            log.error(f"Grants: none configured, but could not remove an old table: {exc}")
        return
    log.info(f"Grants: none configured, removed table {nft.FAMILY} {nft.TABLE}")


def run(
    config: CommanderConfig,
    commands: dict[int, Command] | CommandFile,
    config_path: str | os.PathLike[str] | None = None,
    commands_path: str | os.PathLike[str] | None = None,
) -> None:
    """The daemon: start, serve until SIGTERM/SIGINT, reload on SIGHUP, shut down as
    documented above. ``config_path``/``commands_path`` are what a reload re-reads."""
    hangup.defer()  # the CLI did already; a library caller's SIGHUP during start is noted too
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_SEC)
    commander = Commander(config, commands, config_path, commands_path)
    signals = {"count": 0}

    def on_signal(signum: int, _frame: object) -> None:
        if signum == signal.SIGHUP:
            commander.request_reload()  # the loop does the work, never the handler
            return
        signals["count"] += 1
        commander.request_stop()
        if signals["count"] == 1:
            log.info(f"Received signal {signum}, stopping")

    with Wakeup() as wakeup:
        # Before the start: a SIGTERM from the moment the socket exists stops the daemon in
        # order (socket removed, shells ended), not by the signal's default action.
        wakeup.install(on_signal, (*STOP_SIGNALS, signal.SIGHUP))
        if hangup.take():  # a SIGHUP before this: the files may have changed since
            commander.request_reload()
        try:
            commander.start()
            log.info(
                f"Commander listening on {qpath(commander.socket_path)} with "
                f"{len(commander.commands)} command(s)"
                + (f", {len(commander.grants)} grant(s)" if commander.grants else "")
                + f", up to {config.max_concurrent_commands} in parallel, "
                f"isolation: {commander.executor.isolation}, "
                f"warm shells: {commander.executor.warm_shells()} "
                f"(CPU groups: {commander.executor.shell_groups})"
            )
            commander.serve(wakeup.reader)
            commander.close_listener()
            commander.finish(lambda: signals["count"] >= 2)
        finally:
            commander.release()
    log.info("Commander stopped")
