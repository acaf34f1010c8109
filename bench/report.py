"""Turns bench/out/results.json into bench/RESULTS.md.

Every figure in the table comes from the results of the run that wrote it; a stage that
failed shows ``n/a`` and its error is listed under the table.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import click

from bench import stats

NA = "n/a"
BENCH = Path(__file__).resolve().parent
OUT = BENCH / "out"
RESULTS = BENCH / "RESULTS.md"


def _num(value, digits: int = 1) -> str:
    if value is None:
        return NA
    if isinstance(value, int) or (isinstance(value, float) and value >= 1000):
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _complete_runs(results: dict, prefix: str) -> list[dict]:
    """The back-to-back runs (ruroco's; fwknopd's with ``PEER``) that ended without an error
    and timed every knock they sent (a lost knock counts as sent)."""
    return [
        r
        for k, r in sorted(results.items())
        if k.startswith(prefix)
        and isinstance(r, dict)
        and "error" not in r
        and r.get("p50_ms") is not None
        and r.get("measured", 0) + r.get("lost", 0) >= r.get("knocks", 0)
    ]


def _latency(results: dict, field: str, prefix: str = "latency_") -> float | None:
    """Median over the complete back-to-back runs of one per-run figure (p50 or p99)."""
    vals = [r[field] for r in _complete_runs(results, prefix) if r.get(field) is not None]
    return stats.median(vals) if vals else None


# fwknopd's back-to-back runs, one after each of ruroco's (bench/main.py)
PEER = "fwknop_latency_"


def _legit(r: dict) -> str:
    if "legit_ran" not in r:
        return NA
    return f"{r['legit_ran']} / {r['legit_sent']}"


def _absorbed(r: dict) -> str:
    if r.get("absorbed_per_s") is not None:
        return _num(r["absorbed_per_s"])
    if r.get("delivered_per_s") is not None:
        return _num(r["delivered_per_s"]) + " (snmp)"
    return NA


def _reasons(summary: dict) -> str:
    parts = [
        f"{k.removeprefix('rejected_')} {v:,}"
        for k, v in summary.items()
        if k.startswith("rejected_") and v
    ]
    return ", ".join(parts) or "no reasons listed"


def _vs_peer(p50, p99, peer_p50, peer_p99) -> bool | None:
    """Issue 13's latency target: p50 at most the peer's, p99 at most twice the peer's."""
    if None in (p50, p99, peer_p50, peer_p99):
        return None
    return p50 <= peer_p50 and p99 <= 2 * peer_p99


def _verdict(ok: bool | None) -> str:
    return "" if ok is None else (" ✓" if ok else " ✗")


def table(results: dict) -> list[str]:
    fw = results.get("fwknop", {})
    fwl = {f: _latency(results, f, PEER) for f in ("p50_ms", "p99_ms")}
    fwc = fw.get("client", {})
    cl = results.get("client", {})
    lib = results.get("client_library", {})
    lib_in, lib_fork = lib.get("in_process", {}), lib.get("forked", {}).get("send_in_child", {})
    lib_exit = lib.get("forked", {}).get("fork_to_exit", {})
    lib_fresh = lib.get("forked", {}).get("first_send_fresh_process", {})
    ans = results.get("client_ansible", {})
    ans_send = ans.get("send_in_worker", {})
    tm = results.get("tmpfs_latency", {})
    pre = results.get("prespawned_latency", {})
    sp, fws = results.get("spaced_latency", {}), fw.get("latency_spaced", {})
    p50, p99 = _latency(results, "p50_ms"), _latency(results, "p99_ms")
    rn, rl = results.get("flood_random_new", {}), results.get("flood_random_legacy", {})
    kn, kl = results.get("flood_known_new", {}), results.get("flood_known_legacy", {})
    rk = results.get("flood_random_kfilter", {})
    gr = results.get("grants", {})
    cn = results.get("connect", {})

    def ok(value, limit, le=True):
        if value is None:
            return None
        return value <= limit if le else value >= limit

    def all_ran(r):
        return (
            None
            if "legit_ran" not in r
            else r["legit_sent"] > 0 and r["legit_ran"] >= r["legit_sent"]
        )

    def pct99(r):
        if "legit_ran" not in r or not r["legit_sent"]:
            return None
        return r["legit_ran"] >= 0.99 * r["legit_sent"]

    rows = [
        (
            "Knock → command latency p50",
            "≤ 2",
            _num(p50, 2) + _verdict(ok(p50, 2)),
            _num(fwl.get("p50_ms"), 2) + " (fwknop)",
            "ms",
        ),
        (
            "Knock → command latency p99",
            "≤ 10",
            _num(p99, 2) + _verdict(ok(p99, 10)),
            _num(fwl.get("p99_ms"), 2) + " (fwknop)",
            "ms",
        ),
        (
            "Knock → command p50 / p99 against fwknop, back to back",
            "≤ 1× / ≤ 2× fwknop",
            f"{_num(p50, 2)} / {_num(p99, 2)}"
            + _verdict(
                _vs_peer(p50, p99, fwl.get("p50_ms"), fwl.get("p99_ms"))
                if len(_complete_runs(results, "latency_")) == len(_complete_runs(results, PEER))
                else None  # a failed run on one side: no verdict from unequal samples
            ),
            f"{_num(fwl.get('p50_ms'), 2)} / {_num(fwl.get('p99_ms'), 2)} (fwknop)",
            "ms",
        ),
        (
            f"Same, spaced knocks ({_num(sp.get('gap_ms'), 0)} ms idle between them)",
            "≤ 1× / ≤ 2× fwknop",
            f"{_num(sp.get('p50_ms'), 2)} / {_num(sp.get('p99_ms'), 2)}"
            + _verdict(
                _vs_peer(sp.get("p50_ms"), sp.get("p99_ms"), fws.get("p50_ms"), fws.get("p99_ms"))
            ),
            f"{_num(fws.get('p50_ms'), 2)} / {_num(fws.get('p99_ms'), 2)} (fwknop)",
            "ms",
        ),
        (
            "Same, blocklist on tmpfs (no disk flush): p50 / p99",
            "—",
            f"{_num(tm.get('p50_ms'), 2)} / {_num(tm.get('p99_ms'), 2)}",
            "—",
            "ms",
        ),
        (
            "Same, back to back, every shell started before the run (no replacement shell"
            " starting beside a knock; diagnostic): p50 / p99",
            "—",
            f"{_num(pre.get('p50_ms'), 2)} / {_num(pre.get('p99_ms'), 2)}",
            "—",
            "ms",
        ),
        (
            "Client wall time, median of 30",
            "≤ 50",
            _num(cl.get("median_ms")) + _verdict(ok(cl.get("median_ms"), 50)),
            _num(fwc.get("median_ms")) + " (fwknop)",
            "ms",
        ),
        (
            "Client wall time if protocol.py used only public imports (aead module, hashlib)"
            " / same start without them",
            "—",
            _num(cl.get("public_imports", {}).get("median_ms"))
            + " / "
            + _num(cl.get("via_python_c", {}).get("median_ms")),
            "—",
            "ms",
        ),
        (
            "Client wall time, development venv (editable install)",
            "—",
            _num(cl.get("dev_venv", {}).get("median_ms")),
            "—",
            "ms",
        ),
        (
            f"Library knock (`sender.send`, one process, after start-up; {lib_in.get('n', NA)}"
            " knocks, counter persistence included) p50 / p99",
            "≤ 1,000 (p50)",
            f"{_num(lib_in.get('p50_us'))} / {_num(lib_in.get('p99_us'))}"
            + _verdict(ok(lib_in.get("p50_us"), 1000)),
            "—",
            "µs",
        ),
        (
            f"`ruroco_send` in `ansible-playbook` (forks 1, {ans.get('hosts', NA)} hosts ×"
            f" {ans.get('runs', NA)} runs; `send` timed in each forked worker) p50 / p99",
            "≤ 1,000 (p50)",
            f"{_num(ans_send.get('p50_us'))} / {_num(ans_send.get('p99_us'))}"
            + _verdict(ok(ans_send.get("p50_us"), 1000)),
            "—",
            "µs",
        ),
        (
            "Library knock per forked child of the bench (a model of the worker above; the"
            " parent has knocked; from the child's `send` call) p50 / p99",
            "—",
            f"{_num(lib_fork.get('p50_us'))} / {_num(lib_fork.get('p99_us'))}",
            "—",
            "µs",
        ),
        (
            "Same children, from before the fork to the exit (as the parent sees it) p50 / p99",
            "—",
            f"{_num(lib_exit.get('p50_us'))} / {_num(lib_exit.get('p99_us'))}",
            "—",
            "µs",
        ),
        (
            "First `send` of a fresh process (the client's import untimed, no `warm_up`) p50 / p99",
            "—",
            f"{_num(lib_fresh.get('p50_us'))} / {_num(lib_fresh.get('p99_us'))}",
            "—",
            "µs",
        ),
        (
            "Random flood: sent" + (f" ({rn['engine']} sender)" if rn.get("engine") else ""),
            "max",
            _num(rn.get("sent_per_s")),
            _num(rl.get("sent_per_s")),
            "datagrams/s",
        ),
        (
            "Random flood: absorbed by server",
            "≥ 100,000",
            _absorbed(rn) + _verdict(ok(rn.get("absorbed_per_s"), 100_000, le=False)),
            _absorbed(rl),
            "datagrams/s",
        ),
        (
            "Random flood: kernel drops (rcvbuf full)",
            "—",
            _num(rn.get("rcvbuf_drops_per_s")),
            _num(rl.get("rcvbuf_drops_per_s")),
            "datagrams/s",
        ),
        (
            "Random flood: legit knocks run / sent",
            "all",
            _legit(rn) + _verdict(all_ran(rn)),
            _legit(rl),
            "knocks",
        ),
        (
            "Random flood: server peak RSS",
            "≤ 100",
            _num(rn.get("peak_rss_mb")) + _verdict(ok(rn.get("peak_rss_mb"), 100)),
            _num(rl.get("peak_rss_mb")),
            "MB",
        ),
        (
            "Random flood, `kernel_filter = true`: dropped by the filter / rcvbuf full / read",
            "—",
            f"{_num(rk.get('filtered_per_s'))} / {_num(rk.get('rcvbuf_drops_per_s'))}"
            f" / {_num(rk.get('absorbed_per_s'))}",
            "—",
            "datagrams/s",
        ),
        (
            "Random flood, `kernel_filter = true`: legit knocks run / sent",
            "all",
            _legit(rk) + _verdict(all_ran(rk)),
            "—",
            "knocks",
        ),
        (
            "Known-key flood: sent",
            "≥ 20,000",
            _num(kn.get("sent_per_s")) + _verdict(ok(kn.get("sent_per_s"), 20_000, le=False)),
            _num(kl.get("sent_per_s")),
            "datagrams/s",
        ),
        ("Known-key flood: absorbed by server", "—", _absorbed(kn), _absorbed(kl), "datagrams/s"),
        (
            "Known-key flood: legit knocks run / sent",
            "≥ 99 %",
            _legit(kn) + _verdict(pct99(kn)),
            _legit(kl),
            "knocks",
        ),
        (
            "Grant: knock → guarded port accepting, p50 / p99 (100 knocks)",
            "—",
            f"{_num(gr.get('p50_ms'), 1)} / {_num(gr.get('p99_ms'), 1)}",
            "—",
            "ms",
        ),
        (
            "`connect`: 256 MiB download / upload through its relay (direct TCP beside it)",
            "—",
            f"{_num(cn.get('relay_download_mib_s'), 0)} / {_num(cn.get('relay_upload_mib_s'), 0)}",
            f"{_num(cn.get('direct_download_mib_s'), 0)} / {_num(cn.get('direct_upload_mib_s'), 0)}"
            " (direct)",
            "MiB/s",
        ),
        (
            "`ssh` start → remote command's output (real sshd, key login), p50: through"
            " `connect` (knock, wait, relay) / with `--fdpass` (port open without a guard"
            " beside it)",
            "—",
            f"{_num(cn.get('ssh_command_connect_ms', {}).get('p50'), 1)}"
            f" / {_num(cn.get('ssh_command_fdpass_ms', {}).get('p50'), 1)}",
            f"{_num(cn.get('ssh_command_direct_ms', {}).get('p50'), 1)} (direct)",
            "ms",
        ),
        (
            "Known-key flood: server peak RSS",
            "≤ 100",
            _num(kn.get("peak_rss_mb")) + _verdict(ok(kn.get("peak_rss_mb"), 100)),
            _num(kl.get("peak_rss_mb")),
            "MB",
        ),
    ]
    rows += default_flood_rows(results)
    out = [
        "| metric | target | ruroco | fwknop / original ordering | unit |",
        "| --- | --- | --- | --- | --- |",
    ]
    out += [f"| {' | '.join(row)} |" for row in rows]
    return out


