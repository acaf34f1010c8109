"""``ruroco-client connect HOST PORT``: knock, wait until the port accepts, relay like ``nc``.

Made to be an ssh ``ProxyCommand`` (docs/connect.md): standard output is the connection, so
nothing else is ever written there; log lines (``-v``) and errors go to stderr.

* **Lock:** the client lock is held only while the counter file is advanced (one write per
  knock round), never while waiting or relaying, so parallel runs (Ansible forks) each get
  their own counters and none fails on the lock.
* **Family:** each knock goes over the family of the address it is for: with the default
  server (HOST, port 80) to that very address, so the grant is for the source the TCP
  connection will come from; a HOST with both families gets a knock for each.
* **Waiting:** a guard drops SYNs, and the kernel would resend a dropped one only after a
  second, so fresh non-blocking connects go out 0, 2, 4, 8 … 250 ms after each knock (all
  kept open; the first to complete wins).
* **Relay:** one thread per direction, plain reads and writes; with ``--fdpass`` the socket
  itself goes to ssh and nothing is relayed.

Imports: what ``send`` loads plus the C modules ``_thread`` and ``select``, so the start
costs what ``send``'s does.
"""

from __future__ import annotations

import _socket as socket  # see ruroco.ipaddr: socket.py's imports cost ~8 ms of cold start
import errno
import os
import select
import sys
import time

from ruroco import log
from ruroco.client.address import AddressError, Destination, ensure_port, resolve
from ruroco.client.confdir import ensure_conf_dir, resolve_conf_dir
from ruroco.client.counter import Counter, counter_path
from ruroco.client.request import DEFAULT_COMMAND, DEFAULT_PROTOCOL, SendRequest
from ruroco.client.sender import client_lock, read_key_text, send_datagram
from ruroco.errors import RurocoError, error_chain, os_reason, qpath
from ruroco.ipaddr import MAPPED_PREFIX, ip_text, parse_ip
from ruroco.protocol import (
    ClientData,
    Key,
    build_packet,
    check_protocol,
    command_hash,
    parse_key,
)

TYPE_CHECKING = False  # typing itself would cost the cold start ~10 ms
if TYPE_CHECKING:
    from collections.abc import Callable

    Say = Callable[[str], None]

DEFAULT_KNOCK_PORT = 80
# What the give-up line says when every SYN was dropped (a guard that never opened).
NO_ANSWER = "no answer"
FIRST_STEP_S = 0.002  # first connect retry after a knock; doubles up to MAX_STEP_S
MAX_STEP_S = 0.25
MAX_PENDING = 32  # connects in flight per address; the oldest is dropped beyond this
CHUNK = 1 << 18
PIPE_SIZE = 1 << 20
MIN_LOCK_WAIT_S = 1.0


class ConnectRequest:
    """The ``connect`` command line (``ruroco.client.options.CONNECT_OPTIONS``) as values."""

    __slots__ = (
        "address",
        "command",
        "fdpass",
        "host",
        "interval",
        "ip",
        "ipv4",
        "ipv6",
        "key_file",
        "knock_port",
        "permissive",
        "port",
        "protocol",
        "timeout",
        "verbose",
    )

    def __init__(
        self,
        host: str,
        port: int,
        key_file: str | None,
        address: str | None = None,
        command: str = DEFAULT_COMMAND,
        permissive: bool = False,
        ip: str | None = None,
        ipv4: bool = False,
        ipv6: bool = False,
        timeout: float = 30.0,
        interval: float = 2.0,
        fdpass: bool = False,
        verbose: bool = False,
        protocol: int = DEFAULT_PROTOCOL,
        knock_port: int | None = None,
    ) -> None:
        self.host, self.port, self.key_file, self.address = host, port, key_file, address
        # The server's port on HOST when there is no ``-a`` (None: DEFAULT_KNOCK_PORT).
        self.knock_port = knock_port
        self.command, self.permissive, self.ip = command, permissive, ip
        self.ipv4, self.ipv6, self.timeout, self.interval = ipv4, ipv6, timeout, interval
        self.fdpass, self.verbose = fdpass, verbose
        self.protocol = check_protocol(protocol)  # wire format (docs/protocol.md, Protocol 0)


