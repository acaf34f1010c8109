"""Destination addresses for ``send``: normalization, resolution, selection.

``ensure_port`` rejects malformed input before any DNS traffic, and resolution returns the
exact socket addresses the datagrams go to, so the ``dst_ip`` inside each packet is the
address the kernel sends to (the hostname is never resolved twice). IP literals go through
``ruroco.ipaddr.parse_ip`` (``inet_pton``) rather than ``ipaddress``, which keeps the client's
cold start short.
"""

from __future__ import annotations

import _socket as socket  # see ruroco.ipaddr: socket.py's imports cost ~8 ms of cold start

from ruroco.errors import RurocoError, qpath
from ruroco.ipaddr import MAPPED_PREFIX, ip_text, parse_ip
from ruroco.limits import U16_MAX

DEFAULT_PORT = 80
_CONTROL = {i: f"\\u{{{i:x}}}" for i in range(32)} | {
    9: "\\t",
    10: "\\n",
    13: "\\r",
    127: "\\u{7f}",
}


class AddressError(RurocoError):
    """An address that cannot be normalized, resolved or has no usable family."""


def _debug_str(value: str) -> str:
    """Rust ``{:?}`` of a string: quoted, with control characters escaped (one-line errors)."""
    return qpath(value).translate(_CONTROL)


def _invalid_address(address: str) -> AddressError:
    return AddressError(
        f'Invalid address {_debug_str(address)}, expected "host", "host:port", "ip" or "ip:port"'
    )


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _socket_port(text: str) -> int | None:
    """Port of a Rust ``SocketAddr`` literal: ASCII digits only (leading zeros allowed)."""
    if not _digits(text):
        return None
    port = int(text)
    return port if port <= U16_MAX else None


def _u16(text: str) -> int | None:
    """Rust ``u16::from_str``: optional leading ``+``, then ASCII digits, in range."""
    return _socket_port(text[1:] if text.startswith("+") else text)


def v6_text(ip: bytes) -> str:
    """IPv6 text as Rust prints it: RFC 5952, but ``::ffff:a.b.c.d`` for mapped addresses."""
    if ip[:12] == MAPPED_PREFIX:
        return "::ffff:" + socket.inet_ntop(socket.AF_INET, ip[12:])
    return ip_text(ip)  # never mapped here, so ip_text gives the plain IPv6 form


class Destination:
    """One resolved socket address: where a datagram goes and what its ``dst_ip`` says."""

    __slots__ = ("family", "ip", "port", "scope_id", "text")

    def __init__(self, ip: bytes, port: int, v4: bool, scope_id: int = 0) -> None:
        self.family = socket.AF_INET if v4 else socket.AF_INET6
        self.ip = ip  # 16-byte wire form (scope dropped), as carried in the packet
        self.port = port
        self.scope_id = scope_id
        if v4:
            self.text = f"{socket.inet_ntop(socket.AF_INET, ip[12:])}:{port}"
        else:
            scope = f"%{scope_id}" if scope_id else ""
            self.text = f"[{v6_text(ip)}{scope}]:{port}"

    @property
    def is_ipv4(self) -> bool:
        return self.family == socket.AF_INET

    def sockaddr(self) -> tuple[str, int] | tuple[str, int, int, int]:
        if self.is_ipv4:
            return (socket.inet_ntop(socket.AF_INET, self.ip[12:]), self.port)
        return (socket.inet_ntop(socket.AF_INET6, self.ip), self.port, 0, self.scope_id)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Destination):
            return NotImplemented
        return (self.family, self.ip, self.port, self.scope_id) == (
            other.family,
            other.ip,
            other.port,
            other.scope_id,
        )

    def __hash__(self) -> int:
        return hash((self.family, self.ip, self.port, self.scope_id))

    def __repr__(self) -> str:
        return self.text


