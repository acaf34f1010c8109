"""The receive loop: drain the socket, decide per datagram, queue for the commander, never reply.

The socket is non-blocking and drained in a tight loop; only when it is empty does the loop
wait in ``poll`` (at most 1 s, and a signal wakes it at once through a wakeup pipe), so a
flood costs one ``recvfrom_into`` into a preallocated buffer per datagram and SIGTERM or
SIGINT still stop the server promptly. An accepted request is handed to the commander
right here when nothing is waiting before it and that cannot block, and queued for a
forwarder thread otherwise (``ruroco.server.forward``), so a hung commander never blocks
receiving.

SIGHUP only sets a flag; the loop reloads between two drain batches (``Server.reload``,
docs/files.md, Reload on SIGHUP), so a burst of signals is one or two reloads, the socket
stays open throughout and the datagrams that arrive meanwhile wait in its queue.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import __version__ as crypto_version

from ruroco import hangup, log
from ruroco.errors import RurocoError, qpath
from ruroco.ipaddr import ip_text
from ruroco.ipc import SERVER_LOCK_NAME, check_socket_path
from ruroco.lock import InstanceLock
from ruroco.protocol import MSG_SIZE, V0_MSG_SIZE, hex_list
from ruroco.server.blocklist import (
    Blocklist,
    BlocklistError,
    open_at_startup,
    remove_stale_temp_files,
)
from ruroco.server.config import ServerConfig, load_config
from ruroco.server.drops import DropReport
from ruroco.server.forward import DEFAULT_TIMEOUT, QUEUE_LENGTH, Forwarder
from ruroco.server.listen import select_socket
from ruroco.server.pipeline import (
    ACCEPTED_V0,
    REASONS,
    Acceptance,
    Busy,
    Pipeline,
    Result,
    peer_text,
    render,
)
from ruroco.server.reload import (
    KeySet,
    applied,
    live_changes,
    load_key_set,
    needs_restart,
    restart_line,
    summary,
)
from ruroco.server.throttle import INTERVAL as THROTTLE_INTERVAL
from ruroco.server.throttle import ErrorThrottle, suppressed_suffix
from ruroco.wakeup import STOP_SIGNALS, Wakeup

# Larger than a packet so an oversize datagram is seen as such; MSG_TRUNC reports its size.
RECV_BUFFER = MSG_SIZE + 1
DRAIN_BATCH = 512
RECEIVE_QUEUE_BYTES = 4 << 20
IDLE_POLL_MS = 1000
# Floors that refusals raised are written at most this often (seconds), so packets refused
# by the policy or the global limit cannot make the server write more (ruroco.server.pipeline).
FLOOR_SAVE_INTERVAL = 1.0


@dataclass
class Stats:
    received: int = 0
    forwarded: int = 0
    forward_failed: int = 0
    # passed every check, but the hand-off queue was full: counter not used, nothing runs
    forward_busy: int = 0
    # accepted (counter used) but never handed to the commander: queued at shutdown
    forward_dropped: int = 0
    pipeline: dict[str, int] = field(default_factory=dict)
    # SIGHUP: configurations swapped in, and reloads that kept the running one
    reloads: int = 0
    reloads_failed: int = 0
    # of ``forwarded``: handed over on the receive loop, without the forwarder thread
    forwarded_direct: int = 0

    def summary(self) -> str:
        """One ``key=value`` line; the benchmarks parse it (new fields go at the end)."""
        accepted = self.pipeline.get("accepted", 0)
        rejected = sum(self.pipeline.get(r, 0) for r in REASONS)
        parts = [
            f"received={self.received}",
            f"accepted={accepted}",
            f"forwarded={self.forwarded}",
            f"forward_failed={self.forward_failed}",
            f"rejected={rejected}",
        ]
        parts += [f"rejected_{r}={self.pipeline.get(r, 0)}" for r in REASONS]
        parts += [f"forward_busy={self.forward_busy}", f"forward_dropped={self.forward_dropped}"]
        parts += [f"reloads={self.reloads}", f"reloads_failed={self.reloads_failed}"]
        parts.append(f"accepted_protocol_0={self.pipeline.get(ACCEPTED_V0, 0)}")
        parts.append(f"forwarded_direct={self.forwarded_direct}")
        return "Server statistics: " + " ".join(parts)


class Server:
    def __init__(
        self,
        config: ServerConfig,
        pipeline: Pipeline,
        sock: socket.socket,
        socket_path: Path,
        forward_timeout: float = DEFAULT_TIMEOUT,
        throttle_interval: float = THROTTLE_INTERVAL,
        queue_length: int = QUEUE_LENGTH,
    ) -> None:
        self.config = config
        self.pipeline = pipeline
        self.sock = sock
        self.socket_path = socket_path
        self.forward_timeout = forward_timeout
        self.throttle = ErrorThrottle(throttle_interval)
        self.stats = Stats(pipeline=pipeline.stats)
        self.forwarder = Forwarder(socket_path, self.stats, forward_timeout, queue_length)
        pipeline.handoff_room = self.forwarder.has_room
        self._stop = False
        self._reload = False
        # The key files in use (file name -> key id), set by create_server; a reload
        # compares with it to say which keys it added and removed.
        self.key_files: dict[str, bytes] = {}
        # The blocklist_dir lock taken by create_server; released by close().
        self.instance_lock: InstanceLock | None = None
        self.wakeup = Wakeup()
        self.drop_report: DropReport | None = None  # made by run()

    def request_stop(self) -> None:
        """Safe from signal handlers and other threads: sets the flag and wakes ``poll``."""
        self._stop = True
        self.wakeup.wake()

    def request_reload(self) -> None:
        """Safe from signal handlers and other threads: the loop reloads before its next
        batch; requests made before that reload starts are one reload."""
        self._reload = True
        self.wakeup.wake()

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT stop the loop, SIGHUP reloads (main thread only; ``close``
        restores the previous handlers). A SIGHUP noted during start is a reload now."""

        def on_signal(signum: int, frame: object) -> None:
            if signum == signal.SIGHUP:
                self.request_reload()
            else:
                self.request_stop()

        self.wakeup.install(on_signal, (*STOP_SIGNALS, signal.SIGHUP))
        if hangup.take():
            self.request_reload()

    def close(self) -> None:
        self.wakeup.close()
        self.sock.close()
        if self.instance_lock is not None:
            self.instance_lock.release()

    def run(self) -> Stats:
        """Serve until a stop is requested; raises only on an unrecoverable receive error."""
        sock = self.sock
        sock.setblocking(False)
        _grow_receive_buffer(sock)
        # Drops happen in the kernel, so the loop asks the socket's counter once per batch
        # or idle wake-up, and logs a line for an interval with any (ruroco.server.drops).
        # Counted from before the line that says the server runs: whoever sees that line and
        # then floods it finds every drop in the summary.
        drop_report = DropReport(sock, self.config.drop_report_seconds, time.monotonic())
        log.info(f"Running server on {_describe(sock)}")
        self.forwarder.start()
        self.drop_report = drop_report
        next_drop_check = drop_report.due
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        wake_fd = self.wakeup.reader.fileno()
        poller.register(wake_fd, select.POLLIN)
        buf = bytearray(RECV_BUFFER)
        view = memoryview(buf)
        recv = sock.recvfrom_into
        pipeline = self.pipeline
        # The decision is sans-IO: the loop reads the clocks and does the I/O (``settle``).
        # ``screen`` (size, key id) is all a random flood gets; ``decide`` runs the rest.
        decision = pipeline.decision
        screen = decision.screen
        decide = decision.decide_screened
        next_floor_save = 0.0
        settle = pipeline.settle
        gate = self.throttle.gate
        stats = self.stats
        debug = log.debug_enabled()
        flags = socket.MSG_TRUNC
        monotonic = time.monotonic
        time_ns = time.time_ns
        # ``result.__class__ is tuple`` tells a rejection from an Acceptance or Busy (named
        # tuples) at the cost of one attribute load; mypy cannot narrow on it, hence the ignores.
        result: Result | None
        try:
            while not self._stop:
                if self._reload:
                    self._reload = False  # cleared first: a SIGHUP during it is one more
                    self.reload()
                    next_drop_check = drop_report.due
                received = 0
                try:
                    while received < DRAIN_BATCH:
                        size, peer = recv(buf, RECV_BUFFER, flags)
                        received += 1
                        if debug:
                            log.debug(f"Successfully received {size} bytes from {_sockaddr(peer)}")
                        result = screen(buf, size, peer[0], peer[1])
                        if result is None:
                            result = decide(view, size, peer[0], peer[1], time_ns(), monotonic())
                            if result.__class__ is Acceptance:
                                result = settle(result)
                        if result.__class__ is tuple:
                            if debug:
                                log.debug(render(result))  # type: ignore[arg-type]
                            suppressed = gate(monotonic())
                            if suppressed is not None:
                                line = render(result)  # type: ignore[arg-type]
                                log.error(line + suppressed_suffix(suppressed))
                        else:
                            self._forward(result)  # type: ignore[arg-type]
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EINTR):
                        raise RurocoError(
                            f"Could not receive bytes from socket, giving up: {exc}"
                        ) from exc
                finally:
                    stats.received += received
                if monotonic() >= next_drop_check:
                    dropped = drop_report.check(monotonic(), self.config.kernel_filter)
                    if dropped is not None:
                        log.error(dropped)
                    next_drop_check = drop_report.due
                if decision.unsaved_floors and monotonic() >= next_floor_save:
                    problem = pipeline.save_refused_floors()
                    if problem is not None:
                        log.error(problem)
                    next_floor_save = monotonic() + FLOOR_SAVE_INTERVAL
                if received < DRAIN_BATCH and not self._stop:
                    for fd, _ in poller.poll(IDLE_POLL_MS):
                        if fd == wake_fd:
                            self.wakeup.drain()
        finally:
            if self._stop:
                log.info("Shutdown requested, stopping server loop")
            problem = pipeline.save_refused_floors()
            if problem is not None:
                log.error(problem)
            self.forwarder.close()  # queued requests: one last chance of <= forward_timeout
            log.info(stats.summary())
        return stats

    def reload(self) -> bool:
        """Re-read config.toml and the key files and swap them in, or keep everything.

        Runs on the loop's thread between two datagrams (docs/files.md, Reload on SIGHUP).
        Every step that can fail comes before the swap; a failure undoes what came before
        it and is one error line. Returns whether the new configuration is in use.
        """
        try:
            return self._reload_files()
        except Exception as exc:  # a surprise must not end a serving daemon; nothing swapped
            self.stats.reloads_failed += 1
            log.error(f"Reload failed, keeping the running configuration: unexpected {exc!r}")
            return False

    def _reload_files(self) -> bool:
        started = time.monotonic()
        running = self.config
        path = running.path
        try:
            if path is None:
                raise RurocoError("the server was not started from a config file")
            new = load_config(path)
            config = applied(running, new)
            keyset = load_key_set(config)
        except RurocoError as exc:
            self.stats.reloads_failed += 1
            log.error(f"Reload failed, keeping the running configuration: {exc}")
            return False
        seeded = self._seed_floors(keyset)
        if seeded is None:
            return False
        if config.kernel_filter and not self._refilter(config, keyset, seeded):
            return False
        old_keys = self.pipeline.keys
        self.pipeline.decision.reconfigure(config, keyset.keys, keyset.policy)
        self.pipeline.keys = keyset.keys
        self.pipeline.config = config
        self.config = config
        for key in old_keys.values():
            if keyset.keys.get(key.key_id) is not key:
                key.wipe()
        self.stats.reloads += 1
        if self.drop_report is not None:
            self.drop_report.reschedule(config.drop_report_seconds, time.monotonic())
        restart = needs_restart(running, new)
        if restart:
            log.error(restart_line(path, restart))
        old_files, self.key_files = self.key_files, dict(keyset.files)
        changed = live_changes(running, config)
        elapsed = time.monotonic() - started
        log.info(summary(path, old_files, self.key_files, keyset.policy, changed, elapsed))
        return True

    def _seed_floors(self, keyset: KeySet) -> list[bytes] | None:
        """New keys get a floor as at start (now); persisted before any is used. None (and
        nothing seeded) if the blocklist cannot be written."""
        blocklist = self.pipeline.blocklist
        now = time.time_ns()
        seeded = [key_id for key_id in keyset.keys if key_id not in blocklist.entries]
        for key_id in seeded:
            blocklist.entries[key_id] = now
        if not seeded:
            # Floors that refusals raised go to disk before a new policy could allow those
            # packets; if that write fails they stay raised in memory and the reload goes on.
            problem = self.pipeline.save_refused_floors()
            if problem is not None:
                log.error(problem)
            return seeded
        try:
            blocklist.save()
        except BlocklistError as exc:
            self._unseed(seeded)
            self._reload_failed(keyset, str(exc))
            return None
        self.pipeline.decision.unsaved_floors = False
        return seeded

    def _unseed(self, seeded: list[bytes]) -> None:
        for key_id in seeded:
            del self.pipeline.blocklist.entries[key_id]

    def _refilter(self, config: ServerConfig, keyset: KeySet, seeded: list[bytes]) -> bool:
        """Replace the kernel filter with one for the new key ids and sizes (the kernel swaps
        it whole; if it refuses, the old filter stays)."""
        from ruroco.server import kfilter

        try:
            kfilter.attach(self.sock, keyset.keys.keys(), config.accept_protocol_0)
        except RurocoError as exc:
            if seeded:
                self._unseed(seeded)
                with contextlib.suppress(BlocklistError):
                    self.pipeline.blocklist.save()
            self._reload_failed(keyset, str(exc))
            return False
        return True

    def _reload_failed(self, keyset: KeySet, problem: str) -> None:
        keyset.wipe()
        self.stats.reloads_failed += 1
        log.error(f"Reload failed, keeping the running configuration: {problem}")

    def _forward(self, result: Acceptance | Busy) -> None:
        """Hand an accepted request over, or queue it for the forwarder thread; never waits
        for the commander."""
        if isinstance(result, Busy):
            self.stats.forward_busy += 1
            log.error(
                f"Dropped request for key {hex_list(result.key_id)} from "
                f"{peer_text(result.host)} port {result.port}: commander hand-off queue full "
                f"({self.forwarder.capacity} waiting); counter {result.counter} not used, "
                "the client can knock again"
            )
            return
        forwarder = self.forwarder
        if forwarder.hand_over_now(result.message):
            return
        label = f"key {hex_list(result.key_id)} (IP {ip_text(result.ip)})"
        if not forwarder.enqueue(result.message, label):  # only if nobody asked for room
            self.stats.forward_dropped += 1
            log.error(f"Dropped request for {label}: commander hand-off queue full")