def family_name(dest: Destination) -> str:
    return "IPv4" if dest.is_ipv4 else "IPv6"


class Route:
    """One address family's pair: where its knock goes, and the address then connected to."""

    __slots__ = ("knock", "target")

    def __init__(self, knock: Destination, target: Destination) -> None:
        self.knock = knock
        self.target = target

    def __repr__(self) -> str:
        return f"Route({self.knock.text} -> {self.target.text})"


def target_address(host: str) -> str:
    """HOST as ``address.resolve`` takes it, port left to add: ``[v6]`` for IPv6 literals
    (ssh's ``%h`` gives them bare), brackets accepted; anything else is a host name."""
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not bare or any(c in bare for c in "[]/ ") or not bare.isprintable():
        raise AddressError(f"Invalid host {qpath(host)}")
    return f"[{bare}]" if ":" in bare else bare


def plan_routes(
    host: str,
    targets: list[Destination],
    servers: list[Destination] | None,
    ipv4: bool = False,
    ipv6: bool = False,
    claim: bytes | None = None,
    knock_port: int = DEFAULT_KNOCK_PORT,
) -> tuple[list[Route], list[str]]:
    """Which knocks to send and where to connect, and the families that had to be left out.

    ``targets`` are HOST's addresses in resolver order, ``servers`` the ruroco server's
    (None: the default, HOST itself on ``knock_port``). Per family, in the order the resolver
    named them, the first target is paired with a knock over the same family: to the
    target's own address (default) or the server's first address of that family. A family
    the server has no address in cannot be knocked for and is left out (second value). With
    a claimed source IP (``--ip``) the grant is for that IP whatever the knock's family, so
    only the claim's family is connected to, after one knock (preferably over that family).
    """
    only_v4, only_v6 = ipv4 and not ipv6, ipv6 and not ipv4
    usable = [t for t in targets if not (only_v6 if t.is_ipv4 else only_v4)]
    if not usable:
        fam = "IPv4" if only_v4 else "IPv6" if only_v6 else "IPv4 or IPv6"
        raise AddressError(f"Could not find any {fam} address for {host}")
    firsts: list[Destination] = []
    for t in usable:
        if all(t.is_ipv4 != f.is_ipv4 for f in firsts):
            firsts.append(t)

    def knock_for(target: Destination, any_family: bool) -> Destination | None:
        if servers is None:
            return Destination(target.ip, knock_port, target.is_ipv4, target.scope_id)
        same = [s for s in servers if s.is_ipv4 == target.is_ipv4]
        return same[0] if same else servers[0] if any_family and servers else None

    if claim is not None:
        claim_v4 = claim[:12] == MAPPED_PREFIX
        claimed = [t for t in firsts if t.is_ipv4 == claim_v4]
        if not claimed:
            raise AddressError(
                f"{host} has no {'IPv4' if claim_v4 else 'IPv6'} address to connect to from"
                f" the claimed source {ip_text(claim)} (--ip)"
            )
        knock = knock_for(claimed[0], any_family=True)
        if knock is None:
            raise AddressError("The ruroco server has no address to knock at")
        return [Route(knock, claimed[0])], []
    routes: list[Route] = []
    skipped: list[str] = []
    for target in firsts:
        knock = knock_for(target, any_family=False)
        if knock is None:
            skipped.append(family_name(target))
        else:
            routes.append(Route(knock, target))
    if not routes:
        have = " and ".join(family_name(t) for t in firsts)
        raise AddressError(
            f"Cannot knock over the address family {host} is reached by: {host} has {have}"
            " addresses only, the ruroco server (-a) none of that family (knock at an address"
            " of that family, or claim the source with -i)"
        )
    return routes, skipped


