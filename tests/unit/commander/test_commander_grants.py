"""``[grants]`` parsing, the nftables JSON built from it, and the watcher's message filter.

The behaviour against the kernel is in ``tests/e2e/test_e2e_grants.py``; here the table the
commander would apply is still handed to the real ``nft -c`` (in a private network namespace,
so nothing on this machine changes) to show the kernel takes it.
"""

from __future__ import annotations

import itertools
import json
import struct
import subprocess
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ruroco.cmdhash import command_hash
from ruroco.commander import guard, nft, tablelock
from ruroco.commander.commands import load_command_file, parse_command_file
from ruroco.commander.grants import (
    MAX_TIMEOUT_SEC,
    Action,
    Grant,
    PortRange,
    merge_ports,
    parse_grant,
    parse_port,
)
from ruroco.ipaddr import parse_ip
from ruroco.tomlconfig import ConfigError

PATH = Path("/etc/ruroco/commands.toml")

port_ranges = st.builds(
    lambda proto, a, b: PortRange(proto, min(a, b), max(a, b)),
    st.sampled_from(["tcp", "udp"]),
    st.integers(1, 65535),
    st.integers(1, 65535),
)


@given(port_ranges)
def test_port_text_round_trips(port: PortRange) -> None:
    assert parse_port(str(port)) == port


@given(st.text(max_size=30))
def test_any_port_text_is_parsed_or_refused_with_a_reason(text: str) -> None:
    try:
        port = parse_port(text)
    except ValueError as exc:
        assert str(exc)
    else:
        assert str(port) == text  # only the canonical form is accepted
        assert 1 <= port.first <= port.last <= 65535


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("tcp/0", "is not proto/port"),
        ("tcp/022", "is not proto/port"),
        ("tcp/65536", "is above 65535"),
        ("tcp/30-20", "end is below its start"),
        ("icmp/1", "has protocol 'icmp'"),
        ("TCP/22", "is not proto/port"),
        (" tcp/22", "is not proto/port"),
        (22, "must be a string"),
    ],
)
def test_bad_ports(text: object, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_port(text)


# Small ports: overlaps and neighbours are frequent, and the sets of covered ports stay small.
small_ranges = st.builds(
    lambda proto, a, b: PortRange(proto, min(a, b), max(a, b)),
    st.sampled_from(["tcp", "udp"]),
    st.integers(1, 300),
    st.integers(1, 300),
)


@given(st.lists(small_ranges, min_size=1, max_size=8))
def test_merged_ports_cover_the_same_ports_without_overlap(ports: list[PortRange]) -> None:
    merged = merge_ports(ports)

    def covered(rs: tuple[PortRange, ...] | list[PortRange]) -> set[tuple[str, int]]:
        return {(r.proto, n) for r in rs for n in range(r.first, r.last + 1)}

    assert covered(merged) == covered(ports)
    for a, b in itertools.pairwise(merged):
        assert a < b
        assert a.proto != b.proto or a.last + 1 < b.first  # neither overlapping nor adjacent


def _file(text: str) -> dict[str, object]:
    import tomllib

    return tomllib.loads(text)


def test_grants_add_open_and_close_commands() -> None:
    loaded = parse_command_file(
        _file(
            '[commands]\nx = "true"\n[grants.ssh]\nports = ["tcp/22", "tcp/20-30"]\n'
            "timeout_sec = 600\n"
        ),
        PATH,
    )
    (grant,) = loaded.grants
    assert grant == Grant("ssh", (PortRange("tcp", 20, 30),), 600)
    assert loaded.actions[command_hash("open_ssh")].action is Action.OPEN
    assert loaded.actions[command_hash("close_ssh")].action is Action.CLOSE
    assert loaded.known() == {command_hash(n) for n in ("x", "open_ssh", "close_ssh")}
    assert loaded.summary() == "1 command, 1 grant"


def test_a_file_with_grants_only_is_fine() -> None:
    loaded = parse_command_file(_file('[grants.web]\nports = ["tcp/443"]\ntimeout_sec = 5\n'), PATH)
    assert loaded.commands == {} and len(loaded.actions) == 2


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (
            '[commands]\nclose_ssh = "x"\n[grants.ssh]\nports = ["tcp/22"]\ntimeout_sec = 1\n',
            'grant "ssh" defines "close_ssh", which clashes with the '
            '\\[commands\\] entry "close_ssh"',
        ),
        ('[grants.ssh]\nports = ["tcp/22"]\n', "needs `timeout_sec`"),
        ('[grants.ssh]\nports = ["tcp/22"]\ntimeout_sec = 0\n', "needs `timeout_sec`"),
        ('[grants.ssh]\nports = ["tcp/22"]\ntimeout_sec = true\n', "needs `timeout_sec`"),
        (
            f'[grants.ssh]\nports = ["tcp/22"]\ntimeout_sec = {MAX_TIMEOUT_SEC + 1}\n',
            "needs `timeout_sec`",
        ),
        ("[grants.ssh]\nports = []\ntimeout_sec = 1\n", "needs `ports`"),
        ('[grants.ssh]\nports = "tcp/22"\ntimeout_sec = 1\n', "needs `ports`"),
        (
            '[grants.ssh]\nports = ["tcp/22"]\ntimeout_sec = 1\ntimeout = 5\n',
            "unknown key\\(s\\) timeout",
        ),
        ('[grants."a b"]\nports = ["tcp/22"]\ntimeout_sec = 1\n', "needs a name"),
        ('[grants._x]\nports = ["tcp/22"]\ntimeout_sec = 1\n', "needs a name"),
        ("grants = 3\n", "`grants` must be a table"),
        ("[grants]\nssh = 3\n", "must be a table with"),
    ],
)
def test_bad_grants_fail_the_file_in_one_line(text: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason) as info:
        parse_command_file(_file(text), PATH)
    assert str(info.value).startswith(f'Could not parse commands file "{PATH}": ')
    assert "\n" not in str(info.value)


