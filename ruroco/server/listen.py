"""Which UDP socket the server reads from; the first matching rule wins.

1. an explicit address (library callers only), 2. ``RUROCO_LISTEN_ADDRESS``,
3. systemd socket activation (``LISTEN_PID`` and ``LISTEN_FDS`` both set: adopt fd 3),
4. ``address`` from config.toml, 5. ``[::]:34020``.

Under socket activation nothing is ever bound: the shipped unit allows only AF_UNIX
sockets to be created, and the listening port belongs to the ``.socket`` unit.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, Sequence

from ruroco import log
from ruroco.errors import RurocoError, os_reason, qpath
from ruroco.limits import U16_MAX, U32_MAX

FALLBACK_ADDRESS = "[::]:34020"
SD_LISTEN_FDS_START = 3


class ListenError(RurocoError):
    """No usable UDP socket."""


def _split(address: str) -> tuple[str, int]:
    """``host:port`` the way Rust's ``ToSocketAddrs for &str`` (the original's bind) reads it.

    First a socket address literal, ``[v6]:port`` or ``[v6%scope]:port`` (the port digits
    only); else the text after the last colon is the port (a Rust u16: digits, ``+`` allowed)
    and the text before it a host for getaddrinfo, so ``::1:34020``, ``:::34020`` and
    ``127.0.0.1:+34020`` bind as they do in the original (IPv4 literals take this path too).
    The host ``*`` is refused: with a port, glibc reads it as no host and returns loopback,
    while the original, which resolves the host alone, refuses it.
    """
    literal = _bracketed(address)
    if literal is not None:
        return literal
    host, sep, port_text = address.rpartition(":")
    if not sep:
        raise ValueError("invalid socket address")
    digits = port_text.removeprefix("+")
    if not (digits.isascii() and digits.isdigit()) or int(digits) > U16_MAX:
        raise ValueError("invalid port value")
    port = int(digits)
    if host == "*":
        raise ValueError(f'"*" is not an address (every address: "[::]:{port}")')
    if not host or "[" in host or "]" in host:  # no name getaddrinfo would find
        raise ValueError("invalid socket address")
    return host, port


def _bracketed(address: str) -> tuple[str, int] | None:
    """``[v6]:port`` / ``[v6%scope]:port`` as Rust's ``SocketAddrV6::from_str``, or None."""
    inside, sep, port_text = address.removeprefix("[").partition("]:")
    if not (address.startswith("[") and sep and port_text.isascii() and port_text.isdigit()):
        return None
    ip, percent, scope = inside.partition("%")
    if percent and not (scope.isascii() and scope.isdigit() and int(scope) <= U32_MAX):
        return None
    try:
        socket.inet_pton(socket.AF_INET6, ip)
    except OSError:
        return None
    port = int(port_text)
    return (inside, port) if port <= U16_MAX else None


# What getaddrinfo returns: (family, type, proto, canonname, sockaddr).
_AddrInfo = tuple[
    socket.AddressFamily,
    socket.SocketKind,
    int,
    str,
    tuple[str, int] | tuple[str, int, int, int] | tuple[int, bytes],
]


def _resolve(address: str) -> Sequence[_AddrInfo]:
    try:
        host, port = _split(address)
        return socket.getaddrinfo(host, port, 0, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    except (ValueError, OSError, UnicodeError) as exc:
        raise ListenError(f"Could not UdpSocket bind {qpath(address)}: {os_reason(exc)}") from None


def check_address(address: str) -> None:
    """What ``bind_udp`` would refuse before binding: syntax, port range, name resolution."""
    _resolve(address)


def bind_udp(address: str) -> socket.socket:
    """Resolve ``address`` and bind the first candidate that works (as Rust's ``bind`` does)."""
    candidates = _resolve(address)
    last: Exception | None = None
    for family, socktype, proto, _name, sockaddr in candidates:
        try:  # creating the socket fails too, e.g. under RestrictAddressFamilies=AF_UNIX
            sock = socket.socket(family, socktype, proto)
        except OSError as exc:
            last = exc
            continue
        try:
            sock.bind(sockaddr)
        except OSError as exc:
            sock.close()
            last = exc
            continue
        return sock
    raise ListenError(
        f"Could not UdpSocket bind {qpath(address)}: "
        + (os_reason(last) if last else "could not resolve to any address")
    )


def adopt_systemd_socket(fd: int = SD_LISTEN_FDS_START) -> socket.socket:
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise ListenError(
            f"Could not use file descriptor {fd} from systemd socket activation: {os_reason(exc)}"
        ) from None
    if sock.type != socket.SOCK_DGRAM:
        sock.detach()
        raise ListenError(
            f"File descriptor {fd} from systemd socket activation is not a datagram socket"
        )
    return sock


def select_socket(
    config_address: str | None,
    explicit: str | None = None,
    env: Mapping[str, str] | None = None,
    pid: int | None = None,
) -> socket.socket:
    """Apply the precedence rules; logs which rule chose the socket."""
    env = os.environ if env is None else env
    if explicit is not None:
        log.info(f"UdpSocket bind to {explicit} - argument")
        return bind_udp(explicit)
    env_address = env.get("RUROCO_LISTEN_ADDRESS")
    if env_address is not None:
        log.info(f"UdpSocket bind to {env_address} - RUROCO_LISTEN_ADDRESS")
        return bind_udp(env_address)
    listen_pid = env.get("LISTEN_PID")
    listen_fds = env.get("LISTEN_FDS")
    if listen_pid is not None and listen_fds is not None:
        if listen_fds != "1":
            raise ListenError(f"LISTEN_FDS was set to {listen_fds}, expected 1")
        own = os.getpid() if pid is None else pid
        if listen_pid != str(own):
            raise ListenError(f"LISTEN_PID ({listen_pid}) does not match current PID")
        log.info(f"UdpSocket from_raw_fd {SD_LISTEN_FDS_START} (systemd socket activation)")
        return adopt_systemd_socket()
    if config_address is not None:
        log.info(f"UdpSocket bind to {config_address} - config.toml address")
        return bind_udp(config_address)
    log.info(f"UdpSocket bind to {FALLBACK_ADDRESS} - fallback")
    return bind_udp(FALLBACK_ADDRESS)
