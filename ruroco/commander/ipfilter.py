"""Refuse non-routable IPs so a client cannot point a command at the host itself.

The ranges are exactly the original's; ``ipaddress.is_private``/``is_global`` use different
sets and must not be substituted. Addresses are the 16-byte wire form of ``ruroco.ipaddr``,
so IPv4 ranges live inside ``::ffff:0:0/96`` and IPv4-mapped input needs no normalization.
"""

from __future__ import annotations

from ruroco.ipaddr import parse_ip

_IPV4 = (
    "0.0.0.0/8",  # "this network", includes unspecified 0.0.0.0
    "10.0.0.0/8",
    "100.64.0.0/10",  # shared / CGNAT
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",  # IETF protocol assignments
    "192.0.2.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",  # benchmarking
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",  # multicast
    "240.0.0.0/4",  # reserved, includes broadcast 255.255.255.255
)
_IPV6 = (
    "::/128",
    "::1/128",
    "fc00::/7",  # unique local
    "fe80::/10",  # unicast link-local
    "ff00::/8",  # multicast
    "2001:db8::/32",  # documentation
)


def _network(cidr: str, offset: int) -> tuple[int, int]:
    """``(shift, prefix value)`` of a CIDR in 128-bit space; IPv4 lengths get ``offset`` = 96."""
    addr, length = cidr.split("/")
    shift = 128 - (int(length) + offset)
    return shift, int.from_bytes(parse_ip(addr), "big") >> shift


_NETWORKS = tuple(_network(c, 96) for c in _IPV4) + tuple(_network(c, 0) for c in _IPV6)


def is_non_routable(ip: bytes) -> bool:
    """True when ``ip`` (16 bytes) falls in one of the refused ranges."""
    value = int.from_bytes(ip, "big")
    return any(value >> shift == prefix for shift, prefix in _NETWORKS)
