"""Per-key policy: ``[keys.<stem>]`` parsing, binding to key files, and the pure decision."""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from server_helpers import FIXTURE_ID, fixture_key, packet, write_setup

from ruroco.ipaddr import parse_ip
from ruroco.policy import EMPTY, KeyRules, Policy, bind, parse_network, table_name
from ruroco.protocol import command_hash
from ruroco.server import pipeline as pl
from ruroco.server.check import check
from ruroco.server.config import ServerConfig, load_config
from ruroco.server.pipeline import Acceptance, Decision, render
from ruroco.tomlconfig import ConfigError

SECOND = 1_000_000_000
NOW = 1_700_000_000 * SECOND
FLOOR = NOW - 60 * SECOND
T = 5000.0
UTC = datetime.UTC
CONFIG = ServerConfig(
    ips=(parse_ip("127.0.0.1"), parse_ip("::1")),
    max_requests_per_second=10**6,
    max_requests_per_second_global=10**6,
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text('ips = ["127.0.0.1"]\n' + text)
    return path


# -- parsing ----------------------------------------------------------------------------------


def test_the_issue_example_parses_into_every_field(tmp_path):
    config = load_config(
        write(
            tmp_path,
            "[keys.laptop]\n"
            'commands = ["open_ssh", "close_ssh"]\n'
            'sources = ["198.51.100.0/24", "2001:db8::/32"]\n'
            "allow_permissive = false\n"
            "not_after = 2027-06-30T00:00:00Z\n"
            '[keys."my.laptop"]\n',
        )
    )
    laptop, dotted = config.key_rules
    assert laptop.stem == "laptop" and laptop.file_name == "laptop.key"
    assert laptop.commands == ("open_ssh", "close_ssh")
    assert laptop.command_hashes == {command_hash("open_ssh"), command_hash("close_ssh")}
    assert [n.text for n in laptop.sources or ()] == ["198.51.100.0/24", "2001:db8::/32"]
    assert laptop.allow_permissive is False
    assert laptop.not_after == datetime.datetime(2027, 6, 30, tzinfo=UTC)
    assert laptop.not_after_ns == 1_814_313_600 * SECOND
    assert dotted == KeyRules(stem="my.laptop")
    assert dotted.name == 'keys."my.laptop"' and dotted.file_name == "my.laptop.key"
    assert (dotted.commands, dotted.sources, dotted.allow_permissive, dotted.not_after) == (
        None,
        None,
        True,
        None,
    )


def test_without_keys_there_are_no_rules(tmp_path):
    assert load_config(write(tmp_path, "")).key_rules == ()


def test_an_offset_not_after_is_one_instant_whatever_the_offset(tmp_path):
    config = load_config(write(tmp_path, "[keys.a]\nnot_after = 2027-06-30T02:00:00+02:00\n"))
    assert config.key_rules[0].not_after_ns == 1_814_313_600 * SECOND


BAD = [
    ("keys = 3\n", "keys must be a table"),
    ("keys = []\n", "keys must be a table"),
    ("[keys]\nlaptop = 1\n", "keys.laptop must be a table"),
    ("[keys.laptop]\ncomands = []\n", "keys.laptop.comands is not a key setting"),
    ("[keys.laptop]\n'a b' = 1\n", 'keys.laptop."a b" is not a key setting'),
    ('[keys."my.laptop"]\nsource = []\n', 'keys."my.laptop".source is not a key setting'),
    ('[keys.laptop]\ncommands = "a"\n', "keys.laptop.commands must be an array of strings"),
    ("[keys.laptop]\ncommands = [1]\n", "keys.laptop.commands must be an array of strings"),
    ('[keys.laptop]\ncommands = ["a\\u0000"]\n', "keys.laptop.commands[0] must not contain a NUL"),
    ('[keys.laptop]\nsources = "10.0.0.0/8"\n', "keys.laptop.sources must be an array of strings"),
    ('[keys.laptop]\nsources = ["10.0.0.0/8", "x"]\n', "keys.laptop.sources[1] is not an IP net"),
    ('[keys.laptop]\nsources = ["10.0.0.1/8"]\n', "sources[0] has host bits set (the network is "),
    ('[keys.laptop]\nsources = ["10.0.0.0/33"]\n', "keys.laptop.sources[0] is not an IP network"),
    ('[keys.laptop]\nsources = ["fe80::/64%eth0"]\n', "keys.laptop.sources[0] is not an IP net"),
    ('[keys.laptop]\nsources = ["fe80::%eth0/64"]\n', "keys.laptop.sources[0] is not an IP net"),
    ('[keys.laptop]\nsources = ["010.0.0.0/8"]\n', "keys.laptop.sources[0] is not an IP net"),
    ('[keys.laptop]\nsources = [" 10.0.0.0/8"]\n', "keys.laptop.sources[0] is not an IP net"),
    ('[keys.laptop]\nsources = [""]\n', "keys.laptop.sources[0] is not an IP network"),
    ('[keys.laptop]\nallow_permissive = "no"\n', "allow_permissive must be true or false"),
    ("[keys.laptop]\nnot_after = 2027-06-30T00:00:00\n", "not a local date-time"),
    ("[keys.laptop]\nnot_after = 2027-06-30\n", "not a bare date"),
    ("[keys.laptop]\nnot_after = 12:00:00\n", "not a local time"),
    ('[keys.laptop]\nnot_after = "2027-06-30T00:00:00Z"\n', "not a string"),
    ("[keys.laptop]\nnot_after = 1845936000\n", "not an integer"),
]


@pytest.mark.parametrize(("text", "expected"), BAD)
def test_a_bad_policy_is_one_line_naming_the_file_and_the_setting(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f'Could not parse server config "{path}": ')
    assert expected in message
    assert "\n" not in message


def test_a_table_for_a_key_file_that_is_not_there_names_both(tmp_path):
    config_path = write_setup(tmp_path, extra="[keys.ruroco]\n[keys.nosuch]\n")
    config = load_config(config_path)
    key_dir = config.key_dir()
    files = [key_dir / "ruroco.key"]
    with pytest.raises(ConfigError) as info:
        config.policy(files, {"ruroco.key": FIXTURE_ID}, key_dir)
    assert str(info.value) == (
        f'Could not parse server config "{config_path}": keys.nosuch names no key file '
        f'(there is no "nosuch.key" in "{key_dir}")'
    )


def test_binding_maps_stems_to_key_ids_and_skips_files_that_did_not_load(tmp_path):
    a, b = KeyRules(stem="a"), KeyRules(stem="b.c")
    files = ["/k/a.key", "/k/b.c.key"]
    policy = bind((a, b), files, {"a.key": b"1" * 8}, "/c.toml", "server config", "/k")
    assert dict(policy.rules) == {b"1" * 8: a}
    assert len(policy) == 1 and len(EMPTY) == 0
    with pytest.raises(TypeError):
        policy.rules[b"2" * 8] = b  # type: ignore[index]


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=50))
def test_any_sources_text_loads_or_gives_a_one_line_config_error(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("p") / "config.toml"
    escaped = "".join(f"\\U{ord(ch):08x}" if not ch.isalnum() else ch for ch in text)
    path.write_text(f'ips = []\n[keys.k]\nsources = ["{escaped}"]\n')
    try:
        rules = load_config(path).key_rules
    except ConfigError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)
        return
    # what loads is exactly what ipaddress calls a network without host bits
    assert rules[0].sources is not None
    assert rules[0].sources[0].text == str(ipaddress.ip_network(text))


