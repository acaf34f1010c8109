"""Protocol 0 on the server (docs/protocol.md, Protocol 0): ``accept_protocol_0`` in the
config, the decision (off: a wrong size as always; on: every check of protocol 1, one floor
per key), the kernel filter's second size, a live reload and ``--check``."""

from __future__ import annotations

import dataclasses
import datetime
import socket
import time
from datetime import UTC

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from server_helpers import FIXTURE_ID, fixture_key, write_setup
from test_server_kfilter import run_program
from test_server_reload import Live

from ruroco.errors import RurocoError
from ruroco.ipaddr import parse_ip
from ruroco.policy import KeyRules, Policy
from ruroco.protocol import (
    KEY_ID_SIZE,
    MSG_SIZE,
    PROTOCOL_0,
    PROTOCOL_VERSION,
    V0_MSG_SIZE,
    ClientData,
    Key,
    build_packet,
    command_hash,
    encode_commander_data,
)
from ruroco.server import kfilter
from ruroco.server import pipeline as pl
from ruroco.server.check import check
from ruroco.server.config import ServerConfig, load_config
from ruroco.server.pipeline import Acceptance, Decision, render, valid_data_line
from ruroco.server.reload import LIVE, RESTART_ONLY, live_changes

SECOND = 1_000_000_000
NOW = 1_700_000_000 * SECOND
FLOOR = NOW - 60 * SECOND
HOST = "127.0.0.1"
# many packets from one source at one instant: only the rate-limit test wants the limits
OFF = ServerConfig(ips=(parse_ip("127.0.0.1"), parse_ip("::1")), max_requests_per_second=1000)
ON = dataclasses.replace(OFF, accept_protocol_0=True)


def v(
    protocol: int,
    counter: int = NOW - SECOND,
    command: str = "default",
    strict: bool = True,
    src: str | None = None,
    dst: str = "127.0.0.1",
    key: Key | None = None,
) -> bytes:
    data = ClientData(
        command_hash(command),
        counter,
        strict,
        None if src is None else parse_ip(src),
        parse_ip(dst),
    )
    return build_packet(key or fixture_key(), data, protocol=protocol)


def make(config: ServerConfig = ON, policy: Policy | None = None) -> Decision:
    if policy is None:
        return Decision(config, {FIXTURE_ID: fixture_key()}, {FIXTURE_ID: FLOOR})
    return Decision(config, {FIXTURE_ID: fixture_key()}, {FIXTURE_ID: FLOOR}, policy)


def decide(d: Decision, data: bytes, host: str = HOST, now_ns: int = NOW, now_s: float = 1.0):
    return d.decide(data, len(data), host, 4000, now_ns, now_s)


def reason(result: object) -> str:
    return "accepted" if isinstance(result, Acceptance) else result[0]  # type: ignore[index]


# -- config -----------------------------------------------------------------------------------


def test_the_setting_is_off_by_default_and_must_be_a_boolean(tmp_path):
    assert load_config(write_setup(tmp_path / "a")).accept_protocol_0 is False
    assert load_config(
        write_setup(tmp_path / "b", extra="accept_protocol_0 = true\n")
    ).accept_protocol_0
    path = write_setup(tmp_path / "c", extra='accept_protocol_0 = "yes"\n')
    with pytest.raises(RurocoError) as info:
        load_config(path)
    assert str(path) in str(info.value) and "accept_protocol_0" in str(info.value)
    assert "must be true or false" in str(info.value)


def test_check_names_the_setting_and_refuses_a_bad_value(tmp_path):
    result = check(write_setup(tmp_path / "a", extra="accept_protocol_0 = true\n"))
    assert result.ok, result.problems
    assert ", protocol 0 (ruroco 0.14.2) accepted" in result.summary
    assert "protocol 0" not in check(write_setup(tmp_path / "b")).summary
    bad = check(write_setup(tmp_path / "c", extra="accept_protocol_0 = 1\n"))
    assert not bad.ok and "accept_protocol_0" in bad.problems[0]


# -- the decision -----------------------------------------------------------------------------


