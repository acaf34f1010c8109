"""Runs every benchmark once, stores raw results in bench/out/results.json, writes RESULTS.md.

Each stage is bounded in time and isolated: a failing stage records its error and the
others still run, so RESULTS.md always says what was and was not measured.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

import click

from bench import proc, stats
from bench.ansiblesend import run_ansible_send
from bench.breakdown import run_breakdown
from bench.clientbench import run_client, run_client_library
from bench.connect import run_connect
from bench.defaultflood import SHAPES as DEFAULT_FLOOD_SHAPES
from bench.defaultflood import run_default_flood
from bench.floodbench import run_flood
from bench.fwknopbench import run_fwknop, run_fwknop_latency
from bench.grants import run_grants
from bench.latency import (
    run_latency,
    run_latency_prespawned,
    run_latency_spaced,
    run_latency_tmpfs,
)
from bench.report import write_results

BENCH = Path(__file__).resolve().parent
_ONLY: tuple[str, ...] = ()  # stage-name prefixes from --only; empty: every stage
OUT = BENCH / "out"


def machine() -> dict:
    """What the figures depend on: cores, CPU, kernel, interpreter, namespace, fwknop."""
    fw_version = None
    if shutil.which("fwknop"):
        done = subprocess.run(
            ["fwknop", "--version"],
            capture_output=True,
            text=True,
            env=dict(os.environ, HOME=str(OUT)),
            timeout=10,
            check=False,
        )
        fw_version = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else None
    return proc.host_facts() | {
        "fwknop": fw_version,
        "own_netns": os.environ.get("RUROCO_BENCH_NETNS") == "1",
        "rmem_default": _read_int("/proc/sys/net/core/rmem_default"),
    }


def context(work: Path) -> dict:
    """Reference costs that explain the figures: an fsync'd atomic write on this disk (the
    server persists its blocklist so before every forward) and a bare interpreter start."""
    from ruroco.fs import write_atomic

    target = work / "fsync-probe"
    times = []
    for _ in range(20):
        t0 = time.perf_counter()
        write_atomic(target, b"x" * 37)
        times.append((time.perf_counter() - t0) * 1000)
    starts = []
    for _ in range(10):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        starts.append((time.perf_counter() - t0) * 1000)
    return {
        "atomic_write_ms": stats.median(times),
        "python_start_ms": stats.median(starts),
    }


def _read_int(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return None


def _stage(results: dict, name: str, fn, *args, **kwargs) -> None:
    if _ONLY and not name.startswith(_ONLY):
        return
    t0 = time.monotonic()
    load = os.getloadavg()[0]
    click.echo(f"[bench] {name} ...", err=True)
    try:
        results[name] = fn(*args, **kwargs)
    except Exception as exc:  # a broken stage must not hide the others
        results[name] = {"error": f"{type(exc).__name__}: {exc}"}
        traceback.print_exc()
    results[name]["stage_seconds"] = round(time.monotonic() - t0, 1)
    results[name]["loadavg_1min_before"] = round(load, 2)
    click.echo(f"[bench] {name}: {json.dumps(results[name])[:400]}", err=True)


@click.command()
@click.option("--knocks", type=click.IntRange(1, 5000), default=1000)
@click.option("--latency-runs", type=click.IntRange(1, 5), default=3)
@click.option("--flood-seconds", type=click.FloatRange(1, 60), default=20.0)
@click.option("--client-runs", type=click.IntRange(1, 100), default=30)
@click.option("--known-rate", type=click.FloatRange(1), default=20_000.0)
@click.option(
    "--default-flood-seconds",
    type=click.FloatRange(1, 120),
    default=60.0,
    help="Seconds per shape of the floods against the role's default deployment.",
)
@click.option(
    "--only",
    multiple=True,
    help="Run only the stages whose name starts with this (repeatable), e.g. flood_random.",
)
def main(
    knocks, latency_runs, flood_seconds, client_runs, known_rate, default_flood_seconds, only
) -> None:
    global _ONLY
    _ONLY = tuple(only)
    proc.install_cleanup()
    work = OUT / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    started = datetime.now(UTC)
    results: dict = {"started": started.isoformat(timespec="seconds"), "machine": machine()}
    try:
        _stage(results, "context", context, work)
        for i in range(latency_runs):
            # fwknopd's runs interleaved with ruroco's, as many and as long, each pair in the
            # other order than the last (ABBA): the machine's speed drifts within minutes
            # here, and the targets compare the two medians.
            pair = [
                (f"latency_{i + 1}", run_latency, work / f"latency{i + 1}"),
                (f"fwknop_latency_{i + 1}", run_fwknop_latency, work / f"fwknop_latency{i + 1}"),
            ]
            for name, run, where in pair if i % 2 == 0 else reversed(pair):
                _stage(results, name, run, where, knocks)
        # Knocks with idle time between them (not "latency_": the back-to-back median
        # takes every stage named so).
        _stage(results, "spaced_latency", run_latency_spaced, work / "latency_spaced", knocks)
        # fwknopd's spaced run right after, not minutes later behind the floods.
        _stage(results, "fwknop", run_fwknop, work / "fwknop", knocks, client_runs)
        # Same path with the blocklist on tmpfs, then each stage alone: where the time goes.
        _stage(results, "tmpfs_latency", run_latency_tmpfs, work / "latency_tmpfs", knocks)
        # Back to back without a replacement shell starting beside each knock: what that
        # start-up costs a back-to-back knock on this machine (docs/performance.md).
        _stage(results, "prespawned_latency", run_latency_prespawned, work / "latency_prespawned")
        _stage(results, "breakdown", run_breakdown, work / "breakdown")
        _stage(results, "client", run_client, work / "client", proc.free_udp_port(), client_runs)
        _stage(results, "client_library", run_client_library, work / "client_library", knocks)
        _stage(results, "client_ansible", run_ansible_send, work / "client_ansible")
        for mode, rate in (("random", 0.0), ("known", known_rate)):
            for legacy in (False, True):
                name = f"flood_{mode}_{'legacy' if legacy else 'new'}"
                _stage(
                    results,
                    name,
                    run_flood,
                    work / name,
                    mode=mode,
                    legacy=legacy,
                    duration=flood_seconds,
                    rate=rate,
                )
            if mode == "random":  # the same flood against the opt-in kernel pre-filter
                _stage(
                    results,
                    "flood_random_kfilter",
                    run_flood,
                    work / "flood_random_kfilter",
                    mode="random",
                    legacy=False,
                    duration=flood_seconds,
                    kernel_filter=True,
                )
        for shape in DEFAULT_FLOOD_SHAPES:  # the deployment the ruroco_server role writes
            name = f"flood_default_{shape}"
            _stage(
                results,
                name,
                run_default_flood,
                work / name,
                shape,
                duration=default_flood_seconds,
                keep=True,
            )
        if os.environ.get("RUROCO_BENCH_NETNS") == "1":  # it changes nftables: own netns only
            _stage(results, "grants", run_grants, work / "grants", 100)
            _stage(results, "connect", run_connect, work / "connect", 256, 20)
    finally:
        proc.stop_all()
        for pattern in ("*.key", "*.rc", "access.conf"):  # throw-away secrets, still secrets
            for path in work.rglob(pattern):
                path.unlink()
    results["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    results["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    results["argv"] = sys.argv[1:]
    (OUT / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    # Only a run with the documented parameters may replace the committed RESULTS.md.
    defaults = {p.name: p.default for p in main.params}
    defaults["only"] = ()
    given = {
        "knocks": knocks,
        "latency_runs": latency_runs,
        "flood_seconds": flood_seconds,
        "client_runs": client_runs,
        "known_rate": known_rate,
        "default_flood_seconds": default_flood_seconds,
        "only": tuple(only),
    }
    target = BENCH / "RESULTS.md" if given == defaults else OUT / "RESULTS.partial.md"
    write_results(results, target)
    click.echo(f"[bench] wrote {target} and {OUT / 'results.json'}", err=True)


if __name__ == "__main__":
    main()
