"""IP filter: exactly the original's ranges, on the 16-byte wire form."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ruroco.commander.ipfilter import is_non_routable
from ruroco.ipaddr import parse_ip

REJECTED = [
    "0.0.0.0",
    "::",
    "127.0.0.1",
    "::1",
    "10.0.0.1",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.1.1",
    "fe80::1",
    "fc00::1",
    "fd00::1",
    "224.0.0.1",
    "ff02::1",
    "192.0.2.1",
    "198.51.100.1",
    "203.0.113.1",
    "255.255.255.255",
    "0.1.2.3",
    "100.64.0.1",
    "100.127.255.254",
    "192.0.0.1",
    "198.18.0.1",
    "198.19.255.254",
    "240.0.0.1",
    "2001:db8::1",
]
ALLOWED = [
    "1.2.3.4",
    "8.8.8.8",
    "2606:4700:4700::1111",
    "100.63.255.255",
    "100.128.0.1",
    "198.17.255.255",
    "198.20.0.1",
]
# Not in the original's list, so allowed too (ipaddress.is_private would refuse several).
ALLOWED_EXTRA = [
    "fec0::1",
    "64:ff9b::1",
    "2001::1",
    "100::1",
    "::1.2.3.4",
    "::2",
    "172.15.255.255",
    "172.32.0.0",
    "11.0.0.0",
    "126.255.255.255",
    "128.0.0.0",
    "169.253.255.255",
    "169.255.0.0",
    "192.0.1.255",
    "192.0.3.0",
    "192.167.255.255",
    "192.169.0.0",
    "223.255.255.255",
    "fbff:ffff::1",
    "fe00::1",
    "fec0::",
    "2001:db9::1",
    "2001:db7:ffff::1",
    "feff::1",
]
REJECTED_EXTRA = ["::ffff:127.0.0.1", "::ffff:10.1.2.3", "febf:ffff::1", "ff00::", "0.255.255.255"]


@pytest.mark.parametrize("ip", REJECTED + REJECTED_EXTRA)
def test_rejected(ip: str) -> None:
    assert is_non_routable(parse_ip(ip))


@pytest.mark.parametrize("ip", ALLOWED + ALLOWED_EXTRA)
def test_allowed(ip: str) -> None:
    assert not is_non_routable(parse_ip(ip))


_V4 = [
    ipaddress.ip_network(n)
    for n in [
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
    ]
]
_V6 = [
    ipaddress.ip_network(n)
    for n in ["::/128", "::1/128", "fc00::/7", "fe80::/10", "ff00::/8", "2001:db8::/32"]
]


def _reference(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    nets = _V4 if isinstance(ip, ipaddress.IPv4Address) else _V6
    return any(ip in net for net in nets)


@given(st.ip_addresses())
def test_matches_range_table(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    assert is_non_routable(parse_ip(str(ip))) == _reference(ip)


@given(st.ip_addresses(v=4))
def test_mapped_ipv6_same_as_ipv4(ip: ipaddress.IPv4Address) -> None:
    assert is_non_routable(parse_ip(f"::ffff:{ip}")) == is_non_routable(parse_ip(str(ip)))