#: The shapes of bench/defaultflood.py (stages ``flood_default_<shape>``), as the table names them.
DEFAULT_FLOOD_LABELS = {
    "random": "random 94 bytes",
    "known": "real key id + 86 random bytes",
    "oversized": "1,000–65,000 random bytes",
    "small": "0–199 random bytes (never 94)",
    "mix": "the four shapes in turn",
}


def _default_deployment(r: dict) -> str:
    """What the role's templates set that matters under a flood (from the rendered files)."""
    filt = re.search(r"^kernel_filter = (\w+)", r.get("config", ""), re.MULTILINE)
    buf = re.search(r"^ReceiveBuffer=(\S+)", r.get("socket_unit", ""), re.MULTILINE)
    return (
        f"kernel_filter = {filt.group(1) if filt else NA},"
        f" ReceiveBuffer={buf.group(1) if buf else '(unset)'}"
    )


def default_flood_rows(results: dict) -> list[tuple[str, str, str, str, str]]:
    """Two rows per shape of the floods against the role's default deployment."""
    rows = []
    for shape, label in DEFAULT_FLOOD_LABELS.items():
        r = results.get(f"flood_default_{shape}")
        if r is None:
            continue
        seconds = (r.get("flood") or {}).get("seconds") or 1
        delta = r.get("snmp_delta") or {}
        filtered = delta.get("InErrors", 0) - delta.get("RcvbufErrors", 0) if delta else None
        ok_knocks = None if "legit_ran" not in r else 0 < r["legit_sent"] <= r["legit_ran"]
        rss = r.get("peak_rss_mb")
        rows += [
            (
                f"Default deployment, flood of {label}: sent / dropped by the kernel filter /"
                " queue full",
                f"{_num(r['target_rate'])}/s" if r.get("target_rate") else "max",
                f"{_num(r.get('sent_per_s'))} / {_num(filtered and filtered / seconds)}"
                f" / {_num(r.get('rcvbuf_drops_per_s'))}",
                "—",
                "datagrams/s",
            ),
            (
                f"Default deployment, flood of {label}: legit knocks run / sent; server peak RSS",
                "all; ≤ 100",
                _legit(r)
                + _verdict(ok_knocks)
                + f"; {_num(rss)}"
                + _verdict(None if rss is None else rss <= 100),
                "—",
                "knocks; MB",
            ),
        ]
    return rows


def default_flood_lines(results: dict) -> list[str]:
    """Per-run lines of the default-deployment floods: every count behind the table rows."""
    lines = []
    for shape in DEFAULT_FLOOD_LABELS:
        name = f"flood_default_{shape}"
        r = results.get(name)
        if r is None or "flood" not in r:
            continue
        f, s, d = r["flood"], r.get("server_summary") or {}, r.get("snmp_delta") or {}
        reports = r.get("drop_lines") or []
        lines.append(
            f"* {name} ({_default_deployment(r)}; load average"
            f" {r.get('loadavg_1min_before', NA)} at start): sent {_num(f.get('sent'))} in"
            f" {_num(f.get('seconds'), 1)} s ({_num(f.get('rate'))}/s, mean"
            f" {_num(f.get('mean_size'))} bytes) from {_num(r.get('sources'))} sources;"
            f" server received {_num(s.get('received'))}, accepted {_num(s.get('accepted'))},"
            f" rejected {_num(s.get('rejected'))} ({_reasons(s)}); snmp InDatagrams"
            f" {_num(d.get('InDatagrams'))}, InErrors {_num(d.get('InErrors'))} (of them"
            f" RcvbufErrors {_num(d.get('RcvbufErrors'))}); the socket's own drop counter"
            f" {_num(r.get('socket_drops'))}; receive queue peak"
            f" {_num((r.get('peak_queue_bytes') or 0) / 2**20)} MiB; the server's drop"
            f" summary lines: {len(reports)}"
            + (f" (counting {_num(sum(x['count'] for x in reports))})" if reports else "")
            + f"; legit knocks {_legit(r)} (client runs failed:"
            f" {r.get('legit_client_failures', NA)}); peak RSS {_num(r.get('peak_rss_mb'))} MB"
        )
    return lines