def parse_socket_addr(text: str) -> Destination | None:
    """A Rust ``SocketAddr`` literal (``1.2.3.4:80``, ``[::1]:80``, ``[fe80::1%2]:80``) or None."""
    if text.startswith("["):
        inner, sep, port_text = text[1:].partition("]:")
        if not sep:
            return None
        host, pct, scope_text = inner.partition("%")
        if pct and not _digits(scope_text):
            return None
        scope = int(scope_text) if pct else 0
        port = _socket_port(port_text)
        if port is None or scope > 0xFFFFFFFF or not host.isascii():
            return None
        try:
            ip = socket.inet_pton(socket.AF_INET6, host)
        except (OSError, ValueError):
            return None
        return Destination(ip, port, v4=False, scope_id=scope)
    host, sep, port_text = text.rpartition(":")
    if not sep or ":" in host or not host.isascii():
        return None
    port = _socket_port(port_text)
    if port is None:
        return None
    try:
        ip = MAPPED_PREFIX + socket.inet_pton(socket.AF_INET, host)
    except (OSError, ValueError):
        return None
    return Destination(ip, port, v4=True)


def ensure_port(address: str) -> str:
    """Normalize ``--address`` to ``host:port`` (default port 80) or raise ``AddressError``.

    Port 0 is refused (the original takes it): nothing can receive a packet sent there, and
    the send used up a counter value for it."""
    literal = parse_socket_addr(address)
    if literal is not None:
        if literal.port == 0:
            raise _invalid_port(address.rpartition(":")[2], address)
        return address
    try:
        ip = parse_ip(address)
    except ValueError:
        pass
    else:
        if ip[:12] == MAPPED_PREFIX and ":" not in address:
            return f"{address}:{DEFAULT_PORT}"
        return f"[{v6_text(ip)}]:{DEFAULT_PORT}"
    host, sep, port_text = address.rpartition(":")
    if not sep:
        if address:
            return f"{address}:{DEFAULT_PORT}"
        raise _invalid_address(address)
    if host and ":" not in host:
        if not _u16(port_text):  # None (not a port) or 0
            raise _invalid_port(port_text, address)
        return address
    raise _invalid_address(address)


def _invalid_port(port_text: str, address: str) -> AddressError:
    return AddressError(f"Invalid port {_debug_str(port_text)} in address {_debug_str(address)}")


def _not_resolved(address: str) -> AddressError:
    return AddressError(f"Could not resolve hostname for {address}")


def resolve(address: str) -> list[Destination]:
    """All socket addresses for a normalized address, in resolver order.

    Literals are used as they are; host names go to getaddrinfo with a SOCK_STREAM hint (one
    entry per address). The host is passed as raw UTF-8 bytes, as the original does, which
    also skips Python's IDNA codec and its import cost.
    """
    literal = parse_socket_addr(address)
    if literal is not None:
        return [literal]
    host, sep, port_text = address.rpartition(":")
    port = _u16(port_text) if sep else None
    if port is None or not host:
        raise _not_resolved(address)
    try:
        return [Destination(parse_ip(host), port, v4=True)]  # "1.2.3.4:+80" and the like
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host.encode("utf-8"), port, 0, socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError) as exc:
        raise _not_resolved(address) from exc
    out: list[Destination] = []
    for fam, _type, _proto, _name, sockaddr in infos:
        if fam == socket.AF_INET and len(sockaddr) == 2 and isinstance(sockaddr[0], str):
            out.append(Destination(parse_ip(sockaddr[0]), int(sockaddr[1]), v4=True))
        elif fam == socket.AF_INET6 and len(sockaddr) == 4:
            ip = socket.inet_pton(socket.AF_INET6, sockaddr[0].partition("%")[0])
            out.append(Destination(ip, sockaddr[1], v4=False, scope_id=sockaddr[3]))
    return out


def select(
    found: list[Destination], address: str, ipv4: bool = False, ipv6: bool = False
) -> list[Destination]:
    """First IPv4 then first IPv6 (at most two); ``-4``/``-6`` alone restrict the family."""
    v4 = next((d for d in found if d.is_ipv4), None)
    v6 = next((d for d in found if not d.is_ipv4), None)
    if ipv4 and not ipv6:
        if v4 is None:
            raise AddressError(f"Could not find any IPv4 address for {address}")
        return [v4]
    if ipv6 and not ipv4:
        if v6 is None:
            raise AddressError(f"Could not find any IPv6 address for {address}")
        return [v6]
    chosen = [d for d in (v4, v6) if d is not None]
    if not chosen:
        raise AddressError(f"Could not find any IPv4 or IPv6 address for {address}")
    return chosen


def destinations(address: str, ipv4: bool = False, ipv6: bool = False) -> list[Destination]:
    """Resolve a normalized address and pick the datagrams' destinations."""
    return select(resolve(address), address, ipv4, ipv6)
