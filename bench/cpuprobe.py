"""Server CPU per datagram under a random flood: the figure a hot-path change moves.

A real ``ruroco-server`` process is flooded from another process (the C sender when a
compiler exists) for a few seconds; the server's own CPU time (utime + stime from
/proc/PID/stat) over the flood, divided by the datagrams it read (its shutdown summary), is
the cost of one rejection. Compare figures only from the same machine and load.

    python -m bench.cpuprobe [--seconds 5] [--runs 3] [--kernel-filter]
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import click

from bench import cflood, proc, stats
from bench.rurocoenv import REPO, Deployment

SOURCES = 1000
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(utime, stime) of ``pid`` in seconds (fields 14 and 15 of /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        text = fh.read()
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[11]) / TICK, int(fields[12]) / TICK


def probe(
    root: Path, seconds: float, kernel_filter: bool = False, server_cmd: list[str] | None = None
) -> dict:
    """One flood against a fresh deployment; returns CPU, datagrams read and µs per datagram."""
    dep = Deployment(root, kernel_filter=kernel_filter, server_cmd=server_cmd)
    binary = cflood.build()
    if binary is not None:
        argv = cflood.argv(binary, "127.0.0.1", dep.port, SOURCES, 2, seconds, 0.0, None)
    else:
        argv = [sys.executable, "-m", "bench.flood", "--target", f"127.0.0.1:{dep.port}"]
        argv += ["--mode", "random", "--sources", str(SOURCES), "--duration", str(seconds)]
    try:
        dep.start()
        cpu0 = cpu_seconds(dep.server.pid)
        t0 = time.monotonic()
        flooder = proc.start(argv, root / "flood.json", cwd=REPO)
        try:
            flooder.wait(seconds + 30)
        finally:
            proc.stop(flooder, grace=5)
        time.sleep(0.3)  # the server drains what is still queued
        cpu1 = cpu_seconds(dep.server.pid)
        user, system = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
        cpu = user + system
        wall = time.monotonic() - t0
    finally:
        log = dep.stop()
    summary = stats.parse_summary(log) or {}
    received = summary.get("received", 0)
    return {
        "engine": "c-sendmmsg" if binary is not None else "python",
        "kernel_filter": kernel_filter,
        "wall_s": round(wall, 2),
        "server_cpu_s": round(cpu, 3),
        "server_user_s": round(user, 3),
        "server_system_s": round(system, 3),
        "received": received,
        "summary": summary,
        "cpu_us_per_datagram": round(cpu / received * 1e6, 3) if received else None,
        "user_us_per_datagram": round(user / received * 1e6, 3) if received else None,
        "read_per_s": round(received / seconds) if seconds else None,
    }


@click.command()
@click.option("--seconds", type=click.FloatRange(1, 30), default=5.0)
@click.option("--runs", type=click.IntRange(1, 10), default=3)
@click.option("--kernel-filter", is_flag=True)
@click.option(
    "--server-cmd",
    multiple=True,
    help="Server command to compare, e.g. 'python before/launcher.py' (repeatable: the runs "
    "alternate between them); default: this checkout's ruroco-server.",
)
def main(seconds: float, runs: int, kernel_filter: bool, server_cmd: tuple[str, ...]) -> None:
    proc.install_cleanup()
    work = REPO / "bench" / "out" / "work" / "cpuprobe"
    commands = [c.split() for c in server_cmd] or [None]
    results: dict[str, list[dict]] = {}
    shutil.rmtree(work, ignore_errors=True)
    try:
        for i in range(runs):
            for n, cmd in enumerate(commands):  # interleaved: all see the same load drift
                label = " ".join(cmd) if cmd else "ruroco-server"
                result = probe(work / f"run{i + 1}-{n}", seconds, kernel_filter, cmd)
                result["server"] = label
                results.setdefault(label, []).append(result)
                click.echo(json.dumps(result))
    finally:
        proc.stop_all()
        for path in work.rglob("*.key"):
            path.unlink()
    for label, done in results.items():
        per = [r["cpu_us_per_datagram"] for r in done if r["cpu_us_per_datagram"]]
        user = [r["user_us_per_datagram"] for r in done if r["user_us_per_datagram"]]
        if per:
            click.echo(
                f"{label}: median server CPU per datagram {stats.median(per):.3f} µs "
                f"(user {stats.median(user):.3f} µs) over {len(per)} runs"
            )


if __name__ == "__main__":
    main()