def write_results(results: dict, path: Path, out: Path = OUT) -> None:
    """Write the whole results file ``path`` from ``results``. The fuzz and crash section
    (``fuzz_section``) is rendered from ``out``/fuzz.json and crash.json where present and
    otherwise kept as ``path`` has it: ``make bench`` never drops ``make fuzz``'s figures."""
    m = results.get("machine", {})
    lat_runs = [r for k, r in sorted(results.items()) if k.startswith("latency_")]
    peer_runs = [r for k, r in sorted(results.items()) if k.startswith(PEER)]
    errors = [
        f"* `{k}`: {v['error']}"
        for k, v in results.items()
        if isinstance(v, dict) and "error" in v and k != "machine"
    ]
    lines = [
        "# Benchmark results",
        "",
        f"Run {results.get('started', '?')} → {results.get('finished', '?')} (UTC), written by"
        " `bench/run.sh`; raw figures in `bench/out/results.json`. Nothing in this file is typed"
        " by hand: `make bench` rewrites it.",
        "",
        f"Machine: {m.get('nproc')} CPUs ({m.get('usable_cpus')} usable), {m.get('cpu')},"
        f" Linux {m.get('kernel')}, Python {m.get('python')}, {m.get('fwknop') or 'fwknop n/a'};"
        f" net.core.rmem_default = {m.get('rmem_default')}; load average (1/5/15 min)"
        f" {m.get('loadavg_start')} at start, {m.get('loadavg_end')} at end (other work on the"
        " machine is not stopped for the bench; every stage records the load it started"
        " under in results.json); "
        + (
            "private network namespace (loopback only)."
            if m.get("own_netns")
            else "shared network namespace (snmp counters may include other traffic)."
        ),
        "",
        *table(results),
        "",
        "✓/✗ compare with the target; ruroco's server and commander run as real processes;"
        ' "original ordering" is the same server started through `bench/legacy_server.py`'
        " with the original's check order from `bench/legacy.py` (every datagram counted"
        " against the global cap, before the key lookup).",
        "",
        "## Per-run figures",
        "",
    ]
    for i, r in enumerate(lat_runs, 1):
        lines.append(
            f"* latency run {i}: {r.get('measured', NA)} of {r.get('knocks', NA)} knocks measured,"
            f" {r.get('lost', NA)} lost; p50 {_num(r.get('p50_ms'), 2)} ms, p99"
            f" {_num(r.get('p99_ms'), 2)} ms, max {_num(r.get('max_ms'), 2)} ms; commander"
            f" alone (24 bytes written straight to its socket -> FIFO byte):"
            f" p50 {_num(r.get('commander_only_p50_ms'), 2)} ms,"
            f" p99 {_num(r.get('commander_only_p99_ms'), 2)} ms"
        )
    for name in (
        "flood_random_new",
        "flood_random_legacy",
        "flood_random_kfilter",
        "flood_known_new",
        "flood_known_legacy",
    ):
        r = results.get(name, {})
        s = r.get("server_summary") or {}
        d = r.get("snmp_delta") or {}
        lines.append(
            f"* {name}: flood sent {_num((r.get('flood') or {}).get('sent'))} in"
            f" {_num((r.get('flood') or {}).get('seconds'), 1)} s; server received"
            f" {_num(s.get('received'))}, accepted {_num(s.get('accepted'))}, rejected"
            f" {_num(s.get('rejected'))} ({_reasons(s)}); snmp InDatagrams"
            f" {_num(d.get('InDatagrams'))},"
            f" RcvbufErrors {_num(d.get('RcvbufErrors'))}, InErrors {_num(d.get('InErrors'))};"
            " legit client runs failed:"
            f" {r.get('legit_client_failures', NA)}"
        )
    tm = results.get("tmpfs_latency", {})
    if "measured" in tm:
        lines.append(
            f"* latency with the blocklist on tmpfs (one run, same method):"
            f" {tm.get('measured')} of {tm.get('knocks')} knocks measured, {tm.get('lost')} lost;"
            f" p50 {_num(tm.get('p50_ms'), 2)} ms, p99 {_num(tm.get('p99_ms'), 2)} ms,"
            f" max {_num(tm.get('max_ms'), 2)} ms"
        )
    pre = results.get("prespawned_latency", {})
    if "measured" in pre:
        sh = pre.get("shells") or {}
        lines.append(
            f"* back to back with {_num(pre.get('prespawned'))} shells started before the run"
            f" (`bench/hooks/prespawn`): {pre.get('measured')} of {pre.get('knocks')} knocks"
            f" measured, {pre.get('lost')} lost; p50 {_num(pre.get('p50_ms'), 2)} ms,"
            f" p99 {_num(pre.get('p99_ms'), 2)} ms, max {_num(pre.get('max_ms'), 2)} ms;"
            f" the commander's `sh` children: {_num(sh.get('before'))} before the"
            f" {_num(sh.get('sent'))} knocks ({_num(pre.get('warmup'))} of them warm-up),"
            f" {_num(sh.get('after'))} after"
        )
    sp = results.get("spaced_latency", {})
    if "measured" in sp:
        lines.append(
            f"* spaced latency ({_num(sp.get('gap_ms'), 0)} ms idle after each command's byte):"
            f" {sp.get('measured')} of {sp.get('knocks')} knocks measured, {sp.get('lost')} lost;"
            f" p50 {_num(sp.get('p50_ms'), 2)} ms, p99 {_num(sp.get('p99_ms'), 2)} ms,"
            f" max {_num(sp.get('max_ms'), 2)} ms"
        )
    ctx = results.get("context", {})
    if "atomic_write_ms" in ctx:
        lines.append(
            f"* context: one fsync'd atomic write (what the server does per accepted knock)"
            f" takes {_num(ctx['atomic_write_ms'], 2)} ms here (median of 20); a bare"
            f" `python -c pass` takes {_num(ctx['python_start_ms'], 1)} ms (median of 10)"
        )
    fw = results.get("fwknop", {})
    for i, r in enumerate(peer_runs, 1):
        lines.append(
            f"* fwknop latency run {i} (paired with ruroco's run {i}): {r.get('measured', NA)}"
            f" of {r.get('knocks', NA)} knocks measured, {r.get('lost', NA)} lost; p50"
            f" {_num(r.get('p50_ms'), 2)} ms, p99 {_num(r.get('p99_ms'), 2)} ms,"
            f" max {_num(r.get('max_ms'), 2)} ms"
        )
    if "client" in fw:
        fc = fw["client"]
        lines.append(
            f"* fwknop: client runs ran the command {fc.get('commands_ran')} of"
            f" {fc.get('commands_expected')} times; fwknopd RSS {_num(fw.get('rss_mb'))} MB"
        )
    if "latency_spaced" in fw:
        fs = fw["latency_spaced"]
        lines.append(
            f"* fwknop, spaced ({_num(fs.get('gap_ms'), 0)} ms idle): {fs.get('measured')} of"
            f" {fs.get('knocks')} knocks measured, p50 {_num(fs.get('p50_ms'), 2)} ms,"
            f" p99 {_num(fs.get('p99_ms'), 2)} ms"
        )
    gr = results.get("grants", {})
    if "measured" in gr:
        lines.append(
            f"* grants ({gr.get('nft_version')}): {gr['measured']} of {gr['knocks']} knocks"
            f" accepted, {gr.get('lost')} lost; knock → port accepting p50"
            f" {_num(gr.get('p50_ms'), 2)} ms, p99 {_num(gr.get('p99_ms'), 2)} ms, max"
            f" {_num(gr.get('max_ms'), 2)} ms (connect tries of {_num(gr.get('step_ms'), 0)} ms);"
            " commander alone (24 bytes to its socket → accepting): p50"
            f" {_num(gr.get('commander_only_p50_ms'), 2)} ms, p99"
            f" {_num(gr.get('commander_only_p99_ms'), 2)} ms; guard back after"
            f" `nft flush ruleset`: p50 {_num(gr.get('guard_back_p50_ms'), 1)} ms, max"
            f" {_num(gr.get('guard_back_max_ms'), 1)} ms ({gr.get('guard_back_n')} flushes);"
            f" refused before the knock: {gr.get('refused_before_knock')}; a source without"
            f" a grant refused: {gr.get('outsider_refused')}, also right after the flushes:"
            f" {gr.get('outsider_refused_after_flush')}"
        )
    lines += default_flood_lines(results)
    lines += breakdown_section(results.get("breakdown", {}))
    lines += client_library_section(results.get("client_library", {}))
    lines += fleet_section(out / "fleet.json")
    notes = observations(results)
    if notes:
        lines += ["", "## Observations (derived from this run's figures)", "", *notes]
    if errors:
        lines += ["", "## Stages that failed", "", *errors]
    lines += ["", *METHOD]
    previous = path.read_text() if path.exists() else ""
    try:
        section = fuzz_section(out, previous)
    except FuzzMarkersError as exc:  # keep everything from the first marker on, untouched
        print(f"[bench] {path}: {exc}; kept it as it was", file=sys.stderr)
        first = min(i for i in (previous.find(FUZZ_BEGIN), previous.find(FUZZ_END)) if i >= 0)
        section = previous[first:].rstrip("\n").split("\n")
    if section:
        lines += ["", *section]
    path.write_text("\n".join(lines) + "\n")