def test_off_a_protocol_0_packet_is_a_wrong_size_exactly_as_before():
    d = make(OFF)
    result = decide(d, v(PROTOCOL_0))
    assert reason(result) == pl.SIZE and d.stats[pl.SIZE] == 1
    assert render(result) == (  # type: ignore[arg-type]
        "Rejected datagram from 127.0.0.1 port 4000: Invalid read count 93, expected 94"
    )
    assert d.floors[FIXTURE_ID] == FLOOR and d.stats[pl.DECRYPT] == 0
    assert d.screen(v(PROTOCOL_0), V0_MSG_SIZE, HOST, 1) is not None  # not even the key lookup


def test_on_a_protocol_0_packet_is_accepted_and_says_so():
    d = make()
    counter = NOW - SECOND
    result = decide(d, v(PROTOCOL_0, counter, src="198.51.100.7", strict=False))
    assert isinstance(result, Acceptance)
    assert result.protocol == PROTOCOL_0 and result.data.counter == counter
    assert result.message == encode_commander_data(
        command_hash("default"), parse_ip("198.51.100.7")
    )
    assert d.floors[FIXTURE_ID] == counter
    assert valid_data_line(result).endswith(" with 198.51.100.7 (protocol 0)")
    d.persisted(result)
    assert (d.stats["accepted"], d.stats[pl.ACCEPTED_V0]) == (1, 1)
    v1 = decide(d, v(PROTOCOL_VERSION, counter + 1))
    assert isinstance(v1, Acceptance) and v1.protocol == PROTOCOL_VERSION
    assert not valid_data_line(v1).endswith(")")
    d.persisted(v1)
    assert (d.stats["accepted"], d.stats[pl.ACCEPTED_V0]) == (2, 1)


def test_on_other_sizes_are_still_wrong_and_the_line_names_both_sizes():
    d = make()
    for size in (0, 92, 95):
        result = d.screen(bytearray(96), size, HOST, 1)
        assert result == (pl.SIZE, HOST, 1, (size, "94 or 93"))
    assert render(result).endswith("Invalid read count 95, expected 94 or 93")  # type: ignore[arg-type]
    assert d.screen(bytes(92), 93, HOST, 1) is not None  # a buffer shorter than its size


@pytest.mark.parametrize("first", [PROTOCOL_0, PROTOCOL_VERSION])
def test_one_replay_floor_per_key_for_both_protocols(first):
    """The newer counter runs; afterwards the older one is refused in the other protocol,
    and so is the same counter; in both orders."""
    second = PROTOCOL_VERSION if first == PROTOCOL_0 else PROTOCOL_0
    d = make()
    newer, older = NOW - 10 * SECOND, NOW - 20 * SECOND
    assert isinstance(decide(d, v(first, newer)), Acceptance)
    for counter in (older, newer):
        result = decide(d, v(second, counter))
        assert reason(result) == pl.REPLAY
        assert render(result).endswith(  # type: ignore[arg-type]
            f"- {counter} is on blocklist, expected > Some({newer})"
        )
    assert isinstance(decide(d, v(second, newer + 1)), Acceptance)
    assert d.floors[FIXTURE_ID] == newer + 1


SCENARIOS = st.fixed_dictionaries(
    {
        "counter": st.sampled_from(
            [FLOOR - 1, FLOOR, FLOOR + 1, NOW, NOW + 3600 * SECOND, NOW + 3600 * SECOND + 1]
        ),
        "command": st.sampled_from(["default", "open_ssh"]),
        "strict": st.booleans(),
        "src": st.sampled_from([None, "127.0.0.1", "127.0.0.9", "198.51.100.7"]),
        "dst": st.sampled_from(["127.0.0.1", "::1", "203.0.113.10"]),
    }
)
POLICIES = st.sampled_from(
    [
        None,
        KeyRules(stem="k", commands=("default",)),
        KeyRules(stem="k", allow_permissive=False),
        KeyRules(stem="k", not_after=datetime.datetime(2023, 11, 14, 22, 13, 19, tzinfo=UTC)),
    ]
)