def _grow_receive_buffer(sock: socket.socket) -> None:
    """Best effort: a larger kernel queue absorbs bursts (the kernel caps it at rmem_max)."""
    with contextlib.suppress(OSError):
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) < RECEIVE_QUEUE_BYTES:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_QUEUE_BYTES)


def _sockaddr(peer: tuple[str, int] | tuple[str, int, int, int]) -> str:
    """``1.2.3.4:5`` or ``[::ffff:1.2.3.4]:5``: the raw peer, as the original prints it."""
    return f"[{peer[0]}]:{peer[1]}" if ":" in peer[0] else f"{peer[0]}:{peer[1]}"


def _describe(sock: socket.socket) -> str:
    try:
        name = sock.getsockname()
    except OSError:
        return f"fd {sock.fileno()}"
    if sock.family == socket.AF_INET6:
        return f"[{name[0]}]:{name[1]}"
    if sock.family == socket.AF_INET:
        return f"{name[0]}:{name[1]}"
    return str(name)


#: Logged at start (a reload names the setting in its summary line when it changes).
PROTOCOL_0_LINE = (
    f"accept_protocol_0 = true: {V0_MSG_SIZE}-byte protocol 0 packets (ruroco 0.14.2, "
    "AES-256-GCM) are accepted besides protocol 1"
)