def fleet_section(path: Path) -> list[str]:
    """The Ansible fan-out figures, written by molecule's ``fleet`` scenario."""
    try:
        fleet = json.loads(path.read_text())
    except (OSError, ValueError):
        return [
            "",
            "## Ansible fleet",
            "",
            "No `bench/out/fleet.json`: run `scripts/test-molecule.sh fleet` first.",
        ]
    when = datetime.fromtimestamp(path.stat().st_mtime, UTC).strftime("%Y-%m-%d %H:%M")
    return [
        "",
        "## Ansible fleet (molecule scenario `fleet`)",
        "",
        f"Measured {when} UTC by `scripts/test-molecule.sh fleet`: {fleet.get('hosts')} hosts"
        f" ({fleet.get('host_setup')}), forks {fleet.get('forks')}, {fleet.get('cpus')} CPUs,"
        f" median of {fleet.get('rounds')} rounds; {fleet.get('knocks_executed')} knocks were"
        " checked on their hosts.",
        "",
        "| one play knocking every host | median wall time | rounds | unit |",
        "| --- | --- | --- | --- |",
        "| one `ruroco.ruroco.ruroco_send` task"
        f" | {_num(fleet.get('ruroco_send_play_median_s'), 3)}"
        f" | {', '.join(_num(v, 3) for v in fleet.get('ruroco_send_play_s', []))} | s |",
        "| `ansible.builtin.command: ruroco-client send` delegated to localhost"
        f" | {_num(fleet.get('command_fanout_play_median_s'), 3)}"
        f" | {', '.join(_num(v, 3) for v in fleet.get('command_fanout_play_s', []))} | s |",
    ]


# (stage key, what it covers), in the order a knock passes through them.
STAGES = (
    ("udp_loopback", "server: UDP `sendto` -> `recvfrom_into` on loopback (kernel hop)"),
    ("decrypt_decode", "server: AES-GCM-SIV open + plaintext parse"),
    ("blocklist_encode", "server: msgpack of the blocklist (one key)"),
    ("write_atomic_disk", "server: fsync'd temp file + rename + directory fsync, on disk"),
    ("write_atomic_tmpfs", "server: the same write on tmpfs"),
    ("pipeline_disk", "server: whole `Pipeline.handle` of a valid packet, blocklist on disk"),
    ("pipeline_tmpfs", "server: the same, blocklist on tmpfs"),
    ("forward", "server: connect to the commander socket + 24-byte write"),
    ("commander_process", "commander process: 24 bytes in -> command's byte in the FIFO"),
    ("commander_process_cold", "the same with `warm_shells = false` (`sh` spawned at request)"),
    ("dispatch_handoff", "commander: `Dispatcher.submit` -> task starts in a worker thread"),
    ("spawn_to_fifo", "commander: `Executor.run` -> `sh -c 'printf x > FIFO'` has written"),
    ("release_to_fifo", "commander: `Executor.run` releases a warm shell -> `printf` has written"),
    ("exec_nolibc", "start-up: `posix_spawn` -> reaped, a static binary that only exits"),
    ("exec_glibc_static", "start-up: the same with glibc's start-up (`main` returns 0)"),
    ("exec_sh", "start-up: the same for `sh -c 'exit 0'` (what a warm shell's start costs)"),
    ("cpuid", "start-up: one `cpuid` instruction (glibc's start-up runs dozens; a VM traps each)"),
)


# The commander process with warm shells (the default) and without (``bench/breakdown.py``).
STAGES_WARM_COLD = ("commander_process", "commander_process_cold")


def breakdown_section(bd: dict) -> list[str]:
    """The per-stage table (``bench/breakdown.py``); empty when the stage did not run."""
    rows = [(key, what, bd[key]) for key, what in STAGES if bd.get(key, {}).get("n")]
    if not rows:
        return []
    out = [
        "",
        "## Where the time goes (each stage alone, `bench/breakdown.py`)",
        "",
        f"{bd.get('reps', NA)} repetitions per stage, run right after the latency runs;"
        " real files, sockets and processes.",
        "",
        "| stage | covers | p50 | p90 | unit |",
        "| --- | --- | --- | --- | --- |",
    ]
    out += [
        f"| {key} | {what} | {_num(r.get('p50_us'))} | {_num(r.get('p90_us'))} | µs |"
        for key, what, r in rows
    ]
    return out


# (key, what), in the order one library knock runs them (``bench/clientbench.py``).
CLIENT_STEPS = (
    ("lock", "take and drop the client lock (`flock`)"),
    ("key_parse", "read the key file, parse the key (base64, AES-GCM-SIV object)"),
    ("counter", "the counter: read the file and `counter.next`, hand out a reserved value"),
    ("build", "plaintext + AES-GCM-SIV seal"),
    ("sendto", "UDP socket, bind, connect, send, close"),
    ("counter_fsync_each", "for comparison: the fsync'd counter write every knock paid before"),
)


def client_library_section(lib: dict) -> list[str]:
    """The library knock's steps (``bench/clientbench.py``); empty when the stage did not run."""
    bd = lib.get("breakdown", {})
    rows = [(key, what, bd[key]) for key, what in CLIENT_STEPS if bd.get(key, {}).get("n")]
    if not rows:
        return []
    inp, fk = lib.get("in_process", {}), lib.get("forked", {})
    return [
        "",
        "## The client library's knock (each step alone, `bench/clientbench.py`)",
        "",
        f"Whole `send`: p50 {_num(inp.get('p50_us'))} µs, p99 {_num(inp.get('p99_us'))} µs,"
        f" max {_num(inp.get('max_us'))} µs over {inp.get('n', NA)} knocks; counter values"
        f" reserved but unused at the end: {inp.get('unused_at_end', NA)}. One knock per forked"
        f" child: `send` p50 {_num(fk.get('send_in_child', {}).get('p50_us'))} µs, fork to exit"
        f" p50 {_num(fk.get('fork_to_exit', {}).get('p50_us'))} µs"
        f" ({fk.get('send_in_child', {}).get('n', NA)} children); {fk.get('counter_writes', NA)}"
        f" of {fk.get('send_in_child', {}).get('n', NA)} children wrote the counter file, the"
        " others took a value of the shared range (`counter.next`).",
        "",
        "| step | covers | p50 | p99 | unit |",
        "| --- | --- | --- | --- | --- |",
        *(
            f"| {key} | {what} | {_num(r.get('p50_us'))} | {_num(r.get('p99_us'))} | µs |"
            for key, what, r in rows
        ),
    ]