@given(
    st.dictionaries(
        st.text(max_size=8),
        st.one_of(st.integers(), st.text(max_size=12), st.lists(st.text(max_size=12), max_size=3)),
        max_size=4,
    ),
    st.text(max_size=10),
)
def test_any_grant_table_is_parsed_or_refused_with_a_reason(value: dict, name: str) -> None:
    try:
        grant = parse_grant(name, value)
    except ValueError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert 1 <= grant.timeout_sec <= MAX_TIMEOUT_SEC and grant.ports


def test_load_command_file_reads_a_trusted_file(tmp_path: Path) -> None:
    path = tmp_path / "commands.toml"
    path.write_text('[grants.ssh]\nports = ["udp/53"]\ntimeout_sec = 9\n')
    path.chmod(0o600)
    assert load_command_file(path).grants[0].ports == (PortRange("udp", 53, 53),)


# -- the nftables side -------------------------------------------------------------------------


GRANTS = (
    Grant("ssh", (PortRange("tcp", 22, 22),), 600),
    Grant(
        "web",
        (
            PortRange("tcp", 80, 80),
            PortRange("tcp", 443, 443),
            PortRange("udp", 443, 443),
            PortRange("udp", 60000, 61000),
        ),
        60,
    ),
)


def nft_check(commands: list[dict]) -> subprocess.CompletedProcess[str]:
    """The real ``nft -c`` in a private network namespace: validates, applies nothing."""
    return subprocess.run(
        ["unshare", "-n", "nft", "-c", "-j", "-f", "-"],
        input=json.dumps({"nftables": commands}),
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_the_kernel_takes_the_table_and_rebuilding_it() -> None:
    for commands in (nft.apply_commands(GRANTS, None), nft.replace_commands(GRANTS)):
        result = nft_check(commands)
        assert result.returncode == 0, result.stderr


def test_a_broken_table_is_refused_by_nft() -> None:
    """Guards the test above: nft -c does refuse what the kernel would not take."""
    bad = nft.apply_commands(GRANTS, None)
    bad.append({"add": {"rule": {"family": "inet", "table": "nope", "chain": "x", "expr": []}}})
    assert nft_check(bad).returncode != 0


def test_rules_order_established_then_accepts_then_drops() -> None:
    rules = [
        c["add"]["rule"] for c in nft.apply_commands(GRANTS, None) if "rule" in c.get("add", {})
    ]
    verdicts = [next(k for k in r["expr"][-1]) for r in rules]
    # established; per grant and protocol an IPv4 and an IPv6 accept (ssh tcp, web tcp and
    # udp: 6); then one drop per grant and protocol (3)
    assert verdicts == ["accept"] * 7 + ["drop"] * 3
    assert [r["comment"] for r in rules] == nft.rule_comments(GRANTS)


def _listing(grants: tuple[Grant, ...]) -> list[dict]:
    """What ``nft -j list table`` shows for a table applied from ``grants`` (the parts we read)."""
    items: list[dict] = [{"table": {"family": "inet", "name": "ruroco"}}]
    for name in nft.set_names(grants):
        kind = "ipv6_addr" if name.endswith("_v6") else "ipv4_addr"
        items.append({"set": {"name": name, "type": kind, "flags": ["timeout"]}})
    items.append(
        {
            "chain": {
                "name": "guard",
                "hook": "input",
                "prio": -10,
                "type": "filter",
                "policy": "accept",
            }
        }
    )
    items += [{"rule": {"comment": c}} for c in nft.rule_comments(grants)]
    return items


def test_problem_sees_every_change() -> None:
    assert nft.problem(GRANTS, _listing(GRANTS)) is None
    assert nft.problem(GRANTS, None) == "table inet ruroco is missing"
    assert "rules" in str(nft.problem(GRANTS, _listing(GRANTS)[:-1]))
    assert "set ssh_v6" in str(
        nft.problem(
            GRANTS, [i for i in _listing(GRANTS) if i.get("set", {}).get("name") != "ssh_v6"]
        )
    )
    assert "no longer configured" in str(nft.problem(GRANTS[:1], _listing(GRANTS)))
    changed = Grant("ssh", (PortRange("tcp", 2222, 2222),), 600)
    assert "rules" in str(nft.problem((changed, GRANTS[1]), _listing(GRANTS)))
    moved = _listing(GRANTS)
    moved[5] = {"chain": {**moved[5]["chain"], "prio": 0}}
    assert "base chain" in str(nft.problem(GRANTS, moved))
    for flags in ("dormant", ["dormant"], ["owner"]):  # a dormant table filters nothing
        flagged = _listing(GRANTS)
        flagged[0] = {"table": {**flagged[0]["table"], "flags": flags}}
        assert "flags" in str(nft.problem(GRANTS, flagged))


def test_apply_deletes_what_an_older_file_left() -> None:
    cmds = nft.apply_commands(GRANTS[:1], _listing(GRANTS))
    deleted = [c["delete"]["set"]["name"] for c in cmds if "set" in c.get("delete", {})]
    assert deleted == ["web_v4", "web_v6"]
    flush = next(i for i, c in enumerate(cmds) if "flush" in c)
    assert flush < cmds.index(
        {"delete": {"set": {"family": "inet", "table": "ruroco", "name": "web_v4"}}}
    )


@given(st.binary(min_size=16, max_size=16))
def test_each_address_goes_to_the_set_of_its_family(ip: bytes) -> None:
    ref = nft.element("add", GRANTS[0], ip, 600)["add"]["element"]
    mapped = ip[:12] == parse_ip("::ffff:1.2.3.4")[:12]
    assert ref["name"] == ("ssh_v4" if mapped else "ssh_v6")
    assert ref["elem"][0]["elem"]["timeout"] == 600


def test_live_grants_from_a_listing() -> None:
    listing = [
        {
            "set": {
                "name": "ssh_v4",
                "elem": [
                    {"elem": {"val": "192.0.2.7", "timeout": 600, "expires": 599}},
                    "198.51.100.1",
                ],
            }
        },
        {
            "set": {
                "name": "my_grant_v6",
                "elem": [{"elem": {"val": "2001:db8::1", "timeout": 5, "expires": 2}}],
            }
        },
    ]
    assert nft.live_grants(listing) == [
        nft.LiveGrant("my_grant", "2001:db8::1", 2, 5),
        nft.LiveGrant("ssh", "192.0.2.7", 599, 600),
        nft.LiveGrant("ssh", "198.51.100.1", -1, 0),
    ]


def test_a_missing_nft_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nft, "SEARCH_PATH", str(tmp_path))
    nft.check_usable(())  # without grants nothing is needed
    with pytest.raises(nft.NftError, match=r"^nftables is not usable: no `nft` in .*\(install"):
        nft.check_usable(GRANTS)
    with pytest.raises(nft.NftError, match=r"^Could not run /nonexistent/nft: No such file"):
        nft.Nft("/nonexistent/nft").run([])


