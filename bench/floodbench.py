"""Flood scenarios: a flood sender process plus one legitimate knock per second.

The legitimate knocks are real ``ruroco-client send`` processes (source 127.0.0.1, which the
flood never uses). "Absorbed" is what the server itself read, from its shutdown summary line;
/proc/net/snmp deltas (this run has its own network namespace) show what the kernel
delivered to the socket and what it dropped because the receive buffer was full.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import cflood, proc, stats
from bench.rurocoenv import COMMAND, REPO, Deployment

SOURCES = 1000


def run_flood(
    root: Path,
    *,
    mode: str,
    legacy: bool,
    duration: float = 20.0,
    rate: float = 0.0,
    kernel_filter: bool = False,
) -> dict:
    """One deployment under flood for ``duration`` s; returns counts, rates and peak RSS.

    With ``kernel_filter`` the deployment's config sets ``kernel_filter = true``: the kernel
    drops what the socket filter refuses before queueing and counts it as UDP InErrors.
    """
    dep = Deployment(root, legacy=legacy, kernel_filter=kernel_filter)
    binary = cflood.build() if mode == "random" and rate == 0 else None
    if binary is not None:
        key_id = dep.key.key_id if mode == "known" else None
        flood_argv = cflood.argv(binary, "127.0.0.1", dep.port, SOURCES, 2, duration, rate, key_id)
    else:
        flood_argv = [
            sys.executable,
            "-m",
            "bench.flood",
            "--target",
            f"127.0.0.1:{dep.port}",
            "--mode",
            mode,
            "--sources",
            str(SOURCES),
            "--duration",
            str(duration),
            "--rate",
            str(rate),
        ]
        if mode == "known":
            flood_argv += ["--key-file", str(dep.key_file)]
    result = knock_flood(dep, flood_argv, root, duration)
    seconds = result["flood"].get("seconds") or duration
    summary = result["server_summary"]
    received = summary["received"] if summary else None
    return {
        "mode": mode,
        "ordering": "legacy" if legacy else "new",
        "kernel_filter": kernel_filter,
        "sources": SOURCES,
        "engine": "c-sendmmsg" if binary is not None else "python",
        "target_rate": rate,
        **result,
        "absorbed_per_s": received / seconds if received is not None else None,
    }


def knock_flood(
    dep: Deployment,
    flood_argv: list[str],
    root: Path,
    duration: float,
    first_knock_s: float = 1.0,
) -> dict[str, Any]:
    """Start ``dep``, run the flood sender ``flood_argv`` with one legitimate
    ``ruroco-client send`` per second from 127.0.0.1 (the first ``first_knock_s`` into the
    flood, when it is at full rate), stop
    everything; returns the sender's JSON line, the server's summary, the /proc/net/snmp
    UDP deltas, the server socket's drop counter (/proc/net/udp, read before the server
    stops), the knocks sent and run, the server's drop summary lines and its peak RSS."""
    conf_dir = root / "client"
    conf_dir.mkdir()
    client_env = dict(os.environ, RUROCO_CONF_DIR=str(conf_dir))
    client_argv = [
        proc.tool("ruroco-client"),
        "send",
        "-a",
        f"127.0.0.1:{dep.port}",
        "-k",
        str(dep.key_file),
        "-c",
        COMMAND,
    ]
    knocks_sent = knocks_failed = 0
    peak_kb = 0
    peak_queue = 0  # bytes (kernel truesize) in the server socket's receive queue, sampled
    socket_drops = None
    flood_out = root / "flood.json"
    try:
        dep.start()
        proc.wait_for(
            lambda: "Running server on" in dep.server_log.read_text(errors="replace"),
            20,
            "ruroco-server receive loop",
            dep.server,
        )
        drops0 = udp_socket_drops(dep.port)
        snmp0 = stats.read_snmp_udp()
        flooder = proc.start(flood_argv, flood_out, cwd=REPO)
        try:
            time.sleep(first_knock_s)  # the flood is at full rate before the first knock
            clients: list[subprocess.Popen] = []
            next_knock = time.monotonic()
            hard_stop = time.monotonic() + duration + 30
            while flooder.poll() is None and time.monotonic() < hard_stop:
                if time.monotonic() >= next_knock:
                    clients.append(
                        subprocess.Popen(
                            client_argv,
                            env=client_env,
                            stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                        )
                    )
                    next_knock += 1.0
                peak_kb = max(peak_kb, stats.peak_rss_kb(dep.server.pid) or 0)
                state = udp_socket_state(dep.port)
                if state is not None:
                    peak_queue = max(peak_queue, state[0])
                dep.fifo.drain()
                time.sleep(0.05)
            for c in clients:
                try:
                    rc = c.wait(10)
                except subprocess.TimeoutExpired:
                    c.kill()
                    rc = c.wait()
                if rc == 0:
                    knocks_sent += 1
                else:
                    knocks_failed += 1
        finally:
            proc.stop(flooder, grace=5)
        dep.fifo.drain(2.0)  # commands of the last knocks
        snmp1 = stats.read_snmp_udp()
        drops1 = udp_socket_drops(dep.port)
        if drops0 is not None and drops1 is not None:
            socket_drops = drops1 - drops0
        peak_kb = max(peak_kb, stats.peak_rss_kb(dep.server.pid) or 0)
        ran = dep.fifo.total
        crashed = dep.crashed()
    finally:
        log = dep.stop()
    flood_result = _last_json(flood_out.read_text(errors="replace"))
    delta = stats.snmp_delta(snmp0, snmp1)
    seconds = flood_result.get("seconds") or duration
    return {
        "flood": flood_result,
        "sent_per_s": flood_result.get("rate"),
        "server_summary": stats.parse_summary(log),
        "snmp_delta": delta,
        "delivered_per_s": delta.get("InDatagrams", 0) / seconds,
        "rcvbuf_drops_per_s": delta.get("RcvbufErrors", 0) / seconds,
        # Socket-filter drops are counted as InErrors (RcvbufErrors is a subset of InErrors).
        "filtered_per_s": (delta.get("InErrors", 0) - delta.get("RcvbufErrors", 0)) / seconds,
        "socket_drops": socket_drops,
        "peak_queue_bytes": peak_queue,
        "drop_lines": drop_lines(log),
        "legit_sent": knocks_sent,
        "legit_client_failures": knocks_failed,
        "legit_ran": ran,
        "peak_rss_mb": peak_kb / 1024 if peak_kb else None,
        **({"error": crashed} if crashed else {}),
    }