def mapped_network(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> ipaddress.IPv6Network:
    if isinstance(net, ipaddress.IPv6Network):
        return net
    return ipaddress.IPv6Network(f"::ffff:{net.network_address}/{96 + net.prefixlen}")


def as_ipv6(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv6Address:
    return ipaddress.IPv6Address(f"::ffff:{ip}") if ip.version == 4 else ip


@settings(max_examples=500, deadline=None)
@given(
    net=st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).flatmap(
        lambda a: st.integers(0, a.max_prefixlen).map(
            lambda p: ipaddress.ip_network(f"{a}/{p}", strict=False)
        )
    ),
    ip=st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)),
)
def test_a_network_contains_what_ipaddress_says_over_the_wire_form(net, ip):
    parsed = parse_network(str(net))
    assert parsed.text == str(net)
    assert parsed.contains(parse_ip(str(ip))) == (as_ipv6(ip) in mapped_network(net))


def test_mapped_ipv4_sources_match_ipv4_peers_and_ipv4_networks_match_mapped_peers():
    assert parse_network("127.0.0.0/8").contains(parse_ip("::ffff:127.0.0.9"))
    assert parse_network("::ffff:127.0.0.0/104").contains(parse_ip("127.0.0.9"))
    assert parse_network("::/0").contains(parse_ip("127.0.0.9"))
    assert not parse_network("0.0.0.0/0").contains(parse_ip("::1"))
    assert not parse_network("::1/128").contains(parse_ip("127.0.0.1"))


