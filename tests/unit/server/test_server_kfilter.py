"""The opt-in kernel pre-filter: program structure, the real kernel's view of a UDP datagram,
and a real server process with the filter on and off."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from server_helpers import FIXTURE_ID, FIXTURE_KEY, CommanderStandIn, write_setup

from ruroco.errors import RurocoError
from ruroco.protocol import KEY_ID_SIZE, MSG_SIZE, command_hash, generate_key
from ruroco.server import kfilter
from ruroco.server.check import check
from ruroco.server.config import load_config
from ruroco.server.server import create_server

BIN = os.path.dirname(sys.executable)
CLIENT = os.path.join(BIN, "ruroco-client")
key_ids = st.lists(st.binary(min_size=KEY_ID_SIZE, max_size=KEY_ID_SIZE), max_size=40, unique=True)


def run_program(program, payload: bytes) -> int:
    """A classic-BPF interpreter for the few opcodes kfilter emits, over a UDP skb."""
    skb = b"\0" * kfilter.UDP_HEADER + payload
    acc, pc = 0, 0
    while True:
        code, jt, jf, k = program[pc]
        if code == kfilter.LD_LEN:
            acc = len(skb)
        elif code == kfilter.LD_ABS_W:
            if k + 4 > len(skb):
                return 0  # the kernel drops on an out-of-bounds load
            acc = int.from_bytes(skb[k : k + 4], "big")
        elif code == kfilter.JEQ_K:
            pc += jt if acc == k else jf
        elif code == kfilter.RET_K:
            return k
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")
        pc += 1


def _length(key_count):
    """Instructions for ``key_count`` ids: size check, five per id, the final drop."""
    return kfilter.HEAD + kfilter.PER_KEY * key_count + kfilter.TAIL


@given(key_ids)
def test_program_length_is_as_computed_and_jumps_stay_inside(ids):
    program = kfilter.build_program(ids)
    assert len(program) == _length(len(ids)) <= kfilter.BPF_MAXINSNS
    for pc, (code, jt, jf, _k) in enumerate(program):
        if code == kfilter.JEQ_K:
            assert jt <= 255 and jf <= 255
            assert pc + 1 + max(jt, jf) < len(program)
    assert program[-1] == (kfilter.RET_K, 0, 0, kfilter.DROP)
    assert len(kfilter.encode(program)) == 8 * len(program)


@given(key_ids, st.data())
def test_program_keeps_exactly_94_byte_datagrams_with_a_loaded_id(ids, data):
    program = kfilter.build_program(ids)
    known = [i + data.draw(st.binary(min_size=86, max_size=86)) for i in ids]
    others = data.draw(st.lists(st.binary(max_size=120), max_size=10))
    for payload in known + others:
        expect = len(payload) == MSG_SIZE and payload[:KEY_ID_SIZE] in ids
        assert (run_program(program, payload) != 0) == expect


def test_the_largest_key_set_fits_and_one_more_is_refused():
    assert _length(kfilter.MAX_KEYS) <= kfilter.BPF_MAXINSNS
    assert _length(kfilter.MAX_KEYS + 1) > kfilter.BPF_MAXINSNS
    ids = [i.to_bytes(KEY_ID_SIZE, "big") for i in range(kfilter.MAX_KEYS + 1)]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        with pytest.raises(RurocoError, match=f"at most {kfilter.MAX_KEYS} keys"):
            kfilter.attach(sock, ids)
        # The kernel may also refuse it for net.core.optmem_max; then the error says so.
        try:
            assert kfilter.attach(sock, ids[:-1]) == _length(kfilter.MAX_KEYS)
        except RurocoError as exc:
            assert "net.core.optmem_max" in str(exc)
        assert kfilter.attach(sock, ids[:50]) == _length(50)


def _deliveries(family, host, ids, payloads):
    """Send ``payloads`` over loopback to a filtered socket; return what arrived, in order."""
    with (
        socket.socket(family, socket.SOCK_DGRAM) as rx,
        socket.socket(family, socket.SOCK_DGRAM) as tx,
    ):
        rx.bind((host, 0))
        kfilter.attach(rx, ids)
        for p in payloads:
            tx.sendto(p, rx.getsockname()[:2])
        tx.sendto(b"end", rx.getsockname()[:2])  # dropped: its arrival can't be awaited
        rx.settimeout(0.3)
        got = []
        try:
            while len(got) < len(payloads):
                got.append(rx.recv(256))
        except TimeoutError:
            pass
        return got


@settings(max_examples=25, deadline=None)
@given(key_ids.filter(bool), st.data())
def test_real_kernel_sees_the_payload_at_offset_8_after_the_udp_header(ids, data):
    """Proves the offsets against the kernel: shifted ids and off-by-one sizes are dropped."""
    good = [i + data.draw(st.binary(min_size=86, max_size=86)) for i in ids[:5]]
    shifted = [b"\0" + g[:-1] for g in good] + [g[4:] + g[:4] for g in good]
    sizes = [g[:n] for g in good[:2] for n in (0, 8, 93)] + [g + b"\0" for g in good[:2]]
    payloads = shifted + good + sizes
    payloads = [p for p in payloads if not (len(p) == MSG_SIZE and p[:KEY_ID_SIZE] in ids)]
    payloads += good
    expected = [p for p in payloads if len(p) == MSG_SIZE and p[:KEY_ID_SIZE] in ids]
    assert _deliveries(socket.AF_INET, "127.0.0.1", ids, payloads) == expected


def test_real_kernel_on_an_ipv6_socket_for_both_families():
    ids = [b"\x01" * 8]
    good = ids[0] + b"x" * 86
    assert _deliveries(socket.AF_INET6, "::1", ids, [b"y" * 94, good, good[:93]]) == [good]
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as rx:
        rx.bind(("::", 0))
        kfilter.attach(rx, ids)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            tx.sendto(b"y" * 94, ("127.0.0.1", rx.getsockname()[1]))
            tx.sendto(good, ("127.0.0.1", rx.getsockname()[1]))
        rx.settimeout(1)
        assert rx.recv(256) == good


def test_config_key_defaults_to_off_and_must_be_a_bool(tmp_path):
    assert load_config(write_setup(tmp_path / "a")).kernel_filter is False
    assert load_config(write_setup(tmp_path / "b", extra="kernel_filter = true\n")).kernel_filter
    with pytest.raises(RurocoError, match=r"kernel_filter.*must be true or false"):
        load_config(write_setup(tmp_path / "c", extra='kernel_filter = "yes"\n'))


def _too_many_keys(tmp_path):
    config = write_setup(tmp_path, extra="kernel_filter = true\n")
    for n in range(kfilter.MAX_KEYS):  # plus the fixture key: one too many
        (config.parent / f"k{n}.key").write_text(generate_key())
    return config


def test_too_many_keys_refuse_startup_and_fail_check(tmp_path):
    config = _too_many_keys(tmp_path)
    with pytest.raises(RurocoError, match=f"at most {kfilter.MAX_KEYS} keys"):
        create_server(config, address="127.0.0.1:0")
    assert not (tmp_path / "state" / "blocklist.msgpck").exists()  # refused before any write
    result = check(config)
    assert [p for p in result.problems if "kernel_filter supports at most" in p]
    (config.parent / "k0.key").unlink()
    ok = check(config)
    assert ok.ok and ok.summary.endswith(", kernel filter on")


def _start(tmp_path, kernel_filter: bool):
    extra = "kernel_filter = true\n" if kernel_filter else ""
    config = write_setup(tmp_path, extra=extra)
    commander = CommanderStandIn(tmp_path / "run" / "ruroco.socket")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUROCO_", "LISTEN_"))}
    proc = subprocess.Popen(
        [os.path.join(BIN, "ruroco-server"), "-c", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(env, RUROCO_LISTEN_ADDRESS=f"127.0.0.1:{port}"),
    )
    deadline = time.monotonic() + 15
    while not (tmp_path / "state" / "blocklist.msgpck").exists():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    time.sleep(0.3)  # socket selection (and the filter) follow the blocklist write
    return proc, port, commander, env


def _flood_then_knock(tmp_path, kernel_filter: bool):
    proc, port, commander, env = _start(tmp_path, kernel_filter)
    garbage = [os.urandom(n) for n in (0, 1, 93, 95, 200)] + [os.urandom(94) for _ in range(50)]
    garbage += [FIXTURE_ID + bytes(86), b"\xfe" + FIXTURE_ID[1:] + bytes(86)]
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            for g in garbage:
                tx.sendto(g, ("127.0.0.1", port))
        key_file = tmp_path / "client.key"
        key_file.write_text(FIXTURE_KEY)
        client_dir = tmp_path / "client"
        client_dir.mkdir()
        sent = subprocess.run(
            [CLIENT, "send", "-a", f"127.0.0.1:{port}", "-k", str(key_file), "-c", "default"],
            env=dict(env, RUROCO_CONF_DIR=str(client_dir)),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert sent.returncode == 0, sent.stderr
        messages = commander.wait_for(1)
        time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
        commander.close()
    assert proc.returncode == 0, err
    assert messages == [
        command_hash("default").to_bytes(8, "big") + bytes(10) + b"\xff\xff\x7f\0\0\1"
    ]
    return out, err, len(garbage)


def test_real_server_with_the_filter_never_sees_garbage_and_still_runs_a_knock(tmp_path):
    """Only the knock and the one datagram carrying the real key id get through the kernel;
    the latter still fails authentication in the server, as before."""
    out, err, _ = _flood_then_knock(tmp_path, kernel_filter=True)
    assert "Kernel filter active (9 BPF instructions for 1 key id(s))" in out
    assert "dropped by the kernel without a log line" in out
    assert "received=2 accepted=1 forwarded=1 forward_failed=0 rejected=1" in out
    assert "rejected_size=0 rejected_unknown_key=0 rejected_rate_source=0 rejected_decrypt=1" in out
    assert err.count("Rejected datagram") == 1 and "Could not decrypt" in err


def test_real_server_without_the_filter_logs_and_counts_garbage_as_before(tmp_path):
    out, err, sent = _flood_then_knock(tmp_path, kernel_filter=False)
    assert "Kernel filter" not in out
    assert f"received={sent + 1} accepted=1 forwarded=1" in out
    assert (
        "rejected_size=5 rejected_unknown_key=51 rejected_rate_source=0 rejected_decrypt=1" in out
    )
    assert "ERROR ] Rejected datagram from 127.0.0.1 port" in err


def _inherited_socket_run(tmp_path, extra: str, send, prepare=lambda udp: None):
    """Start a real server on an IPv6 socket handed over as systemd does (fd 3), after
    ``prepare(udp)``; once it runs, ``send(tx, port)``; stop it. Returns (commands the
    commander received, returncode, stdout, stderr)."""
    from test_server_listen import LAUNCHER

    config = write_setup(tmp_path, extra=extra)
    commander = CommanderStandIn(tmp_path / "run" / "ruroco.socket")
    udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    udp.bind(("::1", 0))
    port = udp.getsockname()[1]
    prepare(udp)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUROCO_", "LISTEN_"))}
    server = os.path.join(BIN, "ruroco-server")
    proc = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, str(udp.fileno()), server, "-c", str(config)],
        pass_fds=(udp.fileno(),),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    udp.close()
    try:
        deadline = time.monotonic() + 15
        while not (tmp_path / "state" / "blocklist.msgpck").exists():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.02)
        time.sleep(0.3)
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as tx:
            send(tx, port)
        received = commander.wait_for(1)
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=10)
        commander.close()
    return received, proc.returncode, out, err


def test_filter_attaches_to_a_socket_handed_over_by_systemd(tmp_path):
    from server_helpers import packet

    def send(tx, port):
        for _ in range(20):
            tx.sendto(os.urandom(94), ("::1", port))
            tx.sendto(b"hello", ("::1", port))
        tx.sendto(packet(dst="::1"), ("::1", port))

    received, returncode, out, err = _inherited_socket_run(tmp_path, "kernel_filter = true\n", send)
    assert len(received) == 1
    assert returncode == 0, err
    assert "UdpSocket from_raw_fd 3 (systemd socket activation)" in out
    assert "Kernel filter active" in out
    assert "received=1 accepted=1" in out


def test_a_filter_left_on_an_inherited_socket_is_removed_when_the_filter_is_off(tmp_path):
    """systemd keeps the socket across server restarts, and a filter attached by an earlier
    start stays on it. Turned off (or attached for other key ids), it would keep dropping
    knocks in the kernel; a start with ``kernel_filter = false`` must take it off."""
    from server_helpers import packet

    def earlier_filter(udp):  # an earlier start's filter, for another key id
        kfilter.attach(udp, [bytes(KEY_ID_SIZE)])

    def send(tx, port):
        tx.sendto(packet(dst="::1"), ("::1", port))

    received, returncode, out, err = _inherited_socket_run(tmp_path, "", send, earlier_filter)
    assert len(received) == 1
    assert returncode == 0, err
    assert "Removed a kernel filter left on the socket by an earlier start" in out
    assert "received=1 accepted=1" in out
