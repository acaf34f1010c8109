"""Knock-to-command latency: UDP send of a prebuilt packet -> ``printf`` into the FIFO.

Each knock is built before the clock starts (fresh counter), sent from its own loopback
source address (127.<octet>.x.y, so the per-IP limit of 2/s never applies), and timed until
the command's byte arrives. Knocks are strictly sequential. The global limit in this
deployment is raised (``GLOBAL_LIMIT``) because sequential knocks arrive at several hundred
per second, which the default global cap of 100/s would otherwise refuse.

``blocklist_dir`` puts the server's blocklist elsewhere (the bench passes a directory on
tmpfs for a comparison run): the same path without the cost of the disk flushes, so the
difference is what durability of the replay floor costs on this machine.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
import time
from pathlib import Path

from bench import proc, stats
from bench.flood import source_addresses
from bench.hooks.prespawn import sitecustomize as prespawn
from bench.rurocoenv import COMMAND, Counter, Deployment
from ruroco.ipaddr import parse_ip
from ruroco.protocol import command_hash, encode_commander_data

GLOBAL_LIMIT = 1_000_000
WARMUP = 20
WAIT_S = 2.0


TMPFS = Path("/dev/shm")
# The spaced run: idle time after each command's byte before the next knock, so every knock
# meets an idle machine (as in real use) instead of caches and CPUs still warm from the last.
SPACED_GAP_S = 0.002


def run_latency_spaced(root: Path, knocks: int = 1000, time_limit: float = 90.0) -> dict:
    """``run_latency`` with ``SPACED_GAP_S`` of idle time between knocks."""
    result = run_latency(root, knocks, time_limit, gap_s=SPACED_GAP_S)
    result["gap_ms"] = SPACED_GAP_S * 1000
    return result


# The diagnostic run without replacement shells: this many timed knocks (plus WARMUP), each
# releasing a shell the commander started before the run (~0.2 MB and 4 descriptors per
# waiting shell: docs/performance.md, "Warm shells"; so not the thousand of the other runs).
PRESPAWN_KNOCKS = 300
PRESPAWN_WAIT_S = 60.0


def run_latency_prespawned(
    root: Path, knocks: int = PRESPAWN_KNOCKS, time_limit: float = 90.0
) -> dict:
    """``run_latency`` back to back, with a shell for every knock of the run spawned before it
    and none replaced during it (``bench/hooks/prespawn``): what a knock costs without a
    replacement shell starting beside it (docs/performance.md)."""
    result = run_latency(root, knocks, time_limit, prespawned=knocks + WARMUP)
    result["prespawned"] = knocks + WARMUP
    return result


def run_latency_tmpfs(root: Path, knocks: int = 1000, time_limit: float = 90.0) -> dict:
    """``run_latency`` with the blocklist in a fresh directory on /dev/shm (removed after)."""
    if not TMPFS.is_dir():
        return {"error": f"{TMPFS} is not available"}
    shm = Path(tempfile.mkdtemp(prefix="ruroco-bench-", dir=TMPFS))
    try:
        result = run_latency(root, knocks, time_limit, blocklist_dir=shm)
    finally:
        shutil.rmtree(shm, ignore_errors=True)
    result["blocklist_dir"] = "tmpfs"
    return result


def run_latency(
    root: Path,
    knocks: int = 1000,
    time_limit: float = 90.0,
    blocklist_dir: Path | None = None,
    gap_s: float = 0.0,
    prespawned: int = 0,
) -> dict:
    """One server+commander, ``WARMUP`` untimed knocks, then ``knocks`` timed ones, each
    sent ``gap_s`` after the previous command's byte arrived (0: back to back).
    ``prespawned``: the commander's pool holds that many shells before the first knock and
    spawns no replacement (``Deployment``); the result counts the shells before and after."""
    dep = Deployment(
        root, global_limit=GLOBAL_LIMIT, blocklist_dir=blocklist_dir, prespawned=prespawned
    )
    socks: list[socket.socket] = []
    lat_ms: list[float] = []
    lost = sent = 0
    shells: dict = {}
    try:
        dep.start()
        if prespawned:
            full = prespawn.FULL_LINE.encode()
            proc.wait_for(
                lambda: full in dep.commander_log.read_bytes(),
                PRESPAWN_WAIT_S,
                f"{prespawned} warm shells (no {prespawn.FULL_LINE!r} in {dep.commander_log})",
                dep.commander,
            )
            shells["before"] = dep.shells()
        for addr in source_addresses(knocks + WARMUP, 3):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            socks.append(s)
            s.bind((addr, 0))
        counter = Counter()
        deadline = time.monotonic() + time_limit
        for i, sock in enumerate(socks):
            if time.monotonic() > deadline:
                break
            pkt = dep.packet(counter.next())
            t0 = time.perf_counter_ns()
            sock.sendto(pkt, dep.address)
            t1 = dep.fifo.wait_byte(WAIT_S)
            sent += 1
            if t1 is None and dep.crashed():
                break
            if gap_s:
                time.sleep(gap_s)
            if i < WARMUP:
                continue
            if t1 is None:
                lost += 1
            else:
                lat_ms.append((t1 - t0) / 1e6)
        dep.fifo.drain(0.5)
        if prespawned:  # no refill: the commander alone would spawn cold
            shells["after"] = dep.shells()
            shells["sent"] = sent  # fewer than the sockets if the time limit cut the run
            direct_ms: list[float] = []
        else:
            direct_ms = _commander_only(dep, min(200, knocks))
        crashed = dep.crashed()
    finally:
        for s in socks:
            s.close()
        log = dep.stop()
    result = {
        "knocks": knocks,
        "measured": len(lat_ms),
        "lost": lost,
        "warmup": WARMUP,
        "global_limit": GLOBAL_LIMIT,
        "server_summary": stats.parse_summary(log),
        **({"error": crashed} if crashed else {}),
        **({"shells": shells} if shells else {}),
    }
    if direct_ms:
        result.update(
            commander_only_p50_ms=stats.percentile(direct_ms, 50),
            commander_only_p99_ms=stats.percentile(direct_ms, 99),
            commander_only_n=len(direct_ms),
        )
    if lat_ms:
        result.update(
            p50_ms=stats.percentile(lat_ms, 50),
            p99_ms=stats.percentile(lat_ms, 99),
            max_ms=max(lat_ms),
            min_ms=min(lat_ms),
        )
    return result


def _commander_only(dep: Deployment, n: int) -> list[float]:
    """Breakdown: the 24-byte request written straight to the commander socket -> FIFO byte
    (back to back, the commander releasing its warm shells as configured by default:
    docs/performance.md, "Warm shells").

    The difference to the full knock latency is the server's share (receive, decrypt,
    checks, durable replay-floor write, connect).
    """
    message = encode_commander_data(command_hash(COMMAND), parse_ip("127.0.0.1"))
    out: list[float] = []
    for _ in range(n):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2.0)
            t0 = time.perf_counter_ns()
            s.connect(str(dep.root / "ruroco.socket"))
            s.sendall(message)
        t1 = dep.fifo.wait_byte(WAIT_S)
        if t1 is not None:
            out.append((t1 - t0) / 1e6)
    return out