def test_table_names_quote_what_is_not_a_bare_key():
    assert table_name("laptop-1_A") == "keys.laptop-1_A"
    assert table_name("my.laptop") == 'keys."my.laptop"'
    assert table_name('a"b\\c\x01') == 'keys."a\\"b\\\\c\\u0001"'
    assert table_name("") == 'keys.""'


# -- the decision ------------------------------------------------------------------------------


def decision(rules: KeyRules | None, floor: int = FLOOR) -> Decision:
    policy = EMPTY if rules is None else Policy({FIXTURE_ID: rules})
    return Decision(CONFIG, {FIXTURE_ID: fixture_key()}, {FIXTURE_ID: floor}, policy)


def decide(d: Decision, data: bytes, host: str = "127.0.0.1", now_ns: int = NOW):
    return d.decide(data, len(data), host, 4000, now_ns, T)


def nets(*texts: str) -> tuple:
    return tuple(parse_network(t) for t in texts)


def test_each_rule_refuses_with_a_line_naming_the_key_file_and_the_rule():
    rules = KeyRules(
        stem="my.laptop",
        commands=("a",),
        sources=nets("127.0.0.0/8", "203.0.113.0/24"),
        not_after=datetime.datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC),  # == NOW
    )
    prefix = (
        "Rejected datagram from 127.0.0.2 port 4000: Refused by the policy for key "
        '[FF, FF, FF, FF, FF, FF, FF, FF] (file "my.laptop.key"): '
    )
    cases = [
        (packet(command="b", counter=NOW - 9), "127.0.0.2", NOW, 'command {} is not in keys."my.'),
        (packet(command="a", counter=NOW - 9), "::1", NOW, "source ::1 is outside"),
        (packet(command="a", counter=NOW - 9), "127.0.0.2", NOW + 1, "key expired at 2023-11-14"),
        (
            packet(command="a", counter=NOW - 9, strict=False, src="198.51.100.1"),
            "127.0.0.2",
            NOW,
            'claimed IP 198.51.100.1 is outside keys."my.laptop".sources',
        ),
    ]
    for data, host, now_ns, needle in cases:
        d = decision(rules)
        result = decide(d, data, host, now_ns)
        assert result[0] == pl.POLICY, render(result)  # type: ignore[arg-type]
        line = render(result)  # type: ignore[arg-type]
        if host == "127.0.0.2":
            assert line.startswith(prefix), line
        assert needle.format(command_hash("b")) in line, line
        assert d.stats[pl.POLICY] == 1
        # what the packet says (command, expiry, a claim outside sources) uses it up; where
        # it came from does not
        used_up = not needle.startswith("source")
        assert d.floors[FIXTURE_ID] == (NOW - 9 if used_up else FLOOR), needle
        assert d.unsaved_floors is used_up
    # what every rule allows: a claim inside sources, at the very instant of not_after
    d = decision(rules)
    ok = packet(command="a", counter=NOW - 9, strict=False, src="203.0.113.5")
    assert isinstance(decide(d, ok, "127.0.0.2", NOW), Acceptance)


