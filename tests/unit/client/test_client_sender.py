"""The library API ``ruroco.client.sender`` (send, gen, reseed) on real sockets."""

from __future__ import annotations

import base64
import binascii
import itertools
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from client_helpers import FIXTURE_KEY, Receiver, ip16, read_counter_file

from ruroco.client.address import parse_socket_addr
from ruroco.client.counter import write_counter
from ruroco.client.sender import (
    PreparedRequest,
    SendRequest,
    SendResult,
    check,
    client_lock,
    gen,
    reseed,
    send,
    send_to_destinations,
)
from ruroco.errors import RurocoError, format_error
from ruroco.limits import U128_MAX
from ruroco.protocol import ClientData, command_hash


def _req(address: str, key_file: Path | None, **kw: object) -> SendRequest:
    return SendRequest(address=address, key_file=None if key_file is None else str(key_file), **kw)  # type: ignore[arg-type]


def test_send_to_v4_wire_fields(
    conf_dir: Path, key_file: Path, receiver_v4: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    results = send(_req(receiver_v4.address, key_file, command="open_port"), conf_dir)
    data = receiver_v4.receive_data()
    assert results == [SendResult(receiver_v4.address, data.counter, None)]
    assert data.cmd_hash == command_hash("open_port") == 11210312939868804362
    assert data.counter == read_counter_file(conf_dir)
    assert data.strict is True
    assert data.src_ip is None
    assert data.dst_ip == ip16("127.0.0.1")
    out = capsys.readouterr()
    assert f'Loading counter from "{conf_dir / "counter"}" ...' in out.out
    assert f"Connecting to udp://{receiver_v4.address}, using cryptography" in out.out
    assert f"Found addresses [{receiver_v4.address}] for {receiver_v4.address}" in out.out
    assert "Sent command open_port from 127.0.0.1:" in out.out
    assert FIXTURE_KEY not in out.out + out.err


def test_send_to_v6_with_claim_and_permissive(
    conf_dir: Path, key_file: Path, receiver_v6: Receiver
) -> None:
    send(_req(receiver_v6.address, key_file, ip="2001:db8::7", permissive=True), conf_dir)
    data = receiver_v6.receive_data()
    assert data.dst_ip == ip16("::1")
    assert data.src_ip == ip16("2001:db8::7")
    assert data.strict is False
    assert data.cmd_hash == command_hash("default")


def test_first_packet_carries_seed_plus_one(
    conf_dir: Path, key_file: Path, receiver_v4: Receiver
) -> None:
    write_counter(str(conf_dir / "counter"), 1000)
    send(_req(receiver_v4.address, key_file), conf_dir)
    assert receiver_v4.receive_data().counter == 1001 == read_counter_file(conf_dir)
    before = time.time_ns()
    os.unlink(conf_dir / "counter")
    send(_req(receiver_v4.address, key_file), conf_dir)
    value = receiver_v4.receive_data().counter
    assert before < value <= time.time_ns() + 1  # seeded with now in ns, plus one


def test_two_destinations_get_consecutive_counters_with_delay(
    conf_dir: Path, key_file: Path, receiver_v4: Receiver, receiver_v6: Receiver
) -> None:
    req = _req("unused", key_file, send_delay_ms=150)
    prepared = PreparedRequest(req.replace(address=receiver_v4.address), str(conf_dir))
    dests = [parse_socket_addr(receiver_v4.address), parse_socket_addr(receiver_v6.address)]
    start = time.monotonic()
    results = send_to_destinations(prepared, dests)  # type: ignore[arg-type]
    elapsed = time.monotonic() - start
    first, second = receiver_v4.receive_data(), receiver_v6.receive_data()
    assert second.counter == first.counter + 1 == read_counter_file(conf_dir)
    assert (first.dst_ip, second.dst_ip) == (ip16("127.0.0.1"), ip16("::1"))
    assert [r.counter for r in results] == [first.counter, second.counter]
    assert all(r.error is None for r in results)
    assert elapsed >= 0.15  # the delay sits between the two destinations


def test_broadcast_first_then_loopback_succeeds(
    conf_dir: Path, key_file: Path, receiver_v4: Receiver
) -> None:
    prepared = PreparedRequest(_req(receiver_v4.address, key_file, send_delay_ms=0), str(conf_dir))
    dests = [parse_socket_addr("255.255.255.255:1234"), parse_socket_addr(receiver_v4.address)]
    results = send_to_destinations(prepared, dests)  # type: ignore[arg-type]
    data = receiver_v4.receive_data()
    assert results[0].destination == "255.255.255.255:1234"
    assert results[0].error is not None
    assert "Could not connect/send data to 255.255.255.255:1234" in results[0].error
    assert results[1] == SendResult(receiver_v4.address, data.counter, None)
    assert results[0].counter == data.counter - 1  # the failed destination still used a value


def test_all_destinations_failing_is_an_error(conf_dir: Path, key_file: Path) -> None:
    prepared = PreparedRequest(_req("127.0.0.1:9", key_file, send_delay_ms=0), str(conf_dir))
    dests = [
        parse_socket_addr("255.255.255.255:1234"),
        parse_socket_addr("[::ffff:255.255.255.255]:1234"),
    ]
    with pytest.raises(RurocoError) as info:
        send_to_destinations(prepared, dests)  # type: ignore[arg-type]
    text = str(info.value)
    assert text.startswith("Could not send to any destination: 255.255.255.255:1234: ")
    assert "; [::ffff:255.255.255.255]:1234: " in text
    assert "Permission denied" in text


def test_6000_char_command_to_mapped_literal(
    conf_dir: Path, key_file: Path, receiver_v4: Receiver
) -> None:
    name = "x" * 6000
    address = f"[::ffff:127.0.0.1]:{receiver_v4.port}"
    [result] = send(_req(address, key_file, command=name, ip="::ffff:192.168.178.123"), conf_dir)
    assert result.destination == address and result.error is None
    data = receiver_v4.receive_data()
    assert data.cmd_hash == command_hash(name)
    assert data.src_ip == ip16("192.168.178.123")
    assert data.dst_ip == ip16("127.0.0.1")


def test_key_text_instead_of_key_file(conf_dir: Path, receiver_v4: Receiver) -> None:
    req = SendRequest(address=receiver_v4.address, key="  " + FIXTURE_KEY + "\n")
    assert FIXTURE_KEY not in repr(req)
    assert "key=<redacted>" in repr(req)
    send(req, conf_dir)
    assert receiver_v4.receive_data().counter == read_counter_file(conf_dir)


def test_request_is_immutable_and_comparable() -> None:
    req = SendRequest(address="a", key_file="k")
    with pytest.raises(AttributeError):
        req.address = "b"  # type: ignore[misc]
    assert req == SendRequest(address="a", key_file="k")
    assert req.replace(command="c") == SendRequest(address="a", key_file="k", command="c")
    assert hash(req) == hash(SendRequest(address="a", key_file="k"))
    with pytest.raises(TypeError):
        req.replace(nope=1)


def test_key_and_key_file_together_is_an_error(conf_dir: Path, key_file: Path) -> None:
    req = SendRequest(address="127.0.0.1:9", key_file=str(key_file), key=FIXTURE_KEY)
    with pytest.raises(RurocoError) as info:
        send(req, conf_dir)
    assert FIXTURE_KEY not in format_error(info.value)
    assert not (conf_dir / "counter").exists()


# --- bad input: exact messages, original order, nothing lost --------------------------------


def _error(req: SendRequest, conf_dir: Path) -> str:
    with pytest.raises(RurocoError) as info:
        send(req, conf_dir)
    return str(info.value)


def _write_key(tmp_path: Path, raw: bytes) -> Path:
    path = tmp_path / "bad.key"
    path.write_bytes(raw)
    return path


def test_invalid_ip(conf_dir: Path, key_file: Path) -> None:
    for bad in ("not-an-ip", "192.168.1.0/24", "[::1]", "fe80::1%eth0", "01.2.3.4"):
        assert _error(_req("127.0.0.1:9", key_file, ip=bad), conf_dir) == (
            f'Invalid --ip value "{bad}"'
        )


def test_key_too_short(conf_dir: Path, tmp_path: Path) -> None:
    path = _write_key(tmp_path, b"DEADBEEF")
    assert _error(_req("127.0.0.1:9", path), conf_dir) == "Key too short"
    assert not (conf_dir / "counter").exists()
    assert (conf_dir / "client.lock").exists()


def test_key_wrong_length(conf_dir: Path, tmp_path: Path) -> None:
    path = _write_key(tmp_path, base64.b64encode(bytes(32)))
    assert _error(_req("127.0.0.1:9", path), conf_dir) == "Key length must be 32 bytes"
    assert not (conf_dir / "counter").exists()


def test_key_not_base64(conf_dir: Path, tmp_path: Path) -> None:
    path = _write_key(tmp_path, b"not valid base64!!!")
    assert _error(_req("127.0.0.1:9", path), conf_dir) == "Could not decode base64 key"
    assert not (conf_dir / "counter").exists()


def test_missing_key_file(conf_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "missing.key"
    with pytest.raises(RurocoError) as info:
        send(_req("127.0.0.1:9", path), conf_dir)
    assert str(info.value) == f'Could not read key file "{path}"'
    assert "No such file or directory (os error 2)" in format_error(info.value)
    assert not (conf_dir / "counter").exists()


def test_key_file_not_utf8(conf_dir: Path, tmp_path: Path) -> None:
    path = _write_key(tmp_path, b"\xff\xfe" + FIXTURE_KEY.encode())
    assert _error(_req("127.0.0.1:9", path), conf_dir) == f'Could not read key file "{path}"'


def test_endless_key_file_is_refused(conf_dir: Path) -> None:
    with pytest.raises(RurocoError) as info:
        send(_req("127.0.0.1:9", Path("/dev/zero")), conf_dir)
    assert str(info.value) == 'Could not read key file "/dev/zero"'
    assert "larger than 65536 bytes" in format_error(info.value)
    assert not (conf_dir / "counter").exists()


def test_invalid_port_and_address(conf_dir: Path, key_file: Path) -> None:
    assert _error(_req("127.0.0.1:asd", key_file), conf_dir) == (
        'Invalid port "asd" in address "127.0.0.1:asd"'
    )
    assert _error(_req("[::1]", key_file), conf_dir).startswith('Invalid address "[::1]"')


def test_unresolvable_host(conf_dir: Path, key_file: Path) -> None:
    assert _error(_req("999.999.999.999:9999", key_file), conf_dir) == (
        "Could not resolve hostname for 999.999.999.999:9999"
    )


def test_family_not_found(conf_dir: Path, key_file: Path) -> None:
    assert _error(_req("127.0.0.1:9", key_file, ipv6=True), conf_dir) == (
        "Could not find any IPv6 address for 127.0.0.1:9"
    )
    assert _error(_req("[::1]:9", key_file, ipv4=True), conf_dir) == (
        "Could not find any IPv4 address for [::1]:9"
    )


def test_validation_order(conf_dir: Path, tmp_path: Path) -> None:
    """address, then --ip, then key file, then key parse, then counter (the original's order)."""
    missing = tmp_path / "missing.key"
    short = _write_key(tmp_path, b"DEADBEEF")
    (conf_dir / "counter").write_bytes(b"short")
    assert _error(_req("a:b:c", missing, ip="x"), conf_dir).startswith("Invalid address")
    assert _error(_req("127.0.0.1:9", missing, ip="x"), conf_dir).startswith("Invalid --ip")
    assert _error(_req("127.0.0.1:9", missing), conf_dir).startswith("Could not read key file")
    assert _error(_req("127.0.0.1:9", short), conf_dir) == "Key too short"
    good = _write_key(tmp_path, FIXTURE_KEY.encode())
    assert _error(_req("127.0.0.1:9", good), conf_dir).startswith("Could not read counter file")
    assert (conf_dir / "counter").read_bytes() == b"short"


def test_corrupt_counter_is_left_untouched(conf_dir: Path, key_file: Path) -> None:
    (conf_dir / "counter").write_bytes(b"short")
    message = _error(_req("127.0.0.1:9", key_file), conf_dir)
    assert message == f'Could not read counter file "{conf_dir / "counter"}"'
    assert (conf_dir / "counter").read_bytes() == b"short"


def test_counter_overflow_fails_every_destination(conf_dir: Path, key_file: Path) -> None:
    write_counter(str(conf_dir / "counter"), U128_MAX)
    message = _error(_req("127.0.0.1:9", key_file), conf_dir)
    assert message.startswith("Could not send to any destination: 127.0.0.1:9: counter overflow")
    assert read_counter_file(conf_dir) == U128_MAX


# --- lock, gen, reseed ----------------------------------------------------------------------


def test_lock_held_fails_at_once_or_waits(conf_dir: Path, key_file: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from ruroco.client.sender import client_lock\n"
            f"lock = client_lock({str(conf_dir)!r}).acquire()\n"
            "print('locked', flush=True)\n"
            "time.sleep(0.6)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        assert _error(_req("127.0.0.1:9", key_file), conf_dir).startswith(
            "Client already running (lock at"
        )
        start = time.monotonic()
        [result] = send(_req("127.0.0.1:9", key_file), conf_dir, lock_timeout=10)
        assert result.error is None
        assert time.monotonic() - start < 10
    finally:
        holder.kill()
        holder.wait(timeout=10)


def test_concurrent_senders_never_reuse_a_counter(conf_dir: Path, receiver_v4: Receiver) -> None:
    """Several processes send through one conf dir (as Ansible forks do): every datagram carries
    a counter above all earlier ones. Not dense: a process's second send reserves values ahead
    (docs/files.md, "Counter reservation")."""
    key_path = conf_dir.parent / "ruroco.key"
    key_path.write_text(FIXTURE_KEY)
    write_counter(str(conf_dir / "counter"), 5000)
    procs, per_proc = 4, 3
    code = (
        "from ruroco.client.sender import SendRequest, send\n"
        f"req = SendRequest(address={receiver_v4.address!r}, key_file={str(key_path)!r})\n"
        f"for _ in range({per_proc}):\n"
        f"    send(req, {str(conf_dir)!r}, lock_timeout=20)\n"
    )
    children = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL)
        for _ in range(procs)
    ]
    try:
        counters = [receiver_v4.receive_data(timeout=20).counter for _ in range(procs * per_proc)]
    finally:
        codes = [c.wait(timeout=30) for c in children]
    assert codes == [0] * procs
    assert counters[0] == 5001  # the first knock of a process reserves nothing ahead
    assert all(x < y for x, y in itertools.pairwise(counters)), counters
    assert read_counter_file(conf_dir) >= counters[-1]