def observations(results: dict) -> list[str]:
    """Explanations that follow from the numbers; each appears only when its condition holds."""
    out = []
    p50 = _latency(results, "p50_ms")
    c50 = _latency(results, "commander_only_p50_ms")
    if p50 is not None and c50 is not None:
        out.append(
            f"* Latency split: the commander alone takes {_num(c50, 2)} ms (p50) from request"
            f" to command start, so about {_num(max(0.0, p50 - c50), 2)} ms of the"
            f" {_num(p50, 2)} ms knock latency is spent in the server (receive, decrypt,"
            " checks, durable replay-floor write, connect to the commander). At least: the"
            " commander alone is fed back to back, its next request arriving before the last"
            " command's `sh` has exited, so that figure includes waiting for it (the per-name"
            " order)."
        )
    bd = results.get("breakdown", {})
    warm50, cold50 = (bd.get(k, {}).get("p50_us") for k in STAGES_WARM_COLD)
    if warm50 is not None and cold50 is not None:
        out.append(
            f"* Warm shells: the commander process takes {_num(warm50)} µs (p50) from request"
            f" to the command's byte when it releases a waiting `sh`, {_num(cold50)} µs when"
            " it spawns `sh` at the request (`warm_shells = false`): the start-up of `sh` is"
            ' off the critical path (docs/performance.md, "Warm shells").'
        )
    pre = results.get("prespawned_latency", {})
    pre50, shells = pre.get("p50_ms"), pre.get("shells") or {}
    if p50 is not None and pre50 is not None:
        # Comparable only if every knock released a shell from before the run: one fewer
        # per knock sent, none replaced.
        before, after, sent = (shells.get(k) for k in ("before", "after", "sent"))
        clean = (
            before == pre.get("prespawned") and None not in (after, sent) and before - after == sent
        )
        out.append(
            f"* Replacement shells: back to back, a knock takes {_num(p50, 2)} ms (p50, the"
            " median of the latency runs) while the shell its predecessor used is replaced"
            f" beside it, and {_num(pre50, 2)} ms (one run) when every shell was started"
            + (
                f" before the run; the difference, about {_num(max(0.0, p50 - pre50), 2)} ms,"
                " is roughly what starting one `sh` (exec, PID namespace, the commander's spawn"
                " path) beside each knock costs on"
                f" {_num(results.get('machine', {}).get('nproc'))} CPUs"
                if clean
                else " before the run, but shells were replaced during that run: not comparable"
            )
            + ' (docs/performance.md, "Back to back: the replacement shell").'
        )
    startup_keys = ("exec_nolibc", "exec_glibc_static", "exec_sh", "cpuid")
    bare, libc, sh50, cpuid = (bd.get(k, {}).get("p50_us") for k in startup_keys)
    if None not in (bare, libc, sh50, cpuid) and cpuid:
        out.append(
            f"* Process start-up: a static binary that only exits takes {_num(bare)} µs from"
            f" `posix_spawn` to reaped, the same with glibc's start-up {_num(libc)} µs, `sh -c"
            f" 'exit 0'` {_num(sh50)} µs; one `cpuid` costs {_num(cpuid)} µs here, so glibc's"
            f" start-up takes as long as about {_num(max(0.0, libc - bare) / cpuid, 0)} of them"
            ' (docs/performance.md, "What starting `sh` costs").'
        )
    t50 = results.get("tmpfs_latency", {}).get("p50_ms")
    if p50 is not None and t50 is not None:
        out.append(
            f"* Durable replay floor: with the blocklist on tmpfs the p50 is {_num(t50, 2)} ms,"
            f" so the disk flushes (file fsync + directory fsync, both before the commander is"
            f" contacted) account for about {_num(max(0.0, p50 - t50), 2)} ms of the"
            f" {_num(p50, 2)} ms on disk."
        )
    for name in ("flood_random_new", "flood_random_kfilter", "flood_known_new"):
        r = results.get(name, {})
        if "legit_ran" in r and r["legit_ran"] < r["legit_sent"]:
            drops = r.get("rcvbuf_drops_per_s") or 0
            summary = r.get("server_summary") or {}
            out.append(
                f"* {name}: {r['legit_sent'] - r['legit_ran']} legitimate knock(s) did not run"
                f" (server accepted {summary.get('accepted', NA)}). "
                + (
                    f"The kernel dropped {_num(drops)} datagrams/s because the server's receive"
                    " buffer was full; a legitimate datagram dropped there never reaches the"
                    " server, so every knock running needs the server to read faster than"
                    " the flood arrives (or a larger SO_RCVBUF to ride out bursts)."
                    if drops > 0
                    else "No kernel drops were counted; see the server log in bench/out/work."
                )
            )
    rk = results.get("flood_random_kfilter", {})
    if rk.get("legit_sent") and rk.get("filtered_per_s") is not None:
        out.append(
            f"* Kernel pre-filter (`kernel_filter = true`): the kernel dropped"
            f" {_num(rk['filtered_per_s'])} datagrams/s of the random flood before queueing"
            f" (UDP InErrors minus RcvbufErrors), {_num(rk.get('rcvbuf_drops_per_s'))}"
            " datagrams/s were dropped for a full queue, and"
            f" {rk.get('legit_ran')} of {rk['legit_sent']} legitimate knocks ran. The price:"
            " those datagrams are not logged, so fail2ban cannot see them; the server's own"
            " default stays off, the `ruroco_server` role turns it on (the table's"
            " default-deployment rows)."
        )
    r = results.get("flood_random_new", {})
    if r.get("absorbed_per_s") and r.get("sent_per_s") and r.get("rcvbuf_drops_per_s", 0) == 0:
        out.append(
            "* Random flood: the server read everything that was sent (no kernel drops), so"
            " its absorption limit lies above the sender's rate on this machine."
        )
    return out


METHOD = [
    "## How to reproduce",
    "",
    "`make bench` (runs `bench/run.sh`: about 8–10 minutes, hard limit 15 minutes; needs root",
    "for the private network namespace; without it the ruroco stages run in the current",
    "namespace and the fwknop stage is skipped). `bench/run.sh --help` lists options that",
    "shorten the run for development; such runs write bench/out/RESULTS.partial.md and leave",
    "this file alone. Tests of the bench itself: `.venv/bin/pytest bench`.",
    "",
    "## Method",
    "",
    "* Everything runs in a private network namespace (`unshare -n`, loopback only), so the",
    "  /proc/net/snmp UDP counters are this run's own and fwknopd's firewall initialisation",
    "  touches only that namespace. All traffic goes to 127.0.0.0/8.",
    "* **Command started** = the configured command is the shell builtin `printf x > FIFO`;",
    "  the bench holds the FIFO open and takes `perf_counter_ns` right after `poll` wakes up.",
    "  Latency = that moment minus the moment right before `sendto` of a packet built",
    "  beforehand with `ruroco.protocol` (fresh counter per knock).",
    "* Latency: 1,000 sequential knocks per run after 20 untimed warm-up knocks, each from its",
    "  own source address 127.3.x.y (so the per-IP limit of 2/s never applies) and with",
    "  `max_requests_per_second_global = 1000000` in that deployment's config (sequential",
    "  knocks arrive at several hundred per second). p50/p99 are nearest-rank percentiles per",
    "  run; the table shows the median over the runs. One more run of the same kind puts the",
    "  server's blocklist on /dev/shm (tmpfs) to show what the disk flushes cost, and one of",
    "  300 knocks in which the commander releases shells it started before the run and",
    "  starts no replacement (`bench/hooks/prespawn` on its PYTHONPATH sets the pool's depth",
    "  to 320 and stops its refills): a diagnostic, not a deployment anyone runs.",
    "* Grants (`bench/grants.py`, only in the private namespace: it changes nftables): a",
    "  server and commander with `[grants.bench]` on `tcp/2222`; 100 knocks for `open_bench`,",
    "  each from its own address 127.5.x.y; right after `sendto` the bench tries TCP connects",
    "  from that address to the port, each try 1 ms long, until one completes its handshake.",
    "  Then 100 more with the 24-byte request written to the commander's socket, and 5 times",
    "  `nft flush ruleset` until `inet ruroco` is listed again (polled with `nft list`).",
    "* `connect` (`bench/connect.py`, private namespace only): server and commander with",
    "  `[grants.bconn]` guarding two ports, the same services on two unguarded ones. Bulk:",
    "  256 MiB each way through `ruroco-client connect` (stdin/stdout pipes to the bench, as",
    "  ssh's are; grant already open) against a direct TCP connection of the bench, first",
    "  byte to last, median of 3. ssh: two real OpenSSH servers (`bench/sshd.py`, key login,",
    "  config and keys of the run's own); from starting `ssh … echo` to the command's output",
    "  line on ssh's stdout, 20 runs each: straight to the unguarded port, and through",
    "  `ProxyCommand ruroco-client connect` (and `--fdpass`) to the guarded one with the",
    "  grant closed before every run (development venv's client: its editable install adds",
    "  ~17 ms per start).",
    "* Per-stage figures: `bench/breakdown.py` times each stage of the path on its own",
    "  (median and p90 of 200), in-process with the real code, except `forward`,",
    "  `commander_process` and `commander_process_cold`, which talk to a real commander",
    "  process (with its default warm shells, and with `warm_shells = false`).",
    "* Floods: one sender process with one UDP socket bound per source address 127.2.x.y",
    "  (1,000 sources), sending round-robin from a pool of 8,192 payloads drawn from the",
    "  kernel RNG up front. Random flood (all 94 bytes random, unlimited rate): the C sender",
    "  `bench/flood.c` (built with `cc -O2` into bench/out/, `sendmmsg` batches of 32 per",
    "  socket), because the Python sender `bench/flood.py` tops out near 75,000/s here while",
    "  the server is reading; without a C compiler the Python sender is used and the table",
    "  says so. Known-key flood (the real key id + 86 random bytes, 20,000/s): the Python",
    "  sender, one datagram per source in turn. Default limits (2/s per",
    "  IP, 100/s global). Legitimate knocks: one real `ruroco-client send` process per second",
    '  from 127.0.0.1, starting 1 s into the flood; "run" counts FIFO bytes, "sent" counts',
    '  client processes that exited 0. "Absorbed" = datagrams the server read (its shutdown',
    "  summary line) divided by the flood duration; kernel drops = RcvbufErrors delta.",
    "  The random flood runs once more with `kernel_filter = true` in the server's config",
    "  (the BPF socket filter of `ruroco/server/kfilter.py`); its filter drops are the",
    "  InErrors delta minus the RcvbufErrors delta.",
    "  Peak RSS = VmHWM of the server process. One 20 s run per flood scenario (time",
    "  budget); every scenario gets a fresh server, commander and client counter.",
    "* Floods against the default deployment (`bench/defaultflood.py`, stages",
    "  `flood_default_<shape>`, 60 s each): config.toml and ruroco.socket are rendered by",
    "  `ansible-playbook` from the `ruroco_server` role's own templates with its",
    "  defaults/main.yml and vars/main.yml; only what names this host is overridden (`ips`",
    "  127.0.0.1, the port, the directories, root as the account, and the commander's",
    "  `allow_non_routable_ips`, without which a knock from 127.0.0.1 is refused). The server",
    "  starts as systemd starts it: `bench/sdactivate.py` opens the socket the rendered unit",
    "  describes (`ListenDatagram=[::]:PORT`, `ReceiveBuffer=` as systemd's `fd_set_rcvbuf`",
    "  sets it, `SO_RCVBUFFORCE` past `net.core.rmem_max`) and execs the server with it as",
    "  fd 3 (`LISTEN_FDS=1`). The C sender spoofs 16,000 sources 127.2.x.y with",
    "  `IP_PKTINFO` on one socket (`sendmmsg`, 32 per call) and sends as fast as it can,",
    "  except the known-key shape, which runs at 100,000/s: random 94 bytes; the real key id",
    "  + 86 random bytes; 1,000–65,000 random bytes; 0–199 random bytes, never 94; the four",
    "  in turn. One real `ruroco-client send` per second from 127.0.0.1 as above, the first",
    "  0.5 s into the flood (60 knocks in 60 s). Dropped by",
    "  the kernel filter = InErrors − RcvbufErrors; queue full = RcvbufErrors (/proc/net/snmp",
    "  of the private namespace); the socket's own counter (/proc/net/udp6 `drops`, the",
    "  server's `SO_MEMINFO`) counts both; the receive queue is sampled every 50 ms.",
    "* Client: wall time of `ruroco-client send` (fork to exit, measured in the bench),",
    "  median of 30 sequential runs after one untimed run (counter file created), from a",
    "  regular byte-compiled wheel install in a venv of the bench's own (what `pip install`",
    "  gives an operator); the development venv's editable install is shown beside it",
    "  (setuptools' editable import hook adds ~17 ms per start). hyperfine is not needed.",
    "* Client library (`bench/clientbench.py`, stage `client_library`): `ruroco.client.sender",
    "  .send` called in the bench process as `ruroco_send` calls it (log lines into a",
    "  StringIO), one untimed knock first (imports, counter file), then `--knocks` timed ones",
    "  to a loopback socket of the bench, each datagram read back and decrypted (untimed) to",
    "  check its counter rises. Then one knock per `os.fork`ed child of that process, a tenth",
    "  as many, as an Ansible worker runs `ruroco_send` (timed in the child from its `send`",
    "  call, and in the parent from before the fork to the exit); the first `send` of a fresh",
    "  `python -c` process, a fiftieth as many (the client's import untimed); and each step",
    "  alone, with the real code (median and p99).",
    "* `ruroco_send` in `ansible-playbook` (`bench/ansiblesend.py`, stage `client_ansible`):",
    "  the real path. A playbook with one `ruroco.ruroco.ruroco_send` task, 50 inventory",
    "  hosts with the local connection, `forks` 1, run twice: the linear strategy imports the",
    "  action plugin in the controller's main process (which calls `sender.warm_up`) and forks",
    "  a worker per host and task. A `sitecustomize` on `PYTHONPATH` wraps `sender.send` to",
    "  time each call inside the worker (bench code; the collection runs unchanged); every",
    "  datagram is read back and its counter checked, and no timed knock may come from the",
    "  main process.",
    "* fwknop 2.6: fwknopd in UDP server mode (`ENABLE_UDP_SERVER`, `UDPSERV_PORT`), access",
    "  stanza with `CMD_CYCLE_OPEN /bin/sh knock.sh` (script = the same `printf x > FIFO`),",
    "  `CMD_CYCLE_CLOSE NONE`, keys from `fwknop --key-gen`, HMAC on. Client wall time is",
    "  `fwknop -A tcp/22 -a 127.0.0.1 -D 127.0.0.1 --use-hmac --rc-file …` (median of 30).",
    "  Latency packets are produced by the real client with `-T` and sent by the bench as",
    "  ruroco's are, after the same 20 untimed knocks: a fresh fwknopd paired with each of",
    "  ruroco's back-to-back runs (after it, then before the next, in turn), as many runs of",
    "  as many knocks, compared median to median; then one spaced run of as many.",
    "  fwknopd has no rate limit, so no flood comparison is made against it.",
]


