"""Grant figures: time from a knock to the guarded port accepting (docs/grants.md).

A real server and commander with one grant (``[grants.bench]``, ``tcp/PORT``); each knock
comes from its own address 127.5.x.y (so each is a fresh ``open``, never an ``extend``), and
right after sending it the bench tries TCP connects from that address to the guarded port,
each try ``STEP_S`` long, until the handshake completes. Also measured: the same with the
24-byte request written straight to the commander's socket (the server's share is the
difference), and how long the guard takes to come back after ``nft flush ruleset``.

nftables is changed, so this stage runs only in the bench's private network namespace
(``bench/run.sh`` as root, or ``python -m bench.grants`` under ``unshare -n``).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import click

from bench import stats
from bench.flood import source_addresses
from bench.rurocoenv import Counter, Deployment
from ruroco import protocol
from ruroco.ipaddr import parse_ip
from ruroco.ipc import encode_commander_data

GRANT = "bench"
PORT = 2222
STEP_S = 0.001  # one connect try: the resolution of the figure
LIMIT_S = 3.0  # a knock not accepted within this is lost
FLUSHES = 5


def _open_packet(key: protocol.Key, counter: int) -> bytes:
    data = protocol.ClientData(
        cmd_hash=protocol.command_hash(f"open_{GRANT}"),
        counter=counter,
        strict=True,
        src_ip=None,
        dst_ip=parse_ip("127.0.0.1"),
    )
    return protocol.build_packet(key, data)


def _listen() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", PORT))
    s.listen(512)

    def accept() -> None:
        while True:
            try:
                conn, _ = s.accept()
            except OSError:
                return
            conn.close()

    threading.Thread(target=accept, daemon=True).start()
    return s


def try_connect(src: str, timeout: float) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as c:
        c.bind((src, 0))
        c.settimeout(timeout)
        try:
            c.connect(("127.0.0.1", PORT))
        except OSError:
            return False
        return True


def wait_accepting(src: str, t0: int) -> float | None:
    """Milliseconds from ``t0`` (perf_counter_ns) to the first accepted handshake."""
    while time.perf_counter_ns() - t0 < LIMIT_S * 1e9:
        if try_connect(src, STEP_S):
            return (time.perf_counter_ns() - t0) / 1e6
    return None


def _nft(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nft", *args], capture_output=True, text=True, timeout=10)


def _guard_back_ms() -> list[float]:
    """``nft flush ruleset`` → ``inet ruroco`` listed again, ``FLUSHES`` times."""
    out = []
    for _ in range(FLUSHES):
        t0 = time.perf_counter_ns()
        _nft("flush", "ruleset")
        while time.perf_counter_ns() - t0 < 5e9:
            if _nft("list", "table", "inet", "ruroco").returncode == 0:
                out.append((time.perf_counter_ns() - t0) / 1e6)
                break
        time.sleep(0.2)
    return out


def run_grants(root: Path, knocks: int = 100, timeout_sec: int = 60) -> dict:
    if os.environ.get("RUROCO_BENCH_NETNS") != "1":
        raise RuntimeError("needs the bench's private network namespace: it changes nftables")
    dep = Deployment(root, global_limit=10_000)
    with open(dep.commands, "a") as fh:
        fh.write(f'[grants.{GRANT}]\nports = ["tcp/{PORT}"]\ntimeout_sec = {timeout_sec}\n')
    listener = _listen()
    sources = source_addresses(2 * knocks + 1, 5)
    knock_ms: list[float] = []
    direct_ms: list[float] = []
    lost = 0
    try:
        dep.start()
        outsider = sources.pop()
        refused_before = sum(not try_connect(src, 0.05) for src in sources[:5])
        counter = Counter()
        for src in sources[:knocks]:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                udp.bind((src, 0))
                pkt = _open_packet(dep.key, counter.next())
                t0 = time.perf_counter_ns()
                udp.sendto(pkt, dep.address)
                ms = wait_accepting(src, t0)
            if ms is None:
                lost += 1
            else:
                knock_ms.append(ms)
        sock_path = str(dep.root / "ruroco.socket")
        for src in sources[knocks:]:
            message = encode_commander_data(protocol.command_hash(f"open_{GRANT}"), parse_ip(src))
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                t0 = time.perf_counter_ns()
                s.connect(sock_path)
                s.sendall(message)
            ms = wait_accepting(src, t0)
            if ms is not None:
                direct_ms.append(ms)
        outsider_refused = not try_connect(outsider, 0.2)
        back_ms = _guard_back_ms()
        outsider_refused_after_flush = not try_connect(outsider, 0.2)
        crashed = dep.crashed()
    finally:
        listener.close()
        dep.stop()
        _nft("delete", "table", "inet", "ruroco")
    result: dict = {
        "knocks": knocks,
        "measured": len(knock_ms),
        "lost": lost,
        "step_ms": STEP_S * 1000,
        "refused_before_knock": f"{refused_before} / 5",
        "outsider_refused": outsider_refused,
        "outsider_refused_after_flush": outsider_refused_after_flush,
        "nft_version": _nft("--version").stdout.strip(),
        **({"error": crashed} if crashed else {}),
    }
    for name, values in (("", knock_ms), ("commander_only_", direct_ms), ("guard_back_", back_ms)):
        if values:
            result[f"{name}p50_ms"] = stats.percentile(values, 50)
            result[f"{name}p99_ms"] = stats.percentile(values, 99)
            result[f"{name}max_ms"] = max(values)
            result[f"{name}n"] = len(values)
    return result


@click.command()
@click.option("--knocks", type=click.IntRange(1, 1000), default=100)
@click.option("--work", type=click.Path(path_type=Path), required=True)
def main(knocks: int, work: Path) -> None:
    """Run the stage alone (under ``unshare -n``) and print its figures as JSON."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    os.environ["RUROCO_BENCH_NETNS"] = "1"
    click.echo(json.dumps(run_grants(work, knocks)))


if __name__ == "__main__":
    main()
