"""The periodic drop summary of a real server: real datagrams that the kernel drops at its
socket, counted by the kernel and reported by the server with the right count.

With ``drop_report_seconds = 1``: garbage refused by the kernel filter, and oversized
datagrams that find the queue full while the server is stopped (SIGSTOP), each show up as
``Kernel dropped N datagrams in the last S s (...)`` lines whose counts add up to the
socket's own drop counter (/proc/net/udp) and to what was sent; an interval without drops
writes no line.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import time

from e2e_harness import Deployment, DeploymentFactory, wait_for

LINE = re.compile(r"Kernel dropped (\d+) datagrams in the last (\d+) s \(([^)]*)\)")


def _socket_drops(port: int) -> int:
    with open("/proc/net/udp", encoding="ascii") as fh:
        next(fh)
        for line in fh:
            fields = line.split()
            if fields[1].endswith(f":{port:04X}"):
                return int(fields[12])
    raise AssertionError(f"no UDP socket on port {port}")


def _state(pid: int) -> str:
    """The process state letter from /proc/PID/stat (after the command name's parenthesis)."""
    with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
        return fh.read().rpartition(")")[2].split()[0]


def _drop_lines(dep: Deployment, since: int) -> list[tuple[int, int, str]]:
    assert dep.server is not None
    found = LINE.findall(dep.server.log(since))
    return [(int(n), int(s), why) for n, s, why in found]


def _reported(dep: Deployment, since: int, total: int) -> list[tuple[int, int, str]]:
    """The drop lines since ``since``, once their counts add up to ``total`` (bounded)."""

    def complete() -> list[tuple[int, int, str]] | None:
        lines = _drop_lines(dep, since)
        return lines if sum(n for n, _, _ in lines) >= total else None

    return list(wait_for(complete, 10.0, f"drop lines adding up to {total}"))  # type: ignore[arg-type]


def test_the_server_reports_what_the_kernel_filter_dropped(
    make_deployment: DeploymentFactory,
) -> None:
    dep = make_deployment()
    dep.write_config(kernel_filter=True, drop_report_seconds=1)
    dep.start()
    assert dep.server is not None
    mark = dep.server.mark()
    before = _socket_drops(dep.port)
    garbage = [os.urandom(94) for _ in range(300)] + [b"short"] * 100 + [os.urandom(2000)] * 50
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        for data in garbage:
            tx.sendto(data, (dep.host, dep.port))
    dep.knock()  # a real knock passes the filter and runs
    dep.wait_runs(1)
    lines = _reported(dep, mark, len(garbage))
    assert _socket_drops(dep.port) - before == len(garbage)
    assert sum(n for n, _, _ in lines) == len(garbage), lines
    assert all(why == "receive queue full or kernel filter" for _, _, why in lines), lines
    assert all(1 <= s <= 3 for _, s, _ in lines), lines
    # nothing dropped since: the next intervals stay silent
    quiet = dep.server.mark()
    time.sleep(2.5)
    assert _drop_lines(dep, quiet) == []
    assert dep.server.find("Rejected datagram") == []  # the filter kept them from the server


def test_the_server_reports_datagrams_that_found_its_queue_full(
    make_deployment: DeploymentFactory,
) -> None:
    dep = make_deployment()
    dep.write_config(drop_report_seconds=1)
    dep.start()
    server = dep.server
    assert server is not None and server.proc is not None
    mark = server.mark()
    before = _socket_drops(dep.port)
    os.kill(server.pid, signal.SIGSTOP)  # nobody reads: the queue fills up
    try:
        wait_for(lambda: _state(server.pid) == "T", 5.0, "the server to stop")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            for _ in range(400):  # 24 MB: more than any receive queue the server gets
                tx.sendto(os.urandom(60_000), (dep.host, dep.port))
        dropped = _socket_drops(dep.port) - before
    finally:
        os.kill(server.pid, signal.SIGCONT)
    assert 0 < dropped < 400
    lines = _reported(dep, mark, dropped)
    assert sum(n for n, _, _ in lines) == dropped, lines
    assert all(why == "receive queue full" for _, _, why in lines), lines
    # the queued ones were read and rejected as they should be
    assert len(server.find(r"DEBUG.*Invalid read count 60000")) == 400 - dropped