# "Keep it closed" (`make fuzz`): bench/fuzz.py and bench/crash.py write bench/out/fuzz.json
# and crash.json; their section of RESULTS.md lies between two marker lines, so `make fuzz`
# can rewrite it in place and `make bench` can carry it over.
FUZZ_BEGIN = "<!-- fuzz:begin"
FUZZ_BEGIN_LINE = (
    "<!-- fuzz:begin: generated from bench/out/fuzz.json and crash.json by"
    " `python -m bench.report` (fuzz section); `make fuzz` rewrites it, `make bench` keeps it -->"
)
FUZZ_END = "<!-- fuzz:end -->"
FUZZ_PART = "<!-- fuzz:part {} -->"
_BEGIN_RE = re.compile(r"^<!-- fuzz:begin\b.*$", re.MULTILINE)
_END_RE = re.compile(r"^<!-- fuzz:end -->[ \t]*$", re.MULTILINE)
_PART_RE = re.compile(r"<!-- fuzz:part (\w+) -->")

FUZZ_INTRO = [
    "## Keep it closed: fuzz and crash runs (`make fuzz`)",
    "",
    "`make fuzz` runs `bench/fuzz.py`, then `bench/crash.py` (both run even if one fails; hard"
    " limit 20 minutes), in a private network namespace (`unshare -n`, loopback only) when it"
    " can, and then rewrites this section from their raw figures, bench/out/fuzz.json and"
    " bench/out/crash.json (`python -m bench.report --fuzz-section`); `make bench` keeps it,"
    " and a stage without a JSON file from a run with the documented parameters keeps its"
    " part as it was. CI runs the same code smaller: `tests/e2e/test_e2e_fuzz.py` (30,000"
    " datagrams at ≤ 10,000/s) and `tests/e2e/test_e2e_crash.py` (8 kills).",
    "",
]

# Fuzz shapes (bench/fuzz.py ``Shapes``) in the order the JSON lists them.
FUZZ_SHAPES = {
    "random_size": "random bytes, random size (70 % ≈ 94 ± 12, 27 % 0–512, 3 % 0–65,000)",
    "random_94": "random 94 bytes",
    "known_key_garbage": "real key id + 86 random bytes",
    "truncated": "valid packet truncated to 0–93 bytes",
    "oversized": "valid packet + 1–64 (10 %: up to 64,906) trailing bytes",
    "replayed": "replay of a legitimate knock that already ran",
    "far_future": "counter beyond now + max skew (up to 2¹²⁸ − 1)",
    "old_counter": "unused counter at or below the floor",
    "wrong_version": "protocol version ≠ 1",
    "wrong_destination": "destination IP not in `ips`",
    "bit_flip": "1–4 bit flips of a valid packet",
    "strict_source_mismatch": "strict, claiming a source other than the sender",
}
# One-fault shapes and the rejection reason each must get, all of its datagrams.
FUZZ_OWN_REASON = (
    ("source", "strict_source_mismatch"),
    ("destination", "wrong_destination"),
    ("future", "far_future"),
    ("version", "wrong_version"),
)
# What fuzz.json files written before they recorded it were run with (bench/fuzz.py).
FUZZ_METHOD_BEFORE = {
    "queue_limit": 128 * 1024,
    "queue_check_every": 32,
    "rss_every_s": 0.25,
    "warm_s": 1.5,
    "rss_slack_kb": 4096,
}
DEFAULT_LIMITS = {"per_source": 2, "global": 100}  # ruroco's defaults


class FuzzMarkersError(ValueError):
    """The fuzz section's marker lines are not one begin line followed by one end line."""


def _locate_fuzz(text: str) -> tuple[int, int] | None:
    """``(start, end)`` of the fuzz section in ``text``, marker lines included (and the end
    line's newline); None when there are no markers."""
    begins, ends = list(_BEGIN_RE.finditer(text)), list(_END_RE.finditer(text))
    if not begins and not ends:
        return None
    if len(begins) != 1 or len(ends) != 1 or ends[0].start() < begins[0].start():
        raise FuzzMarkersError(
            f"expected one line starting {FUZZ_BEGIN!r} and, after it, one {FUZZ_END!r} line;"
            f" found {len(begins)} and {len(ends)}"
        )
    end = ends[0].end()
    return begins[0].start(), end + 1 if text[end : end + 1] == "\n" else end


