"""Turns bench/out/results.json into bench/RESULTS.md.

Every figure in the table comes from the results of the run that wrote it; a stage that
failed shows ``n/a`` and its error is listed under the table.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from bench import stats

NA = "n/a"


def _num(value, digits: int = 1) -> str:
    if value is None:
        return NA
    if isinstance(value, int) or (isinstance(value, float) and value >= 1000):
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _latency(results: dict, field: str) -> float | None:
    """Median over the latency runs of one per-run figure (p50 or p99)."""
    vals = [
        r[field]
        for k, r in results.items()
        if k.startswith("latency_") and r.get(field) is not None
    ]
    return stats.median(vals) if vals else None


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


def _verdict(ok: bool | None) -> str:
    return "" if ok is None else (" ✓" if ok else " ✗")


def table(results: dict) -> list[str]:
    fw = results.get("fwknop", {})
    fwl = fw.get("latency", {})
    fwc = fw.get("client", {})
    cl = results.get("client", {})
    tm = results.get("tmpfs_latency", {})
    p50, p99 = _latency(results, "p50_ms"), _latency(results, "p99_ms")
    rn, rl = results.get("flood_random_new", {}), results.get("flood_random_legacy", {})
    kn, kl = results.get("flood_known_new", {}), results.get("flood_known_legacy", {})
    rk = results.get("flood_random_kfilter", {})

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
            "Same, blocklist on tmpfs (no disk flush): p50 / p99",
            "—",
            f"{_num(tm.get('p50_ms'), 2)} / {_num(tm.get('p99_ms'), 2)}",
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
            "Client wall time, development venv (editable install)",
            "—",
            _num(cl.get("dev_venv", {}).get("median_ms")),
            "—",
            "ms",
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
            "Known-key flood: server peak RSS",
            "≤ 100",
            _num(kn.get("peak_rss_mb")) + _verdict(ok(kn.get("peak_rss_mb"), 100)),
            _num(kl.get("peak_rss_mb")),
            "MB",
        ),
    ]
    out = [
        "| metric | target | ruroco | fwknop / original ordering | unit |",
        "| --- | --- | --- | --- | --- |",
    ]
    out += [f"| {' | '.join(row)} |" for row in rows]
    return out


def write_results(results: dict, path: Path) -> None:
    m = results.get("machine", {})
    lat_runs = [r for k, r in sorted(results.items()) if k.startswith("latency_")]
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
        " with `legacy_rate_limit=True` (every datagram counted against the global cap).",
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
    ctx = results.get("context", {})
    if "atomic_write_ms" in ctx:
        lines.append(
            f"* context: one fsync'd atomic write (what the server does per accepted knock)"
            f" takes {_num(ctx['atomic_write_ms'], 2)} ms here (median of 20); a bare"
            f" `python -c pass` takes {_num(ctx['python_start_ms'], 1)} ms (median of 10)"
        )
    fw = results.get("fwknop", {})
    if "latency" in fw:
        fl, fc = fw["latency"], fw.get("client", {})
        lines.append(
            f"* fwknop: {fl.get('measured')} of {fl.get('knocks')} knocks measured, p50"
            f" {_num(fl.get('p50_ms'), 2)} ms, p99 {_num(fl.get('p99_ms'), 2)} ms; client runs"
            f" ran the command {fc.get('commands_ran')} of {fc.get('commands_expected')} times;"
            f" fwknopd RSS {_num(fw.get('rss_mb'))} MB"
        )
    lines += breakdown_section(results.get("breakdown", {}))
    lines += fleet_section(Path(__file__).resolve().parent / "out" / "fleet.json")
    notes = observations(results)
    if notes:
        lines += ["", "## Observations (derived from this run's figures)", "", *notes]
    if errors:
        lines += ["", "## Stages that failed", "", *errors]
    lines += ["", *METHOD]
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
    ("dispatch_handoff", "commander: `Dispatcher.submit` -> task starts in a worker thread"),
    ("spawn_to_fifo", "commander: `Executor.run` -> `sh -c 'printf x > FIFO'` has written"),
)


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
            " checks, fsync'd blocklist write, connect to the commander)."
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
            " those datagrams are not logged, so fail2ban cannot see them; the default stays off."
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
    "`make bench` (runs `bench/run.sh`: about 2½–4 minutes, hard limit 9 minutes; needs root",
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
    "  server's blocklist on /dev/shm (tmpfs) to show what the disk flushes cost.",
    "* Per-stage figures: `bench/breakdown.py` times each stage of the path on its own",
    "  (median and p90 of 200), in-process with the real code, except `forward` and",
    "  `commander_process`, which talk to a real commander process.",
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
    "* Client: wall time of `ruroco-client send` (fork to exit, measured in the bench),",
    "  median of 30 sequential runs after one untimed run (counter file created), from a",
    "  regular byte-compiled wheel install in a venv of the bench's own (what `pip install`",
    "  gives an operator); the development venv's editable install is shown beside it",
    "  (setuptools' editable import hook adds ~17 ms per start). hyperfine is not needed.",
    "* fwknop 2.6: fwknopd in UDP server mode (`ENABLE_UDP_SERVER`, `UDPSERV_PORT`), access",
    "  stanza with `CMD_CYCLE_OPEN /bin/sh knock.sh` (script = the same `printf x > FIFO`),",
    "  `CMD_CYCLE_CLOSE NONE`, keys from `fwknop --key-gen`, HMAC on. Client wall time is",
    "  `fwknop -A tcp/22 -a 127.0.0.1 -D 127.0.0.1 --use-hmac --rc-file …` (median of 30).",
    "  Latency packets are produced by the real client with `-T` and sent by the bench, 200",
    "  knocks. fwknopd has no rate limit, so no flood comparison is made against it.",
]