class Knocker:
    """Sends one knock per route with fresh counters; holds the client lock only for the
    counter update and the sends, never while waiting or relaying."""

    def __init__(
        self,
        request: ConnectRequest,
        conf_dir: str,
        key: Key,
        routes: list[Route],
        say: Say,
    ) -> None:
        self.request, self.conf_dir, self.key, self.routes, self.say = (
            request,
            conf_dir,
            key,
            routes,
            say,
        )
        self.cmd_hash = command_hash(request.command)
        self.src_ip = None if request.ip is None else parse_ip(request.ip)
        self.sent = 0
        self.rounds = 0
        self.failed: list[str] = []

    def knock(self, lock_wait: float) -> None:
        """One knock per route with fresh counters. The datagrams go out while the client lock
        is held (a sendto each, microseconds): parallel runs on one conf dir then reach a
        server in counter order, so none is refused as older than a later one that overtook
        it (docs/connect.md, "The client lock"). What to say is said after the release."""
        said: list[str] = []
        with client_lock(self.conf_dir).acquire(max(lock_wait, MIN_LOCK_WAIT_S)):
            counter = Counter.create_and_init(counter_path(self.conf_dir), time.time_ns())
            first = counter.take(len(self.routes))
            for i, route in enumerate(self.routes):
                said.append(self._send(route, first + i))
        self.rounds += 1
        for line in said:
            self.say(line)

    def _send(self, route: Route, value: int) -> str:
        data = ClientData(
            self.cmd_hash, value, not self.request.permissive, self.src_ip, route.knock.ip
        )
        try:
            packet = build_packet(self.key, data, None, self.request.protocol)
            local = send_datagram(route.knock, packet)
        except RurocoError as exc:
            reason = ": ".join(error_chain(exc))
            self.failed.append(reason)
            return f"Could not knock over {family_name(route.knock)}: {reason}"
        self.sent += 1
        return (
            f"Knocked {self.request.command} over {family_name(route.knock)} with counter"
            f" {value} from {local} to udp://{route.knock.text}, for {route.target.text}"
        )


class Attempt:
    __slots__ = ("route", "sock")

    def __init__(self, route: Route, sock: socket.socket) -> None:
        self.route = route
        self.sock = sock


def _start_connect(route: Route) -> socket.socket | None:
    sock = socket.socket(route.target.family, socket.SOCK_STREAM)
    sock.setblocking(False)
    err = sock.connect_ex(route.target.sockaddr())
    if err in (0, errno.EINPROGRESS):
        return sock
    sock.close()
    return None


def wait_open(
    knocker: Knocker, request: ConnectRequest, start: float
) -> tuple[socket.socket, Route]:
    """Knock, connect, knock again every ``interval``; the first completed connection."""
    deadline = start + request.timeout
    poller = select.poll()
    pending: dict[int, Attempt] = {}
    last_error = NO_ANSWER
    next_knock = next_try = time.monotonic()
    step = 0.0
    try:
        while True:
            now = time.monotonic()
            if now >= deadline:
                break
            if now >= next_knock:
                knocker.knock(deadline - now)
                now = time.monotonic()
                next_knock, next_try, step = now + request.interval, now, FIRST_STEP_S
            if now >= next_try:
                for route in knocker.routes:
                    sock = _start_connect(route)
                    if sock is None:
                        continue
                    pending[sock.fileno()] = Attempt(route, sock)
                    poller.register(sock.fileno(), select.POLLOUT)
                    mine = [fd for fd, a in pending.items() if a.route is route]
                    if len(mine) > MAX_PENDING:
                        poller.unregister(mine[0])
                        pending.pop(mine[0]).sock.close()
                next_try, step = now + step, min(step * 2, MAX_STEP_S)
            wait = max(0.0, min(next_knock, next_try, deadline) - time.monotonic())
            for fd, _event in poller.poll(wait * 1000):
                attempt = pending.pop(fd)
                poller.unregister(fd)
                err = attempt.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err == 0:
                    attempt.sock.setblocking(True)
                    return attempt.sock, attempt.route
                last_error = os.strerror(err).lower()
                attempt.sock.close()
    finally:
        for attempt in pending.values():
            attempt.sock.close()
    raise RurocoError(_gave_up(knocker, request, time.monotonic() - start, last_error))


