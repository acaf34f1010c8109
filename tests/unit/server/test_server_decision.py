"""The sans-IO decision: values in, values out; no files, no clock, no log lines."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st
from server_helpers import FIXTURE_ID, fixture_key, packet

from ruroco.ipaddr import parse_ip
from ruroco.protocol import ClientData, command_hash, encode_commander_data
from ruroco.server import pipeline as pl
from ruroco.server.config import ServerConfig
from ruroco.server.pipeline import Acceptance, Busy, Decision, render, valid_data_line

SECOND = 1_000_000_000
NOW = 1_700_000_000 * SECOND  # wall clock of every decision below
T = 5000.0  # monotonic seconds
FLOOR = NOW - 60 * SECOND
HOST = "127.0.0.1"
CONFIG = ServerConfig(ips=(parse_ip("127.0.0.1"), parse_ip("::1")))


def make(config: ServerConfig = CONFIG, floor: int | None = FLOOR) -> Decision:
    floors = {} if floor is None else {FIXTURE_ID: floor}
    return Decision(config, {FIXTURE_ID: fixture_key()}, floors)


def with_limits(per_source: int = 2, global_: int = 100) -> ServerConfig:
    return dataclasses.replace(
        CONFIG, max_requests_per_second=per_source, max_requests_per_second_global=global_
    )


def decide(d: Decision, data: bytes, host: str = HOST, now_s: float = T, now_ns: int = NOW):
    return d.decide(data, len(data), host, 4000, now_ns, now_s)


def reason(result: object) -> str:
    return "accepted" if isinstance(result, Acceptance) else result[0]  # type: ignore[index]


def test_accept_raises_the_floor_in_memory_and_carries_what_the_edge_needs():
    d = make()
    counter = NOW - SECOND
    result = decide(d, packet(counter=counter))
    assert isinstance(result, Acceptance)
    assert result.message == encode_commander_data(command_hash("default"), parse_ip(HOST))
    assert (result.host, result.port, result.floor, result.data.counter) == (
        HOST,
        4000,
        FLOOR,
        counter,
    )
    assert d.floors == {FIXTURE_ID: counter}
    assert d.stats["accepted"] == 0  # counted once persisted
    assert d.persisted(result) is result and d.stats["accepted"] == 1
    assert valid_data_line(result) == (
        f"Valid data for key [FF, FF, FF, FF, FF, FF, FF, FF] - trying cmd "
        f"{command_hash('default')} and counter {counter}|Some({FLOOR}) with 127.0.0.1"
    )
    assert reason(decide(d, packet(counter=counter))) == pl.REPLAY  # no file needed


def test_replay_table():
    d = make(floor=42)
    assert reason(decide(d, packet(counter=42))) == pl.REPLAY  # equal is a replay
    assert reason(decide(d, packet(counter=41))) == pl.REPLAY
    result = decide(d, packet(counter=43), host="127.0.0.2")
    assert isinstance(result, Acceptance) and d.floors[FIXTURE_ID] == 43
    replay = decide(d, packet(counter=43), host="127.0.0.3")
    assert render(replay).endswith("- 43 is on blocklist, expected > Some(43)")  # type: ignore[arg-type]


def test_a_key_without_a_floor_accepts_nothing():
    d = make(floor=None)
    result = decide(d, packet(counter=NOW))
    assert reason(result) == pl.REPLAY
    assert render(result).endswith("expected > None")  # type: ignore[arg-type]


def test_future_is_measured_from_the_time_passed_in():
    d = make()
    ahead = NOW + 3600 * SECOND  # the default skew
    assert reason(decide(d, packet(counter=ahead + 1))) == pl.FUTURE
    assert d.floors[FIXTURE_ID] == FLOOR
    assert reason(decide(d, packet(counter=ahead + 1), now_ns=NOW + 1)) == "accepted"


def test_limits_use_the_monotonic_time_passed_in():
    d = make(with_limits(per_source=1, global_=1))
    garbage = FIXTURE_ID + bytes(86)
    assert reason(decide(d, garbage, now_s=T)) == pl.DECRYPT
    assert reason(decide(d, garbage, now_s=T + 0.5)) == pl.RATE_SOURCE
    assert reason(decide(d, packet(counter=NOW - 5), now_s=T + 1.0)) == "accepted"
    assert reason(decide(d, packet(counter=NOW - 4), "127.0.0.2", T + 1.5)) == pl.RATE_GLOBAL
    assert reason(decide(d, packet(counter=NOW - 3), "127.0.0.2", T + 2.5)) == "accepted"


def test_busy_puts_the_floor_back():
    d = make()
    result = decide(d, packet(counter=NOW - 7))
    assert isinstance(result, Acceptance)
    busy = d.busy(result)
    assert busy == Busy(FIXTURE_ID, HOST, 4000, NOW - 7)
    assert d.floors[FIXTURE_ID] == FLOOR and d.stats["accepted"] == 0
    assert reason(decide(d, packet(counter=NOW - 7), now_s=T + 1)) == "accepted"


def test_persist_failure_puts_the_floor_back_and_is_a_rejection():
    d = make()
    result = decide(d, packet(counter=NOW - 7))
    assert isinstance(result, Acceptance)
    rejection = d.not_persisted(result, "Error persisting blocklist: disk gone")
    assert rejection == (pl.PERSIST, HOST, 4000, ("Error persisting blocklist: disk gone",))
    assert render(rejection) == (
        "Rejected datagram from 127.0.0.1 port 4000: "
        "Could not update block list: Error persisting blocklist: disk gone"
    )
    assert d.floors[FIXTURE_ID] == FLOOR
    assert d.stats[pl.PERSIST] == 1 and d.stats["accepted"] == 0


def test_undo_never_lowers_a_floor_raised_since():
    d = make()
    first = decide(d, packet(counter=NOW - 7))
    assert isinstance(first, Acceptance)
    d.floors[FIXTURE_ID] = NOW - 1  # e.g. a later acceptance already persisted
    d.busy(first)
    assert d.floors[FIXTURE_ID] == NOW - 1


def test_screen_is_the_size_and_key_check_alone():
    d = make(with_limits(per_source=0, global_=0))
    buf = bytearray(95)
    assert d.screen(buf, 95, HOST, 1) == (pl.SIZE, HOST, 1, (95, "94"))
    assert d.screen(buf, 94, HOST, 1) == (pl.UNKNOWN_KEY, HOST, 1, (bytes(8),))
    buf[:94] = packet()
    assert d.screen(buf, 94, HOST, 1) is None  # known key: decide looks further
    assert d.screen(memoryview(buf), 94, HOST, 1) is None
    assert d.screen(bytes(5), 94, HOST, 1) == (pl.SIZE, HOST, 1, (94, "94"))  # buffer too short
    assert d.stats[pl.SIZE] == 2 and d.stats[pl.UNKNOWN_KEY] == 1
    assert len(d.per_source) == 0  # no budget spent


def test_screen_and_decide_agree_on_what_screen_rejects():
    d = make()
    for data in (b"x" * 95, bytes(94), b""):
        assert decide(d, data) == d.screen(data, len(data), HOST, 4000)


def test_wrong_version_and_bad_tag():
    d = make()
    plaintext = bytearray(ClientData(command_hash("x"), NOW, True, None, parse_ip(HOST)).encode())
    plaintext[0] = 2
    result = decide(d, fixture_key().encrypt(bytes(plaintext)))
    assert render(result).endswith("Unsupported protocol version 2, expected 1")  # type: ignore[arg-type]
    data = bytearray(packet(counter=NOW))
    data[25] ^= 1
    assert reason(decide(d, bytes(data), "127.0.0.2")) == pl.DECRYPT


def test_non_ip_peer_is_a_source_rejection():
    d = make()
    result = decide(d, packet(counter=NOW - 1), host="/run/some.sock")
    assert reason(result) == pl.SOURCE
    assert render(result).endswith("expected an IP source, actual /run/some.sock")  # type: ignore[arg-type]


HOSTS = st.one_of(
    st.sampled_from(["127.0.0.1", "::1", "::ffff:10.1.2.3", "fe80::1%lo", "2001:db8::1", ""]),
    st.text(max_size=40),
)


@settings(max_examples=500, deadline=None)
@given(
    data=st.binary(max_size=200),
    with_real_id=st.booleans(),
    size=st.one_of(st.none(), st.integers(-(2**31), 2**31)),
    host=HOSTS,
    port=st.integers(0, 65535),
    now_ns=st.integers(0, 2**128),
    now_s=st.floats(allow_nan=False),
)
def test_decide_never_raises_for_any_input(data, with_real_id, size, host, port, now_ns, now_s):
    d = make(with_limits(per_source=10**6, global_=10**6))
    if with_real_id:
        data = FIXTURE_ID + data
    size = len(data) if size is None else size
    screened = d.screen(data, size, host, port)
    result = d.decide(data, size, host, port, now_ns, now_s)
    assert isinstance(result, tuple)
    if isinstance(result, Acceptance):  # only a real packet can get here: not from random bytes
        raise AssertionError("random bytes were accepted")
    if screened is not None:
        assert result == screened
    assert render(result).startswith("Rejected datagram from ")


@settings(max_examples=200, deadline=None)
@given(
    counter=st.integers(0, 2**64 - 1),
    host=st.sampled_from(["127.0.0.1", "::1", "::ffff:127.0.0.1", "192.0.2.1", "x"]),
    now_ns=st.integers(0, 2**64),
    now_s=st.floats(allow_nan=False, allow_infinity=False),
    src=st.sampled_from([None, "127.0.0.1", "198.51.100.7"]),
)
def test_real_packets_are_decided_without_raising(counter, host, now_ns, now_s, src):
    d = make(with_limits(per_source=10**6, global_=10**6))
    result = decide(d, packet(counter=counter, src=src), host=host, now_s=now_s, now_ns=now_ns)
    if isinstance(result, Acceptance):
        assert FLOOR < counter <= now_ns + 3600 * SECOND and d.floors[FIXTURE_ID] == counter
    else:
        assert render(result).startswith("Rejected datagram from ")
        assert d.floors[FIXTURE_ID] == FLOOR
