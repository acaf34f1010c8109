"""Address normalization, resolution and destination selection."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ruroco.client.address import (
    AddressError,
    Destination,
    destinations,
    ensure_port,
    parse_socket_addr,
    resolve,
    select,
)
from ruroco.errors import RurocoError
from ruroco.ipaddr import parse_ip

EXPECTED_FORMS = '"host", "host:port", "ip" or "ip:port"'


@pytest.mark.parametrize(
    ("given_address", "expected"),
    [
        ("127.0.0.1", "127.0.0.1:80"),
        ("127.0.0.1:1234", "127.0.0.1:1234"),
        ("::1", "[::1]:80"),
        ("[::1]:1234", "[::1]:1234"),
        ("::ffff:1.2.3.4", "[::ffff:1.2.3.4]:80"),
        ("[::ffff:127.0.0.1]:1234", "[::ffff:127.0.0.1]:1234"),
        ("2001:DB8:0:0:0:0:0:1", "[2001:db8::1]:80"),
        ("::1.2.3.4", "[::102:304]:80"),
        ("[fe80::1%2]:80", "[fe80::1%2]:80"),
        ("schempp.dev", "schempp.dev:80"),
        ("example.org:443", "example.org:443"),
        ("localhost", "localhost:80"),
        ("01.2.3.4", "01.2.3.4:80"),  # not an IP (leading zero): a host name
        ("x:+80", "x:+80"),
        ("x:0080", "x:0080"),
        ("999.999.999.999:9999", "999.999.999.999:9999"),
    ],
)
def test_ensure_port_table(given_address: str, expected: str) -> None:
    assert ensure_port(given_address) == expected


@pytest.mark.parametrize(
    ("bad", "port"),
    [
        ("127.0.0.1:asd", "asd"),
        ("x:65536", "65536"),
        ("x:", ""),
        ("x:-1", "-1"),
        ("x: 80", " 80"),
        # port 0: nothing receives there (the original took it and used up a counter value)
        ("127.0.0.1:0", "0"),
        ("[::1]:0", "0"),
        ("x:0", "0"),
        ("x:+000", "+000"),
    ],
)
def test_invalid_port(bad: str, port: str) -> None:
    with pytest.raises(AddressError) as info:
        ensure_port(bad)
    assert str(info.value) == f'Invalid port "{port}" in address "{bad}"'


@pytest.mark.parametrize(
    "bad", ["[::1]", "", ":80", "a:b:c", "::1:80:x", "fe80::1%eth0", "[::1]:", "[::1]:x"]
)
def test_invalid_address(bad: str) -> None:
    with pytest.raises(AddressError) as info:
        ensure_port(bad)
    assert str(info.value) == f'Invalid address "{bad}", expected {EXPECTED_FORMS}'


def test_invalid_address_message_stays_on_one_line() -> None:
    with pytest.raises(AddressError) as info:
        ensure_port("a\nb:c:d")
    assert "\n" not in str(info.value)
    assert '"a\\nb:c:d"' in str(info.value)


@settings(deadline=None)
@given(st.text(max_size=80))
def test_ensure_port_only_raises_ruroco_errors(text: str) -> None:
    try:
        out = ensure_port(text)
    except RurocoError as exc:
        assert "\n" not in str(exc)
    else:
        assert ":" in out
        assert ensure_port(out) == out  # normalization is idempotent


@settings(deadline=None)
@given(
    st.text(
        alphabet=st.sampled_from("0123456789abcdef:.[]%+- xyz"),
        max_size=40,
    )
)
def test_ensure_port_only_raises_ruroco_errors_address_like(text: str) -> None:
    with contextlib.suppress(RurocoError):
        ensure_port(text)


@settings(deadline=None)
@given(st.ip_addresses(), st.integers(min_value=1, max_value=65535))
def test_every_ip_with_port_is_kept_and_resolves_to_itself(ip: object, port: int) -> None:
    text = f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"  # type: ignore[attr-defined]
    assert ensure_port(text) == text
    [dest] = resolve(text)
    assert dest.ip == parse_ip(str(ip))
    assert dest.port == port
    assert dest.is_ipv4 == (ip.version == 4)  # type: ignore[attr-defined]


@settings(deadline=None)
@given(st.ip_addresses())
def test_bare_ips_get_port_80(ip: object) -> None:
    out = ensure_port(str(ip))
    assert out.endswith(":80")
    [dest] = resolve(out)
    assert dest.ip == parse_ip(str(ip)) and dest.port == 80


def test_literal_socket_addresses() -> None:
    dest = parse_socket_addr("[fe80::1%2]:80")
    assert dest is not None and dest.scope_id == 2 and dest.text == "[fe80::1%2]:80"
    assert dest.ip == parse_ip("fe80::1")
    assert parse_socket_addr("[1.2.3.4]:80") is None
    assert parse_socket_addr("1.2.3.4:+80") is None  # Rust's SocketAddr parser has no sign
    assert parse_socket_addr("1.2.3.4:65536") is None
    mapped = parse_socket_addr("[::ffff:127.0.0.1]:1234")
    assert mapped is not None and not mapped.is_ipv4 and mapped.ip == parse_ip("127.0.0.1")


def test_resolve_unresolvable_exact_message() -> None:
    with pytest.raises(AddressError) as info:
        resolve("999.999.999.999:9999")
    assert str(info.value) == "Could not resolve hostname for 999.999.999.999:9999"


def test_resolve_host_with_sign_port() -> None:
    [dest] = resolve("127.0.0.1:+80")
    assert dest.text == "127.0.0.1:80"


def test_resolve_localhost() -> None:
    found = resolve("localhost:1234")
    assert found
    assert all(d.port == 1234 for d in found)
    assert any(d.is_ipv4 and d.ip == parse_ip("127.0.0.1") for d in found)


def test_localhost_with_families() -> None:
    assert [d.text for d in destinations("localhost:9", ipv4=True)] == ["127.0.0.1:9"]
    has_v6 = any(not d.is_ipv4 for d in resolve("localhost:9"))
    if has_v6:
        assert all(not d.is_ipv4 for d in destinations("localhost:9", ipv6=True))
    else:
        with pytest.raises(
            AddressError, match=r"^Could not find any IPv6 address for localhost:9$"
        ):
            destinations("localhost:9", ipv6=True)


def _d(text: str) -> Destination:
    dest = parse_socket_addr(text)
    assert dest is not None
    return dest


V4A, V4B = _d("10.0.0.1:80"), _d("10.0.0.2:80")
V6A, V6B = _d("[2001:db8::1]:80"), _d("[2001:db8::2]:80")


@pytest.mark.parametrize(
    ("found", "ipv4", "ipv6", "expected"),
    [
        ([V6A, V4A, V6B, V4B], False, False, [V4A, V6A]),  # IPv4 first, one of each
        ([V6A, V4A, V6B, V4B], True, True, [V4A, V6A]),  # both flags = no preference
        ([V6A, V4A], True, False, [V4A]),
        ([V6A, V4A], False, True, [V6A]),
        ([V4A, V4B], False, False, [V4A]),
        ([V6B, V6A], False, False, [V6B]),
    ],
)
def test_select(
    found: list[Destination], ipv4: bool, ipv6: bool, expected: list[Destination]
) -> None:
    assert select(found, "h:80", ipv4, ipv6) == expected


@pytest.mark.parametrize(
    ("found", "ipv4", "ipv6", "message"),
    [
        ([V6A], True, False, "Could not find any IPv4 address for h:80"),
        ([V4A], False, True, "Could not find any IPv6 address for h:80"),
        ([], False, False, "Could not find any IPv4 or IPv6 address for h:80"),
        ([], True, True, "Could not find any IPv4 or IPv6 address for h:80"),
    ],
)
def test_select_errors(found: list[Destination], ipv4: bool, ipv6: bool, message: str) -> None:
    with pytest.raises(AddressError) as info:
        select(found, "h:80", ipv4, ipv6)
    assert str(info.value) == message


def test_destinations_with_literals_and_flags() -> None:
    assert [d.text for d in destinations("127.0.0.1:1234")] == ["127.0.0.1:1234"]
    assert [d.text for d in destinations("[::1]:1234", ipv6=True)] == ["[::1]:1234"]
    with pytest.raises(AddressError, match=r"^Could not find any IPv4 address for"):
        destinations("[::1]:1234", ipv4=True)
    with pytest.raises(AddressError, match=r"^Could not find any IPv6 address for"):
        destinations("127.0.0.1:1234", ipv6=True)
    # an IPv4-mapped IPv6 literal counts as IPv6
    assert [d.text for d in destinations("[::ffff:127.0.0.1]:1234", ipv6=True)] == [
        "[::ffff:127.0.0.1]:1234"
    ]