def _knocks(n: int) -> str:
    return f"{n} knock" if n == 1 else f"{n} knocks"


def _gave_up(knocker: Knocker, request: ConnectRequest, waited: float, last: str) -> str:
    """The one line of a run whose port never opened: knocks, families, time, last answer."""
    targets = " or ".join(r.target.text for r in knocker.routes)
    families = " and ".join(family_name(r.knock) for r in knocker.routes)
    sent = f"{_knocks(knocker.sent)} over {families}"
    lost = len(knocker.failed)
    failed = f", {lost} could not be sent ({knocker.failed[-1]})" if lost else ""
    line = (
        f"No TCP connection to {targets} after {sent}{failed} in {waited:.1f}s"
        f" (--timeout {request.timeout:g}, --interval {request.interval:g}; last try: {last})"
    )
    if last == NO_ANSWER and knocker.sent > lost:
        # The guard never opened. The server answers nothing, so the client cannot tell a lost
        # knock from a refused one; say where the reason is, and name the refusal operators
        # meet most: a key new to a server refuses counters older than its start
        # (docs/connect.md, "When the port never opens").
        line += (
            "; the server's log says whether it refused the knocks"
            " (`is on blocklist` there for a key new to it means: run `ruroco-client reseed`)"
        )
    return line


FDPASS_OUTPUT = (
    "--fdpass needs a Unix socket as standard output, which ssh gives with ProxyUseFdpass yes"
)


def check_fdpass_output(out_fd: int = 1) -> None:
    """Refuse ``--fdpass`` before the first knock when standard output cannot take the
    socket: later, the server would have run the command for a connection never used."""
    try:
        out = socket.socket(fileno=out_fd)  # family detected from the descriptor
    except OSError:
        raise RurocoError(FDPASS_OUTPUT) from None
    family = out.family
    out.detach()
    if family != socket.AF_UNIX:
        raise RurocoError(FDPASS_OUTPUT)


def pass_fd(sock: socket.socket, out_fd: int = 1) -> None:
    """Hand ``sock`` to ssh (``ProxyUseFdpass yes``): one byte with the descriptor attached,
    on the Unix socket ssh gave as stdout, which is what ssh's ``mm_receive_fd`` reads."""
    try:
        out = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0, out_fd)
    except OSError as exc:
        raise RurocoError(FDPASS_OUTPUT) from exc
    try:
        fd_bytes = sock.fileno().to_bytes(4, sys.byteorder)
        out.sendmsg([b"\0"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fd_bytes)])
    except OSError as exc:
        raise RurocoError(
            "--fdpass could not hand over the connection (standard output must be the Unix"
            " socket ssh gives with ProxyUseFdpass yes)"
        ) from exc
    finally:
        out.detach()
        sock.close()


def _pump(src: int, dst: int, sock: socket.socket, to_socket: bool) -> None:
    """Move bytes ``src`` → ``dst`` until EOF with plain reads and writes (not ``splice``:
    docs/connect.md, Relay)."""
    while True:
        data = os.read(src, CHUNK) if to_socket else sock.recv(CHUNK)
        if not data:
            return
        if to_socket:
            sock.sendall(data)
        else:
            view = memoryview(data)
            while view:
                view = view[os.write(dst, view) :]


def _upstream(sock: socket.socket, in_fd: int) -> None:
    """stdin → socket; at EOF the socket's sending side is shut (the peer sees EOF too)."""
    try:  # noqa: SIM105 - contextlib would cost the client's cold start ~3 ms
        _pump(in_fd, sock.fileno(), sock, to_socket=True)
    except OSError:
        pass  # the peer went away: the other direction sees it
    try:  # noqa: SIM105
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def _widen_pipes(*fds: int) -> None:
    """Give pipes 1 MiB instead of 64 KiB (``F_SETPIPE_SZ``): fewer, larger reads and
    writes per megabyte relayed; not a pipe, or not allowed: left as it is."""
    import fcntl

    for fd in fds:
        try:  # noqa: SIM105 - contextlib would cost the client's cold start ~3 ms
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:
            pass