def _fuzz_parts(section: list[str]) -> dict[str, list[str]]:
    """The lines of each part (``<!-- fuzz:part NAME -->`` up to the next marker)."""
    parts: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in section:
        m = _PART_RE.fullmatch(line)
        if m:
            current = parts[m.group(1)] = []
        elif line.startswith(FUZZ_BEGIN) or line == FUZZ_END:
            current = None
        elif current is not None:
            current.append(line)
    for lines in parts.values():
        while lines and not lines[-1].strip():
            lines.pop()
    return parts


def _load_stage(path: Path) -> dict | None:
    """A stage's figures, or None when missing, unreadable or from a shortened run."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    if data.get("documented") is False:
        print(
            f"[bench] {path} is from a run with other parameters than the documented ones"
            f" ({' '.join(data.get('argv') or [])}); RESULTS.md keeps the figures it has",
            file=sys.stderr,
        )
        return None
    return data


def _when(r: dict) -> str:
    finished = str(r.get("finished") or "?").replace("T", " ").removesuffix("Z")
    wall = r.get("wall_seconds")
    return f"finished {finished} UTC" + (f" after {_num(wall, 0)} s" if wall is not None else "")


def _machine(r: dict) -> str:
    m = r.get("machine")
    if not m:
        return "machine not recorded"
    load = m.get("loadavg_start")
    netns = {
        True: "a network namespace with nothing but loopback (`unshare -n`)",
        False: "the host's network namespace",
    }.get(m.get("loopback_only"), "network namespace not recorded")
    return (
        f"{m.get('nproc')} CPUs ({m.get('cpu')}), Linux {m.get('kernel')},"
        f" Python {m.get('python')}, {netns}"
        + (f", load average {' / '.join(map(str, load))} at start" if load else "")
    )


def _stage_head(title: str, script: str, r: dict) -> str:
    problems = r.get("problems") or []
    verdict = (
        "passes every criterion below."
        if not problems
        else "**fails**: " + "; ".join(_code(str(p)[:300]) for p in problems)
    )
    seed = f", seed {r['seed']}" if r.get("seed") is not None else ""
    return f"**{title}** (`{script}`, {_when(r)}{seed}; {_machine(r)}): {verdict}"


def _code(text: str) -> str:
    return "`" + text.replace("`", "'") + "`"


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _mib(kb) -> str:
    return NA if kb is None else f"{kb / 1024:.1f}"


def _limits(limits: dict) -> str:
    text = f"{limits.get('per_source', NA)}/s per source, {_num(limits.get('global'))}/s global"
    return f"the default limits ({text})" if limits == DEFAULT_LIMITS else f"the limits {text}"


def fuzz_part(r: dict) -> list[str]:
    """The fuzz stage's part of the section, from bench/out/fuzz.json."""
    s = r.get("server_summary") or {}
    legit = r.get("legit") or {}
    rss = r.get("rss_kb") or {}
    meth = {**FUZZ_METHOD_BEFORE, **(r.get("method") or {})}
    by_shape = r.get("sent_by_shape") or {}
    total = r.get("datagrams") or 0
    rate = r.get("rate_per_s")
    sources = r.get("fuzz_sources")
    rate_refused = s.get("rejected_rate_source", 0) + s.get("rejected_rate_global", 0)
    per_source = (
        f"each source sends about {rate / sources:.1f} datagram per second"
        if rate and sources
        else "no source sends more than about one datagram per second"
    )

    def rej(*reasons: str) -> str:
        return " / ".join(_num(s.get(f"rejected_{x}")) for x in reasons)

    lost, repeated, unexpected = (
        len(legit.get(k) or []) for k in ("lost", "repeated", "unexpected")
    )
    once = " (exactly once each)" if not repeated and not unexpected else ""
    accepted, forwarded = s.get("accepted"), s.get("forwarded")
    canary = len(r.get("canary_runs") or [])
    canary_cmd = r.get("commander_canary_runs")
    tb = r.get("tracebacks") or {}
    waits = f"{_num(r.get('queue_waits'))} ({_num(r.get('queue_wait_s'))} s in total)"
    if r.get("queue_stalls"):
        waits += f"; gave up after {meth.get('queue_wait_s', 5):g} s: {r['queue_stalls']:,}"
    rows = [
        ("duration / rate", f"{_num(r.get('fuzz_seconds'))} s / {_num(rate)} datagrams/s"),
        (
            "datagrams the server read (`received=`) / sent",
            f"{_num(s.get('received'))} / {_num(r.get('datagrams_to_server'))}",
        ),
        ("kernel drops at the server socket (/proc/net/udp)", _num(r.get("socket_drops"))),
        ("sender waits for the queue", waits),
        ("rejected: size / unknown key / decrypt", rej("size", "unknown_key", "decrypt")),
        (
            "rejected: version / replay / future / destination / source",
            rej("version", "replay", "future", "destination", "source"),
        ),
        ("rejected: per-source / global rate limit", rej("rate_source", "rate_global")),
        (
            f"legitimate knocks sent / ran{once} / lost",
            f"{_num(legit.get('sent'))} / {_num(legit.get('ran'))} / {lost:,}",
        ),
    ]
    if repeated or unexpected:
        rows.append(
            (
                "legitimate knocks run more than once / runs not sent by us",
                f"{repeated:,} / {unexpected:,}",
            )
        )
    rows += [
        (
            "server accepted = forwarded; commander `Running command` lines"
            if accepted == forwarded
            else "server accepted / forwarded; commander `Running command` lines",
            (_num(accepted) if accepted == forwarded else f"{_num(accepted)} / {_num(forwarded)}")
            + f"; {_num(r.get('commander_runs'))}",
        ),
        (
            "runs of `canary` (anything a fuzz datagram caused)",
            f"{canary:,}"
            + (f" (commander log: {canary_cmd:,})" if canary_cmd not in (None, canary) else ""),
        ),
        (
            "server VmRSS start / warm / peak / end (MiB)",
            " / ".join(_mib(rss.get(k)) for k in ("start", "warm", "peak", "end")),
        ),
        (
            "tracebacks in server / commander log",
            f"{tb.get('server.log', NA)} / {tb.get('commander.log', NA)}",
        ),
    ]
    out = [
        _stage_head("Fuzz", "bench/fuzz.py", r),
        "",
        f"One real server + commander pair with {_limits(r.get('limits') or DEFAULT_LIMITS)}."
        " One sender process, one UDP socket, each datagram's source chosen with `IP_PKTINFO`:"
        f" fuzz from {_num(sources)} addresses 127.4.x.y in turn ({per_source}, so the known-key"
        " shapes pass the per-source limit and reach decryption and the checks behind it:"
        f" {rate_refused:,} were refused by a rate limit); {r.get('legit_rate', NA):g}"
        " legitimate knocks per second (fresh counter, built by"
        " `bench.rurocoenv.knock_packet`) interleaved, each from an address 127.3.x.y of its"
        " own (neither limit can refuse them), whose command appends `$RUROCO_IP` to a run log."
        " Every well-formed fuzz packet is encrypted with the real key for a second command,"
        " `canary`, whose run log must stay empty. Pacing: at most"
        f" {_num(r.get('max_rate'))}/s, and before every datagram over 1 KiB and every"
        f" {_ordinal(meth['queue_check_every'])} datagram the sender reads the server socket's"
        " receive queue (/proc/net/udp) and waits while it holds more than"
        f" {meth['queue_limit'] / 1024:g} KiB.",
        "",
        "| shape | datagrams sent |",
        "|---|---:|",
        *(f"| {FUZZ_SHAPES.get(name, f'`{name}`')} | {n:,} |" for name, n in by_shape.items()),
        f"| **total** ({(r.get('bytes_sent') or 0) / 1e6:,.1f} MB) | **{total:,}** |",
        "",
        "| fuzz figure | value |",
        "|---|---:|",
        *(f"| {label} | {value} |" for label, value in rows),
        "",
    ]
    own = [
        (reason, s.get(f"rejected_{reason}"), by_shape.get(shape))
        for reason, shape in FUZZ_OWN_REASON
    ]
    replays = (by_shape.get("replayed") or 0) + (by_shape.get("old_counter") or 0)
    own.append(("replay", s.get("rejected_replay"), replays))
    short = [(want or 0) - (got or 0) for _, got, want in own]
    listed = ", ".join(f"{reason} {_num(got)} of {_num(want)}" for reason, got, want in own)
    if not any(short):
        out.append(
            "Each one-fault shape was refused for exactly its own reason (source, destination,"
            " future, version: counts equal to the shape's; replay = replays + old counters)."
        )
    elif min(short) >= 0 and sum(short) <= rate_refused:
        out.append(
            "Each one-fault shape was refused for its own reason unless a rate limit refused"
            f" the datagram first ({rate_refused:,} in all, of every shape): {listed}"
            " (replay: replays + old counters)."
        )
    else:
        out.append(
            "Not every one-fault shape was refused for its own reason (rejections for the"
            f" reason of datagrams of the shape): {listed} (replay: replays + old counters)."
        )
    slack = meth["rss_slack_kb"]
    warm, end = rss.get("warm"), rss.get("end")
    growth = (
        f" (here end − warm = {(end - warm) / 1024:+.1f} MiB)" if None not in (warm, end) else ""
    )
    out.append(
        f"VmRSS was sampled every {meth['rss_every_s']:g} s ({_num(rss.get('samples'))} samples);"
        ' "warm" is the first sample after a tenth of the datagrams and'
        f" {meth['warm_s']:g} s, when the per-source table (one entry per source seen in the"
        " last second) has its working size; the criterion is end ≤ warm +"
        f" {slack / 1024:g} MiB, i.e. no growth of even"
        f" {slack * 1024 / max(total, 1):.1f} bytes per datagram{growth}. An earlier run with"
        " 50,000 fuzz sources failed it by 0.1 MiB (warm 30.6, end 34.7): with more sources"
        " than are seen per second the table's size, and with it the allocator's footprint,"
        " followed the sender's bursts; the RSS went up and down in steps and did not grow"
        " with the datagram count."
    )
    return out