def test_allow_permissive_false_refuses_only_a_claim_of_another_address():
    rules = KeyRules(stem="k", allow_permissive=False)
    claim = packet(counter=NOW - 9, strict=False, src="203.0.113.9")
    result = decide(decision(rules), claim)
    assert render(result).endswith(  # type: ignore[arg-type]
        "claimed IP 203.0.113.9 is not the source and keys.k.allow_permissive is false"
    )
    for allowed in (
        packet(counter=NOW - 9, strict=False),  # permissive, no claim: runs for the source
        packet(counter=NOW - 9, strict=False, src="127.0.0.1"),  # a claim of the source itself
        packet(counter=NOW - 9, strict=True, src="127.0.0.1"),
        packet(counter=NOW - 9),
    ):
        assert isinstance(decide(decision(rules), allowed), Acceptance)


def test_a_packet_refused_for_what_it_says_is_used_up_so_it_never_runs_later():
    d = decision(KeyRules(stem="k", commands=("a",)))
    refused_b = packet(command="b", counter=NOW - 3)
    assert decide(d, refused_b)[0] == pl.POLICY
    assert d.floors[FIXTURE_ID] == NOW - 3 and d.unsaved_floors
    assert decide(d, packet(command="a", counter=NOW - 4))[0] == pl.REPLAY
    d.policy = Policy({FIXTURE_ID: KeyRules(stem="k")})  # sent again once a reload allows b
    assert decide(d, refused_b)[0] == pl.REPLAY
    assert isinstance(decide(d, packet(command="b", counter=NOW - 1)), Acceptance)


def test_a_claim_outside_sources_is_refused_from_anywhere_so_it_is_used_up():
    d = decision(KeyRules(stem="k", sources=nets("127.0.0.2/32")))
    strict = packet(counter=NOW - 5, src="192.0.2.7")  # from the claimed address itself
    assert decide(d, strict, "192.0.2.7")[0] == pl.POLICY
    assert d.floors[FIXTURE_ID] == NOW - 5 and d.unsaved_floors
    d.policy = Policy({FIXTURE_ID: KeyRules(stem="k", sources=nets("192.0.2.0/24"))})
    assert decide(d, strict, "192.0.2.7")[0] == pl.REPLAY  # not after sources grew either
    d = decision(KeyRules(stem="k", sources=nets("127.0.0.2/32")))
    permissive = packet(counter=NOW - 4, strict=False, src="192.0.2.7")
    assert decide(d, permissive, "127.0.0.2")[0] == pl.POLICY  # from inside, claim outside
    assert d.floors[FIXTURE_ID] == NOW - 4


def test_a_copy_sent_first_from_outside_sources_does_not_spoil_the_knock():
    """Anyone who sees a packet can send a copy from elsewhere before it arrives; a refusal
    for the source must leave the packet to the key holder's own datagram."""
    d = decision(KeyRules(stem="k", sources=nets("127.0.0.2/32"), allow_permissive=False))
    knock = packet(counter=NOW - 3)
    assert decide(d, knock, "127.0.0.1")[0] == pl.POLICY  # the copy, from outside
    claim = packet(counter=NOW - 3, strict=False, src="127.0.0.2")
    assert decide(d, claim, "127.0.0.1")[0] == pl.POLICY  # a copy with a claim
    assert d.floors[FIXTURE_ID] == FLOOR and not d.unsaved_floors
    assert isinstance(decide(d, knock, "127.0.0.2"), Acceptance)  # the key holder's


def test_a_packet_refused_by_the_global_limit_is_used_up_too():
    config = dataclasses.replace(CONFIG, max_requests_per_second_global=1)
    d = Decision(config, {FIXTURE_ID: fixture_key()}, {FIXTURE_ID: FLOOR})
    assert isinstance(decide(d, packet(counter=NOW - 5)), Acceptance)
    over = packet(counter=NOW - 4)
    assert decide(d, over)[0] == pl.RATE_GLOBAL
    assert d.floors[FIXTURE_ID] == NOW - 4 and d.unsaved_floors
    later = d.decide(over, len(over), "127.0.0.1", 4000, NOW, T + 5)
    assert later[0] == pl.REPLAY  # type: ignore[index]