def _nlmsg(msg: int, subsys: int = guard.NFNL_SUBSYS_NFTABLES) -> bytes:
    return struct.pack("=IHHII", 20, (subsys << 8) | msg, 0, 0, 0) + b"\0" * 4


def test_only_changes_that_can_remove_the_guard_wake_the_watcher() -> None:
    quiet = _nlmsg(12) + _nlmsg(14) + _nlmsg(15)
    assert not guard._relevant(quiet)
    assert not guard._relevant(b"")
    for msg in (0, 2, 3, 5, 6, 8, 9, 11):  # tables, chains, rules, sets: new and deleted
        assert guard._relevant(quiet + _nlmsg(msg))
    assert guard._relevant(struct.pack("=IHHII", 3, 0xA0F, 0, 0, 0))  # malformed: look


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(-1, "never"), (0, "0s"), (59, "59s"), (600, "10m"), (3661, "1h1m1s"), (90000, "1d1h")],
)
def test_list_grants_durations(seconds: int, text: str) -> None:
    from ruroco.commander.cli import _duration

    assert _duration(seconds) == text


class _RefusingNft(nft.Nft):
    """An nft whose every transaction is refused (the table is missing)."""

    def __init__(self) -> None:
        pass

    def table(self) -> list[dict] | None:
        return None

    def run(self, commands: list[nft.Command], check_only: bool = False) -> None:
        raise nft.NftError("refused")


