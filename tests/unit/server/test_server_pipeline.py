import shutil
import time

from hypothesis import given, settings
from hypothesis import strategies as st
from server_helpers import FIXTURE_ID, fixture_key, packet, write_setup

from ruroco.ipaddr import parse_ip
from ruroco.protocol import ClientData, command_hash, encode_commander_data
from ruroco.server import pipeline as pl
from ruroco.server.blocklist import open_at_startup, read_file
from ruroco.server.config import load_config
from ruroco.server.keys import find_key_files, load_keys
from ruroco.server.pipeline import Acceptance, Pipeline, render

HOST = "127.0.0.1"
SECOND = 1_000_000_000


def make(tmp_path, extra="", floor=None):
    config = load_config(write_setup(tmp_path, extra=extra))
    keys = load_keys(find_key_files(config.key_dir()))
    floor = time.time_ns() - 60 * SECOND if floor is None else floor
    blocklist = open_at_startup(config.blocklist_path(), keys, floor)
    return Pipeline(config, keys, blocklist)


def run(p, data, host=HOST, port=4000):
    return p.handle(data, len(data), host, port)


def reason(result):
    return "accepted" if isinstance(result, Acceptance) else result[0]


def test_valid_packet_is_accepted_persisted_and_replay_rejected(tmp_path):
    p = make(tmp_path)
    data = packet(counter=time.time_ns())
    result = run(p, data)
    assert isinstance(result, Acceptance)
    assert result.message == encode_commander_data(command_hash("default"), parse_ip(HOST))
    counter = ClientData.decode(fixture_key().decrypt(data[8:])).counter
    assert read_file(p.config.blocklist_path()) == {FIXTURE_ID: counter}
    replay = run(p, data)
    assert reason(replay) == pl.REPLAY
    assert "is on blocklist, expected > Some(" in render(replay)
    assert p.stats["accepted"] == 1 and p.stats[pl.REPLAY] == 1


def test_equal_counter_is_a_replay(tmp_path):
    floor = time.time_ns()
    p = make(tmp_path, floor=floor)
    assert reason(run(p, packet(counter=floor))) == pl.REPLAY
    assert reason(run(p, packet(counter=floor + 1))) == "accepted"


def test_future_counter_rejected_without_touching_the_floor(tmp_path):
    p = make(tmp_path)
    before = p.blocklist.entries.get(FIXTURE_ID)
    result = run(p, packet(counter=time.time_ns() + 7200 * SECOND))
    assert reason(result) == pl.FUTURE
    assert "Future counter" in render(result) and "not updating blocklist" in render(result)
    assert p.blocklist.entries.get(FIXTURE_ID) == before
    assert reason(run(p, packet(counter=time.time_ns()))) == "accepted"


def test_counter_sixty_seconds_ahead_passes(tmp_path):
    p = make(tmp_path)
    assert reason(run(p, packet(counter=time.time_ns() + 60 * SECOND))) == "accepted"


def test_wrong_destination(tmp_path):
    p = make(tmp_path)
    result = run(p, packet(dst="10.0.0.1"))
    assert reason(result) == pl.DESTINATION
    assert render(result).endswith(
        "Invalid host IP for key [FF, FF, FF, FF, FF, FF, FF, FF] - expected "
        "[127.0.0.1, ::1] to contain 10.0.0.1"
    )


def test_strict_source_mismatch(tmp_path):
    p = make(tmp_path)
    result = run(p, packet(src="10.0.0.1"))
    assert reason(result) == pl.SOURCE
    assert render(result).endswith("expected 10.0.0.1, actual 127.0.0.1")


def test_strict_without_claim_passes_and_permissive_forwards_the_claim(tmp_path):
    p = make(tmp_path)
    assert reason(run(p, packet(strict=True, src=None))) == "accepted"
    result = run(p, packet(strict=False, src="198.51.100.7"), host="127.0.0.1")
    assert isinstance(result, Acceptance)
    assert result.ip == parse_ip("198.51.100.7")


def test_mapped_peer_is_treated_as_ipv4(tmp_path):
    p = make(tmp_path)
    result = run(p, packet(src="127.0.0.1"), host="::ffff:127.0.0.1")
    assert isinstance(result, Acceptance)
    assert result.ip == parse_ip("127.0.0.1")
    rejected = run(p, b"x", host="::ffff:127.0.0.1", port=9)
    assert render(rejected).startswith("Rejected datagram from 127.0.0.1 port 9: ")


def test_ipv6_destination_and_source(tmp_path):
    p = make(tmp_path)
    assert reason(run(p, packet(dst="::1", src="::1"), host="::1")) == "accepted"


def test_unknown_key_exact_text(tmp_path):
    p = make(tmp_path)
    result = run(p, bytes(94), port=8080)
    assert reason(result) == pl.UNKNOWN_KEY
    assert render(result) == (
        "Rejected datagram from 127.0.0.1 port 8080: "
        "Could not find key for id [0, 0, 0, 0, 0, 0, 0, 0]"
    )