def udp_socket_state(port: int) -> tuple[int, int] | None:
    """``(rx_queue bytes, drops)`` of the UDP socket bound to ``port`` (/proc/net/udp or
    udp6). ``drops`` is the kernel's per-socket count of datagrams a socket filter refused
    or a full queue dropped (tests/unit/server/test_server_drops.py checks both)."""
    want = f":{port:04X}"
    for name in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(name, encoding="ascii") as fh:
                next(fh)
                for line in fh:
                    fields = line.split()
                    if fields[1].endswith(want):
                        return int(fields[4].split(":")[1], 16), int(fields[12])
        except FileNotFoundError:
            continue
    return None


def udp_socket_drops(port: int) -> int | None:
    state = udp_socket_state(port)
    return state[1] if state is not None else None


_DROP_LINE = re.compile(r"Kernel dropped (\d+) datagrams in the last (\d+) s \(([^)]*)\)")


def drop_lines(log: str) -> list[dict[str, Any]]:
    """The server's periodic drop summary lines (ruroco.server.drops): count, seconds, why."""
    return [
        {"count": int(m.group(1)), "seconds": int(m.group(2)), "why": m.group(3)}
        for m in _DROP_LINE.finditer(log)
    ]


def _last_json(text: str) -> dict:
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                break
    return {"error": text[-500:]}