def crash_part(r: dict) -> list[str]:
    """The crash stage's part of the section, from bench/out/crash.json."""
    k = r.get("knocks") or {}
    s = r.get("final_summary") or {}
    tb = r.get("tracebacks") or {}
    sentinel = r.get("sentinel")
    limits = r.get("limits") or {}
    rate = r.get("knock_rate")

    def besides_sentinel(ips: list) -> int:
        return len(ips) - min(1, ips.count(sentinel))

    def count(key: str, where: dict = r) -> str:
        return _num(len(where.get(key) or []))

    tmp = r.get("tmp_files_after_kill") or {}
    # Every logged hand-off ran exactly once (a criterion), so the other runs are knocks whose
    # server was killed after the hand-off and before its log line.
    unlogged = r.get("accepted_not_handed_over") or 0
    ran_unlogged = max(0, (k.get("ran") or 0) - (r.get("handed_over") or 0))
    lost = len(k.get("lost") or [])
    rows = [
        ("kills under knocks / duration", f"{_num(r.get('kills'))} / {_num(r.get('seconds'))} s"),
        (
            "knocks sent / accepted (server logged `Valid data`) / handed over (logged) / ran",
            " / ".join(
                _num(v)
                for v in (k.get("sent"), r.get("accepted"), r.get("handed_over"), k.get("ran"))
            ),
        ),
        (
            "accepted, but killed before the hand-off was logged: nothing ran (counter used)"
            " / ran all the same",
            f"{_num(unlogged - ran_unlogged)} / {_num(ran_unlogged)}",
        ),
        (
            "runs repeated / not sent by us / without a logged acceptance",
            f"{count('repeated', k)} / {count('unexpected', k)} / {count('ran_not_accepted')}",
        ),
        (
            "handed over but not run exactly once / above the floor persisted at the next kill",
            f"{count('handed_over_not_run')} / {count('floor_not_covering_handover')}",
        ),
        (
            f"blocklist read after each of {count('per_kill')} kills: decode errors / floor went"
            " down",
            f"{count('decode_errors')} / {'yes' if r.get('floor_went_down') else 'no'}",
        ),
        (
            "`blocklist.msgpck.*.tmp` left behind by a kill (kills: files)",
            ", ".join(f"{n}: {files}" for files, n in sorted(tmp.items(), key=lambda i: int(i[0])))
            or NA,
        ),
        (
            f"replay of {_num(r.get('replayed'))} packets: accepted / ran (besides the sentinel)",
            f"{besides_sentinel(r.get('replay_accepted') or [])}"
            f" / {besides_sentinel(r.get('runs_after_replay') or [])}",
        ),
        (
            "final server: received / rejected as replay / socket drops",
            f"{_num(s.get('received'))} / {_num(s.get('rejected_replay'))}"
            f" / {_num(r.get('socket_drops'))}",
        ),
        (
            "tracebacks in server / commander log",
            f"{tb.get('server.log', NA)} / {tb.get('commander.log', NA)}",
        ),
    ]
    restart = r.get("restart_s_median")
    out = [
        _stage_head("Crash", "bench/crash.py", r),
        "",
        "The same deployment, global limit raised to"
        f" {_num(limits.get('global', r.get('global_limit')))} (knocks arrive at"
        f" {NA if rate is None else f'{rate:g}'}/s"
        + (", the default global limit itself" if rate == DEFAULT_LIMITS["global"] else "")
        + f"). The server was SIGKILLed {_num(r.get('kills'))} times at random moments"
        f" ({_num(r.get('kills_during_startup'))} while the restarted server was still starting"
        " up, i.e. before its port was bound; the rest 50–600 ms after) and restarted on the"
        " same port each time (median"
        f" {NA if restart is None else f'{restart:.3f}'} s to a bound port); then, with no more"
        " knocks, killed once more and restarted, and every packet ever sent"
        f" ({_num(r.get('replayed'))}) was sent again from its original address, followed by one"
        " fresh sentinel knock.",
        "",
        "| crash figure | value |",
        "|---|---:|",
        *(f"| {label} | {value} |" for label, value in rows),
        "",
        f"The {lost:,} knocks that were lost (sent while no server was bound, or accepted and"
        " then killed before the hand-off) are the price of persisting the floor before"
        " forwarding: a crash can lose a knock (the client knocks again) but never run one"
        " twice.",
    ]
    return out


FUZZ_STAGES: tuple[tuple[str, str, Callable[[dict], list[str]]], ...] = (
    ("fuzz", "Fuzz", fuzz_part),
    ("crash", "Crash", crash_part),
)


def fuzz_section(out: Path = OUT, previous: str = "") -> list[str]:
    """The fuzz and crash section's lines, marker lines included, for a results file whose
    text is ``previous``; empty when there is nothing to show.

    A stage whose ``out``/<stage>.json holds a documented run is rendered from it; a stage
    without keeps its part of ``previous``'s section; with neither JSON file the whole section
    of ``previous`` stays verbatim. Raises FuzzMarkersError when ``previous``'s marker lines
    are broken (nothing can be carried over safely).
    """
    where = _locate_fuzz(previous)
    old = previous[where[0] : where[1]].rstrip("\n").split("\n") if where else []
    figures = {name: _load_stage(out / f"{name}.json") for name, _, _ in FUZZ_STAGES}
    if all(r is None for r in figures.values()):
        return old
    kept = _fuzz_parts(old)
    lines = [FUZZ_BEGIN_LINE, *FUZZ_INTRO]
    for name, title, render in FUZZ_STAGES:
        part = None
        if figures[name] is not None:
            try:
                part = render(figures[name])
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                print(f"[bench] cannot render {name}.json ({exc!r})", file=sys.stderr)
        if part is None:
            part = kept.get(name) or [
                f"**{title}**: no figures yet (`make fuzz` writes bench/out/{name}.json)."
            ]
        lines += [FUZZ_PART.format(name), *part, ""]
    return [*lines, FUZZ_END]


def update_fuzz_section(path: Path = RESULTS, out: Path = OUT) -> bool:
    """Rewrite only the fuzz section of ``path`` in place (appended when it has none);
    everything outside the marker lines stays byte for byte. False: nothing to write."""
    text = path.read_text() if path.exists() else ""
    section = fuzz_section(out, text)
    if not section:
        return False
    block = "\n".join(section) + "\n"
    where = _locate_fuzz(text)
    if where:
        new = text[: where[0]] + block + text[where[1] :]
    elif text:
        new = text + ("\n" if text.endswith("\n") else "\n\n") + block
    else:
        new = block
    if new != text:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(new)
        os.replace(tmp, path)
    return True


@click.command()
@click.option(
    "--fuzz-section",
    is_flag=True,
    help="Rewrite the fuzz and crash section of the results file from bench/out/{fuzz,crash}.json.",
)
@click.option("--results", type=click.Path(path_type=Path), default=RESULTS, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=OUT, show_default=True)
def main(fuzz_section: bool, results: Path, out: Path) -> None:
    """Results-file maintenance; `make bench` itself writes RESULTS.md through bench.main."""
    if not fuzz_section:
        raise click.UsageError("nothing to do: pass --fuzz-section")
    try:
        wrote = update_fuzz_section(results, out)
    except FuzzMarkersError as exc:
        raise click.ClickException(f"{results}: {exc}; fix the marker lines by hand") from exc
    click.echo(
        f"[fuzz] rewrote the fuzz and crash section of {results}"
        if wrote
        else f"[fuzz] no {out}/fuzz.json or crash.json: {results} left as it was",
        err=True,
    )


if __name__ == "__main__":
    main()