def relay(sock: socket.socket, in_fd: int = 0, out_fd: int = 1) -> None:
    """Relay until the connection ends: stdin → socket in a thread, socket → stdout here.

    EOF on stdin half-closes the connection and the relay goes on until the peer closes
    (``nc -N``); the peer closing ends it at once. A reader of stdout that went away (ssh
    exited) ends it quietly; a connection reset is an error.
    """
    import _thread

    _widen_pipes(in_fd, out_fd)
    _thread.start_new_thread(_upstream, (sock, in_fd))
    try:
        _pump(sock.fileno(), out_fd, sock, to_socket=False)
    except BrokenPipeError:
        return
    except OSError as exc:
        raise RurocoError(f"Connection lost: {os_reason(exc)}") from None


def _sayer(verbose: bool) -> Say:
    def say(message: str) -> None:
        if verbose:
            try:
                sys.stderr.write(log.format_line("INFO", message))
                sys.stderr.flush()
            except (OSError, ValueError):
                pass

    return say


def _server_destinations(request: ConnectRequest) -> list[Destination] | None:
    if request.address is None:
        return None
    return resolve(ensure_port(request.address))


def claimed_ip(request: ConnectRequest) -> bytes | None:
    """The wire form of ``--ip``, or None; a malformed one is an error."""
    if request.ip is None:
        return None
    try:
        return parse_ip(request.ip)
    except ValueError as exc:
        raise RurocoError(f"Invalid --ip value {qpath(request.ip)}") from exc


def knock_until_open(
    request: ConnectRequest,
    directory: str,
    key: Key,
    claim: bytes | None,
    say: Say,
    start: float,
) -> tuple[socket.socket, Route, Knocker]:
    """``connect`` without the relay: knock until ``HOST:PORT`` accepts (or raise after
    ``request.timeout`` from ``start``); the connected socket, its route and the knocker.
    Also used by the terminal UI to wait for a port (docs/ui.md)."""
    targets = resolve(f"{target_address(request.host)}:{request.port}")
    servers = _server_destinations(request)
    knock_port = DEFAULT_KNOCK_PORT if request.knock_port is None else request.knock_port
    routes, skipped = plan_routes(
        request.host, targets, servers, request.ipv4, request.ipv6, claim, knock_port
    )
    families = " and ".join(family_name(r.target) for r in routes)
    say(
        f"{request.host} is [{', '.join(t.text for t in targets)}]; knocking and connecting"
        f" over {families}"
        + (f" ({' and '.join(skipped)} left out: no server address)" if skipped else "")
    )
    knocker = Knocker(request, directory, key, routes, say)
    sock, route = wait_open(knocker, request, start)
    return sock, route, knocker


def connect(request: ConnectRequest, conf_dir: str | os.PathLike[str] | None = None) -> None:
    """Knock until ``HOST:PORT`` accepts, then relay (or hand the socket over)."""
    start = time.monotonic()
    say = _sayer(request.verbose or log.debug_enabled())
    if request.address is not None:
        ensure_port(request.address)  # a malformed -a fails before anything else, as in send
    if request.fdpass:
        check_fdpass_output()
    claim = claimed_ip(request)
    key_text = read_key_text(SendRequest("", key_file=request.key_file))
    key = parse_key(key_text)
    del key_text
    try:
        directory = resolve_conf_dir() if conf_dir is None else ensure_conf_dir(conf_dir)
        sock, route, knocker = knock_until_open(request, directory, key, claim, say, start)
    finally:
        key.wipe()
    say(
        f"Connected to {route.target.text} over {family_name(route.target)} after"
        f" {(time.monotonic() - start) * 1000:.0f} ms ({_knocks(knocker.sent)})"
    )
    if request.fdpass:
        pass_fd(sock)
    else:
        relay(sock)
