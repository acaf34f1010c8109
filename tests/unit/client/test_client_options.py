"""The fast ``send`` argv parser agrees with click wherever it accepts a command line."""

from __future__ import annotations

import click
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ruroco.client.clickcli import cli
from ruroco.client.options import SEND_OPTIONS, U64_MAX, parse_send_argv, parse_u64

SEND = cli.commands["send"]


def click_parse(argv: list[str]) -> dict[str, object] | None:
    """What click makes of ``send`` + argv, or None for a usage error."""
    try:
        with SEND.make_context("send", list(argv), resilient_parsing=False) as ctx:
            return dict(ctx.params)
    except click.exceptions.Exit:
        return None
    except click.UsageError:
        return None


def test_table_drives_click() -> None:
    names = {p.name: p for p in SEND.params}
    for opt in SEND_OPTIONS:
        param = names[opt.dest]
        assert set(param.opts) == {opt.short, opt.long}
        assert param.required == opt.required


def test_defaults() -> None:
    values = parse_send_argv(["send", "-a", "h", "-k", "k"])
    assert values == {
        "address": "h",
        "key_file": "k",
        "command": "default",
        "permissive": False,
        "ip": None,
        "ipv4": False,
        "ipv6": False,
        "send_delay_ms": 50,
    }
    assert values == click_parse(["-a", "h", "-k", "k"])


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["gen"],
        ["send"],
        ["send", "-a", "h"],
        ["send", "-a", "h", "-k", "k", "--help"],
        ["send", "-a", "h", "-k", "k", "-h"],
        ["send", "-a", "h", "-k"],
        ["send", "-a", "-k", "k"],
        ["send", "-a", "h", "-k", "k", "-a", "g"],
        ["send", "-ah", "-k", "k"],
        ["send", "-a", "h", "-k", "k", "-e4"],
        ["send", "-a", "h", "-k", "k", "--permissive=1"],
        ["send", "-a", "h", "-k", "k", "-d", "5_0"],
        ["send", "-a", "h", "-k", "k", "-d", " 5"],
        ["send", "-a", "h", "-k", "k", "positional"],
        ["send", "-a", "h", "-k", "k", "--"],
        ["send", "--key", "K", "-a", "h"],
    ],
)
def test_unusual_command_lines_go_to_click(argv: list[str]) -> None:
    assert parse_send_argv(argv) is None


@pytest.mark.parametrize(
    ("text", "value"),
    [("0", 0), ("50", 50), ("+7", 7), ("007", 7), (str(U64_MAX), U64_MAX)],
)
def test_parse_u64_accepts(text: str, value: int) -> None:
    assert parse_u64(text) == value


@pytest.mark.parametrize("text", ["", "+", "-1", "5_0", " 5", "5 ", "1e3", "٣", str(U64_MAX + 1)])
def test_parse_u64_rejects(text: str) -> None:
    assert parse_u64(text) is None


_values = st.one_of(
    st.sampled_from(["127.0.0.1:9", "[::1]:80", "h", "", "-x", "a=b", "--", "x y", "7", "+3"]),
    st.text(max_size=8),
)


@st.composite
def _argv(draw: st.DrawFn) -> list[str]:
    tokens: list[str] = []
    for opt in draw(st.lists(st.sampled_from(SEND_OPTIONS), max_size=10)):
        name = draw(st.sampled_from([opt.short, opt.long]))
        if not opt.takes_value:
            tokens.append(name)
            continue
        value = draw(
            st.one_of(_values, st.integers(0, U64_MAX + 1).map(str))
            if opt.kind == "u64"
            else _values
        )
        if name.startswith("--") and draw(st.booleans()):
            tokens.append(f"{name}={value}")
        else:
            tokens += [name, value]
    if draw(st.booleans()):
        tokens += ["-a", draw(_values)]
    if draw(st.booleans()):
        tokens += ["-k", draw(_values)]
    return tokens


@settings(max_examples=300, deadline=None)
@given(_argv())
def test_fast_parser_agrees_with_click(argv: list[str]) -> None:
    fast = parse_send_argv(["send", *argv])
    if fast is not None:
        assert fast == click_parse(argv)


@pytest.mark.parametrize(
    "argv",
    [
        ["-a", "h", "-k", "k", "-e", "-4", "-6", "-c", "x", "-i", "1.2.3.4", "-d", "0"],
        ["--address", "h", "--key-file", "k", "--permissive", "--ipv4", "--ipv6"],
        ["--address=h", "--key-file=k", "--command=a=b", "--ip=::1", "--send-delay-ms=+7"],
        ["-k", "k", "-a", "", "-c", ""],
        ["-a", "[::1]:80", "-k", "k", "--send-delay-ms", "18446744073709551615"],
    ],
)
def test_typical_command_lines_take_the_fast_path(argv: list[str]) -> None:
    fast = parse_send_argv(["send", *argv])
    assert fast is not None
    assert fast == click_parse(argv)