def test_a_busy_hand_off_still_puts_the_floor_back():
    d = decision(None)
    accepted = decide(d, packet(counter=NOW - 5))
    assert isinstance(accepted, Acceptance)
    d.busy(accepted)
    assert d.floors[FIXTURE_ID] == FLOOR and not d.unsaved_floors


def test_a_refused_packet_costs_no_global_budget():
    config = dataclasses.replace(CONFIG, max_requests_per_second_global=1)
    policy = Policy({FIXTURE_ID: KeyRules(stem="k", commands=("a",))})
    d = Decision(config, {FIXTURE_ID: fixture_key()}, {FIXTURE_ID: FLOOR}, policy)
    assert decide(d, packet(command="b", counter=NOW - 3))[0] == pl.POLICY
    assert isinstance(decide(d, packet(command="a", counter=NOW - 2)), Acceptance)


def test_replays_and_strict_mismatches_keep_their_own_reasons_under_a_policy():
    rules = KeyRules(stem="k", commands=())
    assert decide(decision(rules), packet(counter=FLOOR))[0] == pl.REPLAY
    assert decide(decision(rules), packet(counter=NOW - 1, src="10.0.0.1"))[0] == pl.SOURCE
    assert decide(decision(rules), packet(counter=NOW - 1))[0] == pl.POLICY


def test_the_policy_is_swapped_whole_between_two_datagrams():
    d = decision(None)
    assert isinstance(decide(d, packet(command="b", counter=NOW - 5)), Acceptance)
    d.policy = Policy({FIXTURE_ID: KeyRules(stem="k", commands=("a",))})
    assert decide(d, packet(command="b", counter=NOW - 4))[0] == pl.POLICY
    d.policy = EMPTY
    assert isinstance(decide(d, packet(command="b", counter=NOW - 3)), Acceptance)


NAMES = ["a", "b", "", "open_ssh"]
NETWORKS = [
    "127.0.0.1/32",
    "127.0.0.0/8",
    "10.0.0.0/8",
    "0.0.0.0/0",
    "::1/128",
    "::/0",
    "2001:db8::/32",
    "::ffff:127.0.0.0/104",
    "203.0.113.0/24",
]
PEERS = ["127.0.0.1", "127.0.0.2", "::ffff:127.0.0.2", "::1", "10.1.2.3", "2001:db8::5"]
CLAIMS = [None, "127.0.0.1", "203.0.113.4", "198.51.100.1", "2001:db8::9", "::1"]
OFFSETS = [datetime.timezone(datetime.timedelta(minutes=m)) for m in (-600, 0, 90)]

