"""fwknop 2.6 for comparison: fwknopd in UDP server mode running the same FIFO write.

Set-up (options from the fwknopd(8) manual): ``ENABLE_UDP_SERVER Y`` with ``UDPSERV_PORT``
(the UDP server binds INADDR_ANY on that port, which is why run.sh gives the whole run its own
network namespace), and an access.conf stanza with ``CMD_CYCLE_OPEN`` running a two-line
shell script whose only job is ``printf x > FIFO`` (fwknopd splits the command line itself
without a shell, so the redirection has to live in a script), ``CMD_CYCLE_CLOSE NONE`` and
``CMD_CYCLE_TIMER``. Keys come from ``fwknop --key-gen`` into a private rc file; ``HOME``
points at the temp dir so that nothing is written to the real home directory.

Latency: packets are produced by the real client in test mode (``-T``, which prints the
"Final SPA Data" it would send), then sent by the bench over UDP with timestamps around the
send, exactly like the ruroco latency run.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from bench import proc, stats
from bench.clientbench import time_runs
from bench.fifo import Fifo
from bench.latency import SPACED_GAP_S, WARMUP

KEY_LINE = re.compile(r"^(KEY_BASE64|HMAC_KEY_BASE64):\s+(\S+)$", re.M)
FINAL = re.compile(r"Final SPA Data:\s+(\S+)")


def available() -> str | None:
    """None if fwknop and fwknopd are installed, else why not."""
    missing = [b for b in ("fwknop", "fwknopd") if shutil.which(b) is None]
    return f"not installed: {', '.join(missing)}" if missing else None


def parse_keygen(text: str) -> dict[str, str]:
    """``{"KEY_BASE64": ..., "HMAC_KEY_BASE64": ...}`` from ``fwknop --key-gen`` output."""
    keys = dict(KEY_LINE.findall(text))
    if set(keys) != {"KEY_BASE64", "HMAC_KEY_BASE64"}:
        raise ValueError("fwknop --key-gen printed no KEY_BASE64/HMAC_KEY_BASE64 pair")
    return keys


def write_configs(root: Path, port: int, keys: dict[str, str], fifo: Path) -> dict[str, Path]:
    """fwknopd.conf, access.conf, the client rc file and the command script (all 0600/0700)."""
    script = root / "knock.sh"
    script.write_text(f"#!/bin/sh\nprintf x > '{fifo}'\n")
    script.chmod(0o700)
    files = {
        "fwknopd.conf": (
            "ENABLE_UDP_SERVER Y;\n"
            f"UDPSERV_PORT {port};\n"
            f"FWKNOP_RUN_DIR {root};\n"
            f"FWKNOP_PID_FILE {root}/fwknopd.pid;\n"
            f"DIGEST_FILE {root}/digest.cache;\n"
        ),
        "access.conf": (
            "SOURCE ANY\n"
            f"KEY_BASE64 {keys['KEY_BASE64']}\n"
            f"HMAC_KEY_BASE64 {keys['HMAC_KEY_BASE64']}\n"
            f"CMD_CYCLE_OPEN /bin/sh {script}\n"
            "CMD_CYCLE_CLOSE NONE\n"
            "CMD_CYCLE_TIMER 1\n"
        ),
        "client.rc": (
            "[default]\n"
            f"KEY_BASE64 {keys['KEY_BASE64']}\n"
            f"HMAC_KEY_BASE64 {keys['HMAC_KEY_BASE64']}\n"
            "USE_HMAC Y\n"
            f"SPA_SERVER_PORT {port}\n"
        ),
    }
    out = {}
    for name, text in files.items():
        path = root / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        out[name] = path
    return out


@contextlib.contextmanager
def _fwknopd(root: Path) -> Iterator[_Daemon]:
    """A running fwknopd with its keys, configs and FIFO under ``root``; stopped after."""
    root.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, HOME=str(root))
    gen = subprocess.run(
        ["fwknop", "--key-gen", "--rc-file", str(root / "keygen.rc")],
        env=env,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    keys = parse_keygen(gen.stdout)
    port = proc.free_udp_port()
    files = write_configs(root, port, keys, root / "cmd.fifo")
    client = [
        "fwknop",
        "-A",
        "tcp/22",
        "-a",
        "127.0.0.1",
        "-D",
        "127.0.0.1",
        "--use-hmac",
        "--rc-file",
        str(files["client.rc"]),
    ]
    daemon = None
    fifo = Fifo(root / "cmd.fifo")  # the last step before the try that closes it
    try:
        daemon = proc.start(
            [
                "fwknopd",
                "-f",
                "-c",
                str(files["fwknopd.conf"]),
                "-a",
                str(files["access.conf"]),
                "-p",
                str(root / "fwknopd.pid"),
                "-d",
                str(root / "digest.cache"),
            ],
            root / "fwknopd.log",
            env=env,
        )
        proc.wait_for(lambda: proc.udp_port_bound(port), 20, "fwknopd", daemon)
        time.sleep(0.2)
        yield _Daemon(root, client, env, fifo, port, daemon)
    finally:
        if daemon is not None:
            proc.stop(daemon)
        fifo.close()


class _Daemon:
    """A running fwknopd (``_fwknopd``): its client command line, FIFO and port."""

    def __init__(
        self,
        root: Path,
        client: list[str],
        env: dict[str, str],
        fifo: Fifo,
        port: int,
        daemon: subprocess.Popen,
    ) -> None:
        self.root, self.client, self.env, self.fifo = root, client, env, fifo
        self.port, self.daemon = port, daemon

    def latency(self, knocks: int, gap_s: float = 0.0, time_limit: float = 60.0) -> dict:
        """Build ``WARMUP`` + ``knocks`` packets with the real client (-T), then time send -> FIFO
        byte, sending each ``gap_s`` after the previous byte arrived (0: back to back); the first
        ``WARMUP`` are sent and not timed, as in ruroco's runs (``bench/latency.py``)."""
        packets = []
        deadline = time.monotonic() + time_limit
        for _ in range(WARMUP + knocks):
            if time.monotonic() > deadline:
                break
            done = subprocess.run(
                [*self.client, "-T"],
                env=self.env,
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
            m = FINAL.search(done.stdout)
            if m:
                packets.append(m.group(1).encode("ascii"))
        lat_ms: list[float] = []
        lost = 0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            for i, pkt in enumerate(packets):
                if time.monotonic() > deadline or self.daemon.poll() is not None:
                    break
                t0 = time.perf_counter_ns()
                sock.sendto(pkt, ("127.0.0.1", self.port))
                t1 = self.fifo.wait_byte(2.0)
                if gap_s:
                    time.sleep(gap_s)
                if i < WARMUP:
                    continue
                if t1 is None:
                    lost += 1
                else:
                    lat_ms.append((t1 - t0) / 1e6)
        self.fifo.drain(0.5)
        out: dict = {
            "knocks": max(0, len(packets) - WARMUP),
            "measured": len(lat_ms),
            "lost": lost,
            "warmup": WARMUP,
        }
        if lat_ms:
            out.update(
                p50_ms=stats.percentile(lat_ms, 50),
                p99_ms=stats.percentile(lat_ms, 99),
                max_ms=max(lat_ms),
            )
        return out

    def exited(self) -> str | None:
        if self.daemon.poll() is None:
            return None
        tail = (self.root / "fwknopd.log").read_text(errors="replace").strip().splitlines()
        return f"fwknopd exited with {self.daemon.returncode}: {(tail or [''])[-1]}"


def _unavailable() -> str | None:
    why = available()
    if why:
        return why
    if os.environ.get("RUROCO_BENCH_NETNS") != "1":
        return (
            "not run outside a private network namespace: fwknopd sets up iptables"
            " chains and its UDP server binds INADDR_ANY (run bench/run.sh as root)"
        )
    return None


def run_fwknop_latency(root: Path, knocks: int = 1000) -> dict:
    """One back-to-back run of ``knocks``, a fresh fwknopd as each ruroco latency run has
    fresh daemons; main.py pairs one with each of ruroco's, and the report compares the
    medians of both (docs/performance.md)."""
    why = _unavailable()
    if why:
        return {"error": why}
    with _fwknopd(root) as d:
        result = d.latency(knocks)
        if error := d.exited():
            result["error"] = error
    return result


def run_fwknop(root: Path, knocks: int = 1000, client_runs: int = 30) -> dict:
    """The spaced run (idle time between knocks, as ruroco's), the client's wall time and
    fwknopd's RSS."""
    why = _unavailable()
    if why:
        return {"error": why}
    result: dict = {}
    with _fwknopd(root) as d:
        result["port"] = d.port
        # Fresh packets: fwknopd refuses a digest it has seen.
        result["latency_spaced"] = d.latency(knocks, gap_s=SPACED_GAP_S)
        result["latency_spaced"]["gap_ms"] = SPACED_GAP_S * 1000
        before = d.fifo.total
        result["client"] = time_runs(d.client, client_runs, d.env)
        d.fifo.drain(1.0)
        # +1: time_runs makes one untimed run first
        result["client"]["commands_ran"] = d.fifo.total - before
        result["client"]["commands_expected"] = client_runs + 1
        result["rss_mb"] = (stats.peak_rss_kb(d.daemon.pid) or 0) / 1024
        if error := d.exited():
            result["error"] = error
    return result