@settings(max_examples=300, deadline=None)
@given(SCENARIOS, st.sampled_from(["127.0.0.1", "127.0.0.9", "::1"]), POLICIES)
def test_every_check_treats_both_protocols_alike(scenario, host, rules):
    """The same request as protocol 0 and as protocol 1, each on a fresh decision: the same
    verdict, reason and commander message (replay floor, future bound, destination, strict
    source and per-key policy alike)."""
    policy = None if rules is None else Policy({FIXTURE_ID: rules})
    results = [
        decide(make(policy=policy), v(p, **scenario), host) for p in (PROTOCOL_0, PROTOCOL_VERSION)
    ]
    assert reason(results[0]) == reason(results[1])
    if isinstance(results[0], Acceptance):
        assert results[0].message == results[1].message  # type: ignore[union-attr]
    else:
        assert render(results[0]) == render(results[1])  # type: ignore[arg-type]


def test_rate_limits_and_tag_failures_count_protocol_0_packets_too():
    d = make(dataclasses.replace(ON, max_requests_per_second=2, max_requests_per_second_global=1))
    tampered = bytearray(v(PROTOCOL_0))
    tampered[-1] ^= 1
    assert reason(decide(d, bytes(tampered), now_s=1.0)) == pl.DECRYPT
    assert reason(decide(d, v(PROTOCOL_0, NOW - 5), now_s=1.0)) == "accepted"
    assert reason(decide(d, v(PROTOCOL_0, NOW - 4), now_s=1.0)) == pl.RATE_SOURCE  # 3rd
    assert reason(decide(d, v(PROTOCOL_VERSION, NOW - 3), "::1", now_s=1.0)) == pl.RATE_GLOBAL
    assert reason(decide(d, v(PROTOCOL_0, NOW - 2), "::1", now_s=1.0)) == pl.RATE_GLOBAL
    other = Key(b"\x01" * KEY_ID_SIZE, b"\x02" * 32)
    assert reason(decide(d, v(PROTOCOL_0, key=other), "::2", now_s=1.0)) == pl.UNKNOWN_KEY


def test_reconfigure_switches_protocol_0_between_two_datagrams():
    d = make(OFF)
    assert reason(decide(d, v(PROTOCOL_0, NOW - 9))) == pl.SIZE
    d.reconfigure(ON, d.keys, d.policy)
    assert reason(decide(d, v(PROTOCOL_0, NOW - 8))) == "accepted"
    d.reconfigure(OFF, d.keys, d.policy)
    assert reason(decide(d, v(PROTOCOL_0, NOW - 7))) == pl.SIZE


# -- kernel filter ----------------------------------------------------------------------------

key_ids = st.lists(st.binary(min_size=KEY_ID_SIZE, max_size=KEY_ID_SIZE), max_size=40, unique=True)


@given(key_ids, st.booleans(), st.data())
def test_filter_passes_93_bytes_only_with_protocol_0(ids, protocol_0, data):
    program = kfilter.build_program(ids, protocol_0)
    head = kfilter.HEAD_PROTOCOL_0 if protocol_0 else kfilter.HEAD
    assert len(program) == head + kfilter.PER_KEY * len(ids) + kfilter.TAIL
    for pc, (code, jt, jf, _k) in enumerate(program):
        if code == kfilter.JEQ_K:
            assert pc + 1 + max(jt, jf) < len(program)
    sizes = (MSG_SIZE, V0_MSG_SIZE) if protocol_0 else (MSG_SIZE,)
    known = [
        i + data.draw(st.binary(min_size=n - KEY_ID_SIZE, max_size=n - KEY_ID_SIZE))
        for i in ids
        for n in (MSG_SIZE, V0_MSG_SIZE)
    ]
    others = data.draw(st.lists(st.binary(max_size=120), max_size=10))
    for payload in known + others:
        expect = len(payload) in sizes and payload[:KEY_ID_SIZE] in ids
        assert (run_program(program, payload) != 0) == expect


def test_max_keys_fit_with_the_longer_head():
    ids = [i.to_bytes(KEY_ID_SIZE, "big") for i in range(kfilter.MAX_KEYS)]
    assert len(kfilter.build_program(ids, True)) <= kfilter.BPF_MAXINSNS