def test_gen_writes_key_without_newline(conf_dir: Path) -> None:
    import io

    out = io.StringIO()
    key = gen(conf_dir, out)
    assert out.getvalue() == key
    assert len(key) == 56 and key.endswith("==")
    assert len(binascii.a2b_base64(key)) == 40
    assert (conf_dir / "client.lock").exists()


def test_reseed_writes_now(conf_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = time.time_ns()
    value = reseed(conf_dir)
    assert before <= value <= time.time_ns()
    assert read_counter_file(conf_dir) == value
    assert "Counter reseeded" in capsys.readouterr().out
    assert reseed(conf_dir, 7) == 7 == read_counter_file(conf_dir)


def test_lock_is_per_conf_dir(conf_dir: Path, tmp_path: Path) -> None:
    lock = client_lock(str(conf_dir)).acquire()
    try:
        other = tmp_path / "other"
        assert reseed(other, 3) == 3  # a different conf dir is not blocked
        with pytest.raises(RurocoError, match=r"^Client already running"):
            reseed(conf_dir, 3)
    finally:
        lock.release()


def test_huge_send_delay_is_clamped_not_a_crash():
    from ruroco.client.sender import MAX_DELAY_MS, delay_seconds

    assert delay_seconds(50) == 0.05
    assert delay_seconds(2**64 - 1) == MAX_DELAY_MS / 1000
    assert delay_seconds(2**64 - 1) < 2**62 / 1e9  # within what time.sleep accepts


_WARM_UP_THEN_FORK = """
import os, sys
from ruroco.client import counter, sender
assert counter._boot_id is counter._NOT_READ
sender.warm_up()
with open(counter.BOOT_ID_FILE, "rb") as fh:
    assert counter._boot_id == fh.read().strip()
request = sender.SendRequest(sys.argv[1], key_file=sys.argv[2])
pid = os.fork()
if pid == 0:  # a worker forked after the warm-up, as Ansible forks one per host and task
    code = 1
    try:
        sender.send(request, sys.argv[3])
        code = 0
    finally:
        os._exit(code)
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status))
"""


def test_warm_up_then_a_forked_worker_knocks(
    conf_dir: Path, key_file: Path, receiver_v4: Receiver
) -> None:
    """``warm_up`` (what the Ansible action plugin calls at import) reads the boot id once and
    builds the first cipher; a worker forked afterwards knocks with both inherited."""
    args = [receiver_v4.address, str(key_file), str(conf_dir)]
    done = subprocess.run(
        [sys.executable, "-c", _WARM_UP_THEN_FORK, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    lines = done.stdout.splitlines()  # the worker's log lines, then its exit status
    assert lines[-1] == "0" and "INFO ] Sent command default" in lines[-2], done
    data = receiver_v4.receive_data()
    assert data.cmd_hash == command_hash("default")
    assert data.counter == read_counter_file(conf_dir)


@pytest.mark.parametrize("protocol_no", [0, 1])
def test_a_knock_parses_its_key_for_its_protocol_only(
    conf_dir: Path, key_file: Path, protocol_no: int
) -> None:
    prepared = PreparedRequest(_req("127.0.0.1:9", key_file, protocol=protocol_no), str(conf_dir))
    data = ClientData(command_hash("default"), 1, True, None, ip16("127.0.0.1"))
    other = 1 - protocol_no
    assert len(prepared.key.encrypt(data.encode(protocol_no), None, protocol_no)) > 0
    with pytest.raises(RurocoError, match=f"not parsed for protocol {other}"):
        prepared.key.encrypt(data.encode(other), None, other)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"key": "DEADBEEF", "key_file": None}, "Key too short"),
        ({"key_file": "/nonexistent/k"}, 'Could not read key file "/nonexistent/k"'),
        ({"ip": "not-an-ip"}, 'Invalid --ip value "not-an-ip"'),
        ({"address": "127.0.0.1:asd"}, 'Invalid port "asd"'),
        ({"protocol": 2}, "Unsupported protocol 2"),
    ],
)
def test_check_refuses_what_send_refuses_without_the_conf_dir(
    conf_dir: Path, key_file: Path, changes: dict[str, object], message: str
) -> None:
    """``check`` (a dry run: ``ruroco_send`` in check mode) fails with ``send``'s message and
    never touches a conf dir: no lock, no counter."""
    request = _req("127.0.0.1:9", key_file).replace(**changes)
    with pytest.raises(RurocoError) as sent:
        send(request, conf_dir / "real")
    with pytest.raises(RurocoError) as checked:
        check(request)
    assert message in format_error(checked.value)
    assert format_error(checked.value) == format_error(sent.value)


def test_check_gives_the_destinations_send_uses(
    conf_dir: Path, key_file: Path, receiver_v4: Receiver
) -> None:
    request = _req(receiver_v4.address, key_file)
    assert check(request) == [receiver_v4.address]
    assert receiver_v4.nothing_pending()
    assert [r.destination for r in send(request, conf_dir)] == check(request)