def test_an_apply_nft_refuses_gives_the_table_lock_back(tmp_path: Path) -> None:
    """Else the commander keeps the lock with no table, and refuses its own next reload."""
    keeper = guard.GrantKeeper(GRANTS, _RefusingNft(), "/run/x", lock_dir=str(tmp_path))
    with pytest.raises(nft.NftError):
        keeper.apply()
    assert not tablelock.held_elsewhere(str(tmp_path))


def test_the_table_lock_names_its_holder_for_check(tmp_path: Path) -> None:
    lock = tablelock.claim("/run/ruroco", str(tmp_path))
    try:
        assert tablelock.held_elsewhere(str(tmp_path))
        warning = tablelock.check_warning(True, "/run/other", str(tmp_path))
        assert warning is not None and 'socket_dir "/run/ruroco"' in warning
        assert tablelock.check_warning(False, "/run/other", str(tmp_path)) is None
        # the holder's own config, its commander not running (no commander.lock held): warned
        assert tablelock.check_warning(True, "/run/ruroco", str(tmp_path)) is not None
    finally:
        lock.release()
    assert tablelock.check_warning(True, "/run/other", str(tmp_path)) is None


def test_stop_after_a_watcher_that_never_started_still_gives_the_lock_back(
    tmp_path: Path,
) -> None:
    keeper = guard.GrantKeeper(GRANTS, _RefusingNft(), "/run/x", lock_dir=str(tmp_path))
    keeper._claim = tablelock.claim("/run/x", str(tmp_path))
    keeper._thread = threading.Thread(target=lambda: None)  # as if Thread.start() had failed
    keeper.stop()
    assert not tablelock.held_elsewhere(str(tmp_path))