def _sizes_text(config: ServerConfig) -> str:
    return f"{MSG_SIZE} or {V0_MSG_SIZE}" if config.accept_protocol_0 else str(MSG_SIZE)


def _policy_names(config: ServerConfig) -> str:
    return ", ".join(rule.name for rule in config.key_rules)


def create_server(
    config_path: str | os.PathLike[str],
    address: str | None = None,
    forward_timeout: float = DEFAULT_TIMEOUT,
    throttle_interval: float = THROTTLE_INTERVAL,
) -> Server:
    """Startup in the original's order: config, keys, blocklist (load, save, seed), socket."""
    config = load_config(config_path)
    trusted = config.trusted()

    def found(paths: list[Path]) -> None:
        log.info(
            f"Creating server, loading keys from [{', '.join(qpath(p) for p in paths)}], "
            f"using cryptography {crypto_version} ..."
        )

    # Also checks the kernel filter's key limit: before anything is written or bound.
    keyset = load_key_set(config, found)
    keys, policy = keyset.keys, keyset.policy
    for key_id in keys:
        log.info(f"loading key with id {hex_list(key_id)}")
    if len(policy):
        log.info(f"Per-key policy for {len(policy)} key(s): {_policy_names(config)}")
    socket_path = config.checked_socket_path(trusted)
    check_socket_path(socket_path)
    blocklist_path = config.blocklist_path()
    directory = trusted.directory(blocklist_path.parent, "blocklist_dir")
    blocklist_path = Path(directory) / blocklist_path.name
    # Held for the process lifetime (the kernel drops it when we die): two servers sharing
    # one floor would each accept the same packet once.
    lock = InstanceLock(os.path.join(directory, SERVER_LOCK_NAME), "Server").acquire()
    try:
        stale = remove_stale_temp_files(blocklist_path)
        if stale:
            log.info(f"Removed {stale} stale temporary blocklist file(s) in {qpath(directory)}")
        blocklist: Blocklist = open_at_startup(blocklist_path, keys.keys(), time.time_ns(), trusted)
        sock = select_socket(config.address, explicit=address)
    except BaseException:
        lock.release()
        raise
    from ruroco.server import kfilter

    try:
        if config.kernel_filter:
            length = kfilter.attach(sock, keys.keys(), config.accept_protocol_0)
        else:  # systemd's socket may still carry the filter of an earlier start
            detached = kfilter.detach(sock)
    except RurocoError:
        sock.close()
        lock.release()
        raise
    if config.kernel_filter:
        log.info(
            f"Kernel filter active ({length} BPF instructions for {len(keys)} key id(s)): "
            f"datagrams that are not {_sizes_text(config)} bytes or carry an unknown key id are "
            "now dropped by the kernel without a log line"
        )
    elif detached:
        log.info("Removed a kernel filter left on the socket by an earlier start")
    if config.accept_protocol_0:
        log.info(PROTOCOL_0_LINE)
    pipeline = Pipeline(config, keys, blocklist, policy=policy)
    server = Server(config, pipeline, sock, socket_path, forward_timeout, throttle_interval)
    server.instance_lock = lock
    server.key_files = dict(keyset.files)
    return server


def serve(
    config_path: str | os.PathLike[str],
    address: str | None = None,
    throttle_interval: float = THROTTLE_INTERVAL,
) -> Stats:
    """What ``ruroco-server`` does; library callers (benchmarks, tests) may pass the option
    the CLI does not offer: the error throttle interval."""
    hangup.defer()  # the CLI did already; a library caller's SIGHUP during start is noted too
    server = create_server(config_path, address=address, throttle_interval=throttle_interval)
    server.install_signal_handlers()
    try:
        return server.run()
    finally:
        server.close()