def test_bad_tag(tmp_path):
    p = make(tmp_path)
    data = bytearray(packet())
    data[25] ^= 1  # inside the tag
    assert reason(run(p, bytes(data))) == pl.DECRYPT
    data = bytearray(packet())
    data[93] ^= 0x80  # inside the ciphertext
    assert reason(run(p, bytes(data))) == pl.DECRYPT


def test_wrong_version(tmp_path):
    p = make(tmp_path)
    plaintext = bytearray(
        ClientData(command_hash("x"), time.time_ns(), True, None, parse_ip(HOST)).encode()
    )
    plaintext[0] = 2
    result = run(p, fixture_key().encrypt(bytes(plaintext)))
    assert reason(result) == pl.VERSION
    assert render(result).endswith("Unsupported protocol version 2, expected 1")


def test_wrong_sizes_including_oversize(tmp_path):
    p = make(tmp_path)
    good = packet()
    for size in (0, 1, 93, 95, 200, 65507):
        result = p.handle(good + bytes(1), size, HOST, 8080)
        assert reason(result) == pl.SIZE
        assert render(result) == (
            f"Rejected datagram from 127.0.0.1 port 8080: Invalid read count {size}, expected 94"
        )
    assert p.stats[pl.SIZE] == 6


def test_wrong_size_and_unknown_key_consume_no_budget(tmp_path):
    p = make(tmp_path, extra="max_requests_per_second = 1\nmax_requests_per_second_global = 1\n")
    for _ in range(50):
        run(p, packet() + b"\0")  # oversize, would be valid if truncated
        run(p, bytes(94))
    assert reason(run(p, packet())) == "accepted"


def test_per_source_limit_two_then_third_refused(tmp_path):
    p = make(tmp_path)
    garbage = FIXTURE_ID + bytes(86)  # real key id, fails authentication
    assert reason(run(p, garbage)) == pl.DECRYPT
    assert reason(run(p, garbage)) == pl.DECRYPT
    result = run(p, garbage)
    assert reason(result) == pl.RATE_SOURCE
    assert render(result).endswith(
        "Rate limit exceeded for 127.0.0.1: more than 2 requests per second"
    )
    assert reason(run(p, packet(), host="127.0.0.2")) == "accepted"


def test_global_cap_counts_only_fully_valid_packets(tmp_path):
    p = make(tmp_path, extra="max_requests_per_second_global = 1\n")
    garbage = FIXTURE_ID + bytes(86)
    for i in range(200):
        assert reason(run(p, garbage, host=f"10.0.{i // 250}.{i % 250}")) == pl.DECRYPT
    assert reason(run(p, packet())) == "accepted"
    result = run(p, packet(), host="127.0.0.1")
    assert reason(result) == pl.RATE_GLOBAL
    assert render(result).endswith("Global rate limit exceeded: more than 1 requests per second")


def test_persist_failure_rolls_back_and_forwards_nothing(tmp_path):
    p = make(tmp_path)
    before = p.blocklist.entries.get(FIXTURE_ID)
    shutil.rmtree(p.config.blocklist_path().parent)
    data = packet()
    result = run(p, data)
    assert reason(result) == pl.PERSIST
    assert "Could not update block list: Error persisting blocklist" in render(result)
    assert p.blocklist.entries.get(FIXTURE_ID) == before
    assert p.stats["accepted"] == 0
    p.config.blocklist_path().parent.mkdir()
    assert reason(run(p, data)) == "accepted"  # the same counter may be retried


def test_every_reason_renders_with_the_same_prefix(tmp_path):
    p = make(tmp_path, extra="max_requests_per_second = 100\n")
    results = [
        run(p, b"short"),
        run(p, bytes(94)),
        run(p, FIXTURE_ID + bytes(86)),
        run(p, packet(dst="10.0.0.1")),
        run(p, packet(src="10.0.0.1")),
        run(p, packet(counter=1)),
        run(p, packet(counter=time.time_ns() + 10**15)),
    ]
    for result in results:
        assert render(result).startswith("Rejected datagram from 127.0.0.1 port 4000: ")


def test_pipeline_works_on_a_reused_buffer(tmp_path):
    p = make(tmp_path)
    buf = bytearray(95)
    view = memoryview(buf)
    buf[:94] = packet()
    assert reason(p.handle(view, 94, HOST, 1)) == "accepted"
    buf[:94] = bytes(94)
    assert reason(p.handle(view, 94, HOST, 1)) == pl.UNKNOWN_KEY


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(max_size=200),
    with_real_id=st.booleans(),
    host=st.sampled_from(["127.0.0.1", "::1", "::ffff:10.1.2.3", "fe80::1%lo", "2001:db8::1"]),
)
def test_no_input_raises_or_is_accepted(tmp_path_factory, data, with_real_id, host):
    p = PIPELINE.get("p")
    if p is None:
        p = PIPELINE["p"] = make(
            tmp_path_factory.mktemp("fuzz"), extra="max_requests_per_second = 1000000\n"
        )
    if with_real_id:
        data = FIXTURE_ID + data
    result = p.handle(data, len(data), host, 1)
    assert isinstance(result, tuple) and not isinstance(result, Acceptance)
    assert render(result).startswith("Rejected datagram from ")


PIPELINE: dict[str, Pipeline] = {}
