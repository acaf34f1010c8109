"""Strict IP literals and the 16-byte wire form (docs/protocol.md, IP addresses)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ruroco.ipaddr import MAPPED_PREFIX, ip_list_text, ip_text, parse_ip


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("::ffff:127.0.0.1", "127.0.0.1"),
        ("::1", "::1"),
        ("::", "::"),
        ("0.0.0.0", "0.0.0.0"),
        ("DEAD:beef::1", "dead:beef::1"),
        ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
        ("::1.2.3.4", "::102:304"),
        ("64:ff9b::1.2.3.4", "64:ff9b::102:304"),
    ],
)
def test_parse_and_show(text: str, shown: str) -> None:
    assert ip_text(parse_ip(text)) == shown


@pytest.mark.parametrize(
    "text",
    [
        "01.2.3.4",
        "1.2.3",
        "256.1.1.1",
        "fe80::1%eth0",
        "[::1]",
        "192.168.1.0/24",
        "",
        " 1.2.3.4",
        "not-an-ip",
        "１.2.3.4",
        "::1:",
    ],
)
def test_rejects_non_literals(text: str) -> None:
    with pytest.raises(ValueError):
        parse_ip(text)


def test_mapped_equals_ipv4() -> None:
    assert parse_ip("::ffff:1.2.3.4") == parse_ip("1.2.3.4")
    assert parse_ip("1.2.3.4")[:12] == MAPPED_PREFIX != parse_ip("::1")[:12]
    assert ip_list_text([parse_ip("127.0.0.1"), parse_ip("::1")]) == "[127.0.0.1, ::1]"


@given(st.ip_addresses())
def test_matches_ipaddress_module(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    wire = parse_ip(str(addr))
    if isinstance(addr, ipaddress.IPv4Address):
        assert wire == ipaddress.IPv6Address(f"::ffff:{addr}").packed
        assert ip_text(wire) == str(addr)
    else:
        assert wire == addr.packed
        expected = addr.ipv4_mapped or addr
        assert ip_text(wire) == str(expected)
        assert parse_ip(ip_text(wire)) == wire
