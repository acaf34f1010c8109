"""Tests of the default-deployment flood's parts: the C sender's shapes and spoofed sources,
the role rendering, the systemd socket emulation and the report rows."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest

from bench import cflood, sdactivate
from bench.defaultflood import host_overrides, render_role
from bench.report import default_flood_lines, default_flood_rows
from ruroco.protocol import MSG_SIZE

KEY_ID = bytes.fromhex("00ff10ab00cd7f80")


def _flood(shape: str, sources: int, pktinfo: bool) -> tuple[dict, list[tuple[bytes, str]]]:
    binary = cflood.build()
    assert binary is not None, "a C compiler is needed for the C flood sender"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as r:
        r.bind(("127.0.0.1", 0))
        r.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        port = r.getsockname()[1]
        key_id = KEY_ID if shape in ("known", "mix") else None
        argv = cflood.argv(
            binary, "127.0.0.1", port, sources, 9, 0.2, 2000, key_id, shape=shape, pktinfo=pktinfo
        )
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=True)
        got = []
        while True:
            try:
                data, peer = r.recvfrom(70_000, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            got.append((data, peer[0]))
    return json.loads(done.stdout), got


def test_spoofed_sources_send_from_every_address_in_turn():
    result, got = _flood("known", 300, pktinfo=True)
    assert result["pktinfo"] is True and result["sent"] == len(got) > 300
    assert {peer for _, peer in got} == {f"127.9.{i // 250}.{i % 250 + 1}" for i in range(300)}
    assert all(len(d) == MSG_SIZE and d[:8] == KEY_ID for d, _ in got)


def test_shapes_have_their_sizes():
    _, big = _flood("oversized", 5, pktinfo=True)
    assert big and all(1000 <= len(d) <= 65_000 for d, _ in big)
    _, small = _flood("small", 5, pktinfo=False)
    sizes = {len(d) for d, _ in small}
    assert small and max(sizes) <= 199 and MSG_SIZE not in sizes and min(sizes) < 20
    _, mix = _flood("mix", 5, pktinfo=True)
    kinds = {
        "known": sum(len(d) == MSG_SIZE and d[:8] == KEY_ID for d, _ in mix),
        "oversized": sum(len(d) >= 1000 for d, _ in mix),
        "small": sum(len(d) < 200 and len(d) != MSG_SIZE for d, _ in mix),
    }
    assert all(abs(n - len(mix) / 4) <= 8 for n in kinds.values()), (kinds, len(mix))


def test_argv_refuses_a_shape_without_its_key_id():
    with pytest.raises(ValueError, match="needs the key id"):
        cflood.argv(Path("x"), "h", 1, 1, 2, 1, 0, None, shape="mix")
    with pytest.raises(ValueError, match="unknown flood shape"):
        cflood.argv(Path("x"), "h", 1, 1, 2, 1, 0, None, shape="nope")


def test_the_role_renders_its_defaults(tmp_path: Path):
    files = render_role(tmp_path / "role", host_overrides(tmp_path, 34567))
    config = files["config"].read_text()
    unit = sdactivate.socket_settings(files["socket_unit"].read_text())
    assert 'ips = ["127.0.0.1"]' in config and "kernel_filter = true" in config
    assert "drop_report_seconds = 60" in config
    assert unit == {"ListenDatagram": "[::]:34567", "ReceiveBuffer": "32M"}
    off = render_role(
        tmp_path / "off", {**host_overrides(tmp_path, 1), "ruroco_server_receive_buffer": ""}
    )
    assert sdactivate.socket_settings(off["socket_unit"].read_text()) == {
        "ListenDatagram": "[::]:1"
    }


def test_socket_settings_refuse_what_the_emulation_cannot_apply():
    unit = "[Socket]\nListenDatagram=[::]:80\nFreeBind=true\n"
    with pytest.raises(ValueError, match="FreeBind"):
        sdactivate.socket_settings(unit)


def test_sizes_and_the_socket_systemd_would_open():
    assert sdactivate.parse_size("32M") == 32 << 20
    assert sdactivate.parse_size("4096") == 4096
    assert sdactivate.parse_size("1G") == 1 << 30
    with pytest.raises(ValueError):
        sdactivate.parse_size("12MB")
    sock = sdactivate.open_socket({"ListenDatagram": "[::]:0", "ReceiveBuffer": "8M"})
    with sock:
        assert sock.family == socket.AF_INET6 and sock.type == socket.SOCK_DGRAM
        # past rmem_max as root (SO_RCVBUFFORCE), as systemd's PID 1 sets it; doubled
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == 16 << 20


def test_report_rows_and_lines_show_every_count():
    r = {
        "flood": {"sent": 600, "seconds": 60.0, "rate": 10.0, "mean_size": 94.0},
        "sent_per_s": 10.0,
        "target_rate": 0.0,
        "sources": 16000,
        "snmp_delta": {"InErrors": 540, "RcvbufErrors": 60, "InDatagrams": 60},
        "rcvbuf_drops_per_s": 1.0,
        "socket_drops": 540,
        "peak_queue_bytes": 2 << 20,
        "drop_lines": [{"count": 500, "seconds": 60, "why": "x"}],
        "server_summary": {"received": 60, "accepted": 59, "rejected": 1, "rejected_size": 1},
        "legit_sent": 60,
        "legit_ran": 59,
        "legit_client_failures": 0,
        "peak_rss_mb": 35.0,
        "config": "kernel_filter = true\n",
        "socket_unit": "[Socket]\nReceiveBuffer=32M\n",
        "loadavg_1min_before": 2.5,
    }
    rows = default_flood_rows({"flood_default_random": r})
    assert rows[0][2] == "10.0 / 8.0 / 1.0"
    assert rows[1][2] == "59 / 60 ✗; 35.0 ✓"
    (line,) = default_flood_lines({"flood_default_random": r})
    assert "kernel_filter = true, ReceiveBuffer=32M; load average 2.5" in line
    assert "socket's own drop counter 540" in line and "counting 500" in line