rules_strategy = st.builds(
    KeyRules,
    stem=st.sampled_from(["k", "my.key"]),
    commands=st.none() | st.lists(st.sampled_from(NAMES), max_size=3).map(tuple),
    sources=st.none() | st.lists(st.sampled_from(NETWORKS), max_size=3).map(lambda ts: nets(*ts)),
    allow_permissive=st.booleans(),
    not_after=st.none()
    | st.tuples(st.integers(-3, 3), st.sampled_from(OFFSETS)).map(
        lambda p: datetime.datetime.fromtimestamp(NOW // SECOND + p[0], tz=p[1])
    ),
)


def normalized(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    ip = ipaddress.ip_address(text)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def within(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, texts: tuple[str, ...]) -> bool:
    return any(as_ipv6(ip) in mapped_network(ipaddress.ip_network(t)) for t in texts)


def allowed(rules: KeyRules, cmd: str, peer: str, claim: str | None, now_ns: int) -> bool:
    """The rules read straight from docs/files.md, with ipaddress and datetime."""
    if rules.not_after is not None and now_ns / SECOND > rules.not_after.timestamp():
        return False
    src = normalized(peer)
    target = src if claim is None else normalized(claim)
    sources = None if rules.sources is None else tuple(n.text for n in rules.sources)
    if sources is not None and not within(src, sources):
        return False
    if target != src and not rules.allow_permissive:
        return False
    if target != src and sources is not None and not within(target, sources):
        return False
    return rules.commands is None or cmd in rules.commands


@settings(max_examples=1500, deadline=None)
@given(
    rules=rules_strategy,
    cmd=st.sampled_from([*NAMES, "zzz"]),
    peer=st.sampled_from(PEERS),
    claim=st.sampled_from(CLAIMS),
    strict=st.booleans(),
    now_ns=st.integers(NOW - 4 * SECOND, NOW + 4 * SECOND),
)
def test_the_decision_accepts_exactly_what_every_rule_allows(
    rules, cmd, peer, claim, strict, now_ns
):
    data = packet(command=cmd, counter=NOW - 10 * SECOND, strict=strict, src=claim)
    without = decide(decision(None), data, peer, now_ns)
    d = decision(rules)
    result = decide(d, data, peer, now_ns)
    if not isinstance(without, Acceptance):  # a rejection before the policy stays the same
        assert result == without
        return
    if allowed(rules, cmd, peer, claim, now_ns):
        assert isinstance(result, Acceptance), render(result)  # type: ignore[arg-type]
        assert result == without
        assert d.floors[FIXTURE_ID] == NOW - 10 * SECOND
    else:
        assert not isinstance(result, Acceptance)
        assert result[0] == pl.POLICY
        assert f'(file "{rules.file_name}")' in render(result)
        claimed = claim is not None
        refusal = rules.refusal(
            command_hash(cmd), parse_ip(peer), parse_ip(claim or peer), now_ns, claimed
        )
        assert refusal is not None and refusal.reason in render(result)
        used_up = NOW - 10 * SECOND if refusal.final else FLOOR
        assert d.floors[FIXTURE_ID] == used_up


# -- --check -------------------------------------------------------------------------------------


def test_check_refuses_what_start_refuses_and_warns_about_a_past_not_after(tmp_path):
    config_path = write_setup(tmp_path, extra="[keys.ruroco]\nnot_after = 2000-01-01T00:00:00Z\n")
    result = check(config_path)
    assert result.ok, result.problems
    assert result.warnings == [
        'keys.ruroco.not_after (2000-01-01T00:00:00+00:00) has passed: key file "ruroco.key" '
        "is refused for every packet"
    ]
    assert result.summary.endswith(", policy for 1 key(s)")

    config_path.write_text(config_path.read_text() + "[keys.ghost]\n")
    result = check(config_path)
    assert result.problems == [
        f'Could not parse server config "{config_path}": keys.ghost names no key file '
        f'(there is no "ghost.key" in "{tmp_path / "etc"}")'
    ]


def test_check_warns_about_keys_that_can_do_nothing(tmp_path):
    config_path = write_setup(tmp_path, extra="[keys.ruroco]\ncommands = []\nsources = []\n")
    result = check(config_path)
    assert result.ok
    assert result.warnings == [
        'keys.ruroco.commands is empty: "ruroco.key" runs nothing',
        'keys.ruroco.sources is empty: "ruroco.key" is refused from everywhere',
    ]


def test_check_reports_a_bad_network_in_one_line(tmp_path):
    config_path = write_setup(tmp_path, extra='[keys.ruroco]\nsources = ["10.0.0.1/8"]\n')
    result = check(config_path)
    assert result.problems == [
        f'Could not parse server config "{config_path}": keys.ruroco.sources[0] has host bits '
        "set (the network is 10.0.0.0/8)"
    ]


def test_a_key_file_that_does_not_load_is_reported_once(tmp_path):
    config_path = write_setup(tmp_path, extra="[keys.broken]\n")
    broken = tmp_path / "etc" / "broken.key"
    broken.write_text("not a key")
    os.chmod(broken, 0o600)
    result = check(config_path)
    assert len(result.problems) == 1 and "broken.key" in result.problems[0]
    assert "names no key file" not in result.problems[0]
