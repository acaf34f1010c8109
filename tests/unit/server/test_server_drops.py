"""The socket's drop counter (SO_MEMINFO) against the real kernel, and the summary's timing.

The kernel facts ruroco.server.drops relies on are checked here, not assumed: a datagram the
socket filter refuses and one that finds the receive queue full both raise the counter, by
exactly one each, and it equals the ``drops`` column of /proc/net/udp.
"""

from __future__ import annotations

import os
import socket

import pytest

from ruroco.server import drops, kfilter
from ruroco.server.drops import DropReport, drop_line, read_drops

KEY_ID = bytes(range(8))


def _proc_drops(port: int) -> int:
    for name in ("/proc/net/udp", "/proc/net/udp6"):
        with open(name, encoding="ascii") as fh:
            next(fh)
            for line in fh:
                fields = line.split()
                if fields[1].endswith(f":{port:04X}"):
                    return int(fields[12])
    raise AssertionError(f"no socket on port {port}")


@pytest.fixture
def receiver():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    yield sock
    sock.close()


def _send(port: int, payloads: list[bytes]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        for data in payloads:
            tx.sendto(data, ("127.0.0.1", port))


def test_a_fresh_socket_has_dropped_nothing(receiver):
    assert read_drops(receiver) == 0


def test_datagrams_the_filter_refuses_count_as_drops(receiver):
    port = receiver.getsockname()[1]
    kfilter.attach(receiver, [KEY_ID])
    _send(port, [os.urandom(94) for _ in range(37)] + [b"short"] * 5)
    _send(port, [KEY_ID + os.urandom(86)] * 3)  # these pass the filter and are queued
    assert read_drops(receiver) == 42 == _proc_drops(port)
    assert len(receiver.recv(200)) == 94


def test_datagrams_that_find_the_queue_full_count_as_drops(receiver):
    port = receiver.getsockname()[1]
    receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the kernel's minimum
    _send(port, [os.urandom(1000) for _ in range(50)])
    queued = 0
    while True:
        try:
            receiver.recv(2000, socket.MSG_DONTWAIT)
        except BlockingIOError:
            break
        queued += 1
    assert 0 < queued < 50
    assert read_drops(receiver) == 50 - queued == _proc_drops(port)


def test_a_socket_without_the_counter_gives_none():
    a, b = socket.socketpair()
    with a, b:  # Unix sockets answer SO_MEMINFO too; a closed one does not
        a.close()
        assert read_drops(a) is None


def test_report_is_silent_before_the_interval_and_for_an_interval_without_drops(receiver):
    report = DropReport(receiver, 60, now=100.0)
    assert report.due == 160.0
    assert report.check(159.9, kernel_filter=True) is None
    assert report.check(160.0, kernel_filter=True) is None  # nothing dropped
    assert report.due == 220.0


def test_report_counts_the_drops_of_its_interval_only(receiver):
    port = receiver.getsockname()[1]
    kfilter.attach(receiver, [KEY_ID])
    _send(port, [b"x"] * 4)  # before the report starts: not counted
    report = DropReport(receiver, 60, now=0.0)
    _send(port, [b"x"] * 7)
    assert report.check(61.0, kernel_filter=True) == (
        "Kernel dropped 7 datagrams in the last 61 s (receive queue full or kernel filter)"
    )
    _send(port, [b"x"] * 2)
    assert report.check(120.0, kernel_filter=True) is None  # the next interval ends at 121
    assert report.check(121.0, kernel_filter=False) == (
        "Kernel dropped 2 datagrams in the last 60 s (receive queue full)"
    )


def test_the_counter_wraps_at_32_bits(receiver, monkeypatch):
    values = iter([2**32 - 3, 4])
    monkeypatch.setattr(drops, "read_drops", lambda sock: next(values))
    report = DropReport(receiver, 1, now=0.0)
    assert report.check(1.0, kernel_filter=False) == drop_line(7, 1.0, False)


def test_interval_zero_never_reports_and_a_reload_can_turn_it_on(receiver):
    port = receiver.getsockname()[1]
    kfilter.attach(receiver, [KEY_ID])
    report = DropReport(receiver, 0, now=0.0)
    _send(port, [b"x"] * 3)
    assert report.due == float("inf")
    assert report.check(1e9, kernel_filter=True) is None
    report.reschedule(10, now=50.0)  # counts from the reload on
    _send(port, [b"x"] * 2)
    assert report.due == 60.0
    assert report.check(60.0, kernel_filter=True) == drop_line(2, 10.0, True)
    report.reschedule(0, now=70.0)
    assert report.due == float("inf")


def test_config_key_defaults_to_a_minute_and_is_bounded(tmp_path):
    from ruroco.server.config import load_config
    from ruroco.tomlconfig import ConfigError

    path = tmp_path / "config.toml"
    path.write_text('ips = ["127.0.0.1"]\n')
    assert load_config(path).drop_report_seconds == 60
    path.write_text('ips = ["127.0.0.1"]\ndrop_report_seconds = 0\n')
    assert load_config(path).drop_report_seconds == 0
    for bad in ("-1", "1.5", '"60"', str(2**32)):
        path.write_text(f'ips = ["127.0.0.1"]\ndrop_report_seconds = {bad}\n')
        with pytest.raises(ConfigError, match="drop_report_seconds"):
            load_config(path)


def test_a_reload_applies_the_interval_and_names_it():
    from ruroco.ipaddr import parse_ip
    from ruroco.server.config import ServerConfig
    from ruroco.server.reload import applied, live_changes, needs_restart

    running = ServerConfig(ips=(parse_ip("127.0.0.1"),))
    new = ServerConfig(ips=(parse_ip("127.0.0.1"),), drop_report_seconds=5)
    assert applied(running, new).drop_report_seconds == 5
    assert live_changes(running, new) == ("drop_report_seconds",)
    assert needs_restart(running, new) == ()


def test_fail2ban_does_not_act_on_the_drop_line(tmp_path):
    """The line names no source (the dropped ones are spoofable), and the filter must not
    take it for a rejection."""
    from test_server_fail2ban import fail2ban

    from ruroco.log import format_line

    log = tmp_path / "server.log"
    log.write_text(format_line("ERROR", drop_line(19083744, 60.0, True)))
    ips, summary = fail2ban(log)
    assert ips == []
    assert "0 matched, 1 missed" in summary
