"""IP addresses as their 16-byte wire form (docs/protocol.md, IP addresses).

The wire encodes IPv4 as IPv4-mapped IPv6 (``::ffff:a.b.c.d``), and the original normalizes
mapped addresses to IPv4 everywhere it compares or prints them. Keeping every address as
those 16 bytes makes normalization implicit: ``1.2.3.4`` and ``::ffff:1.2.3.4`` are the same
value, so comparisons are plain byte equality. ``socket.inet_pton`` gives exactly the strict
literal rules the original uses (dotted quad without leading zeros, no ``%zone``) and keeps
``ipaddress`` off the client's start-up path.
"""

from __future__ import annotations

# _socket holds the very functions socket.py re-exports; socket.py itself would add its enum,
# selectors and collections imports (~8 ms) to the client's cold start.
import _socket as socket

MAPPED_PREFIX = b"\x00" * 10 + b"\xff\xff"
UNSPECIFIED = bytes(16)


def parse_ip(text: str) -> bytes:
    """Strict IP literal → 16 bytes; ``ValueError`` for anything else (CIDR, brackets, zone)."""
    if not isinstance(text, str) or "%" in text or not text.isascii():
        raise ValueError("invalid IP address syntax")
    try:
        return MAPPED_PREFIX + socket.inet_pton(socket.AF_INET, text)
    except OSError:
        pass
    try:
        return socket.inet_pton(socket.AF_INET6, text)
    except OSError:
        raise ValueError("invalid IP address syntax") from None


def ip_text(ip: bytes) -> str:
    """Normalized text: dotted quad for (mapped) IPv4, RFC 5952 for IPv6 (as Rust prints)."""
    if ip[:12] == MAPPED_PREFIX:
        return socket.inet_ntop(socket.AF_INET, ip[12:])
    text = socket.inet_ntop(socket.AF_INET6, ip)
    if "." in text:
        # glibc prints IPv4-compatible addresses (::a.b.c.d) with a dotted tail; Rust and
        # RFC 5952 use hex groups.
        return f"::{int.from_bytes(ip[12:14], 'big'):x}:{int.from_bytes(ip[14:16], 'big'):x}"
    return text


def ip_list_text(ips: list[bytes] | tuple[bytes, ...]) -> str:
    """``[127.0.0.1, ::1]``: the list form used in log lines."""
    return "[" + ", ".join(ip_text(ip) for ip in ips) + "]"