@pytest.mark.parametrize("protocol_0", [False, True])
def test_the_real_kernel_passes_93_bytes_only_with_protocol_0(protocol_0):
    key_id = b"\x07" * KEY_ID_SIZE
    v1, v0 = key_id + b"a" * 86, key_id + b"b" * 85
    payloads = [v0, key_id + b"c" * 84, key_id + b"d" * 87, v1, b"\x00" * 93]
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx,
    ):
        rx.bind(("127.0.0.1", 0))
        assert kfilter.attach(rx, [key_id], protocol_0) == (
            (kfilter.HEAD_PROTOCOL_0 if protocol_0 else kfilter.HEAD)
            + kfilter.PER_KEY
            + kfilter.TAIL
        )
        for p in payloads:
            tx.sendto(p, rx.getsockname())
        rx.settimeout(0.3)
        got = []
        try:
            while True:
                got.append(rx.recv(256))
        except TimeoutError:
            pass
    assert got == ([v0, v1] if protocol_0 else [v1])


# -- reload, on a real socket -----------------------------------------------------------------


def test_the_setting_is_live_on_reload():
    assert "accept_protocol_0" in LIVE and "accept_protocol_0" not in RESTART_ONLY
    assert live_changes(OFF, ON) == ("accept_protocol_0",)


@pytest.fixture
def live(tmp_path):
    made: list[Live] = []

    def start(extra: str = "") -> Live:
        made.append(Live(tmp_path / str(len(made)), extra).start())
        return made[-1]

    yield start
    for run in made:
        run.stop()


def knock_v0(run: Live) -> bool:
    """A fresh protocol-0 packet; whether the server accepted it and the commander got it."""
    stats = run.server.stats
    accepted, received = stats.pipeline["accepted"], stats.received
    messages = len(run.commander.messages)
    run.send(v(PROTOCOL_0, time.time_ns()))
    run.wait(lambda: stats.received > received)
    if stats.pipeline["accepted"] == accepted:
        return False
    run.commander.wait_for(messages + 1)
    return True


def set_protocol_0(run: Live, on: bool) -> None:
    text = run.config_path.read_text().replace("accept_protocol_0 = true\n", "")
    run.config_path.write_text(text + ("accept_protocol_0 = true\n" if on else ""))
    run.reload_and_wait()


def test_a_reload_turns_protocol_0_on_and_off(live, capfd):
    run = live()
    assert not knock_v0(run) and run.server.stats.pipeline[pl.SIZE] == 1
    set_protocol_0(run, True)
    assert knock_v0(run) and run.knock()
    assert "settings changed: accept_protocol_0;" in capfd.readouterr().out
    set_protocol_0(run, False)
    assert not knock_v0(run) and run.server.stats.pipeline[pl.SIZE] == 2
    assert run.knock()
    assert run.server.stats.pipeline[pl.ACCEPTED_V0] == 1
    assert "accepted_protocol_0=1" in run.server.stats.summary()


def test_a_reload_re_attaches_the_kernel_filter_with_the_new_sizes(live):
    run = live("kernel_filter = true\n")
    stats = run.server.stats
    received = stats.received
    run.send(v(PROTOCOL_0, time.time_ns()))  # dropped by the kernel: never received
    assert run.knock()  # sent after it, and received: so the first is gone for good
    assert stats.received == received + 1
    set_protocol_0(run, True)
    assert knock_v0(run)
    set_protocol_0(run, False)
    received = stats.received
    run.send(v(PROTOCOL_0, time.time_ns()))
    assert run.knock() and stats.received == received + 1
    assert stats.pipeline[pl.SIZE] == 0  # the kernel took every wrong size, none was logged


def test_start_logs_the_setting_and_the_filter_sizes(live, capfd):
    live("kernel_filter = true\naccept_protocol_0 = true\n")
    out = capfd.readouterr().out
    assert "accept_protocol_0 = true: 93-byte protocol 0 packets" in out
    assert "datagrams that are not 94 or 93 bytes or carry an unknown key id" in out
