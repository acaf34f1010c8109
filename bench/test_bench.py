"""Tests of the benchmark machinery itself: parsers, the flood sender, the FIFO probe.

Run with ``.venv/bin/pytest bench``. Real sockets on loopback, real FIFOs and processes.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench import proc, stats
from bench.fifo import Fifo
from bench.flood import flood, payload_pool, source_addresses
from bench.fwknopbench import FINAL, parse_keygen, write_configs
from bench.report import write_results
from ruroco.protocol import MSG_SIZE

floats = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False)


@given(st.lists(floats, min_size=1, max_size=200), st.floats(min_value=0, max_value=100))
def test_percentile_is_a_sample_covering_pct_of_values(values, pct):
    p = stats.percentile(values, pct)
    assert p in values
    share = sum(v <= p for v in values) / len(values)
    assert share >= pct / 100 - 1e-9


@given(st.lists(floats, min_size=1, max_size=200))
def test_median_splits_the_values(values):
    m = stats.median(values)
    assert sum(v <= m for v in values) >= len(values) / 2
    assert sum(v >= m for v in values) >= len(values) / 2


def test_percentile_and_median_reject_empty_input():
    with pytest.raises(ValueError):
        stats.percentile([], 50)
    with pytest.raises(ValueError):
        stats.median([])


names = st.from_regex(r"[A-Z][A-Za-z]{0,15}", fullmatch=True)


@given(st.dictionaries(names, st.integers(0, 2**63), min_size=1, max_size=12))
def test_snmp_udp_lines_round_trip(counters):
    text = (
        "Ip: Forwarding DefaultTTL\nIp: 1 64\n"
        f"Udp: {' '.join(counters)}\nUdp: {' '.join(str(v) for v in counters.values())}\n"
        "UdpLite: InDatagrams\nUdpLite: 0\n"
    )
    assert stats.parse_snmp_udp(text) == counters


def test_snmp_of_this_namespace_has_the_counters_the_flood_uses():
    assert {"InDatagrams", "InErrors", "RcvbufErrors"} <= stats.read_snmp_udp().keys()


counts = st.integers(0, 10**12)


@given(counts, counts, counts, counts)
def test_summary_key_value_line(received, accepted, rejected, per_reason):
    log = (
        "[2026-01-01T00:00:00.000Z INFO ] Running server on 127.0.0.1:1\n"
        f"[2026-01-01T00:00:01.000Z INFO ] Server statistics: received={received} "
        f"accepted={accepted} forward_failed=0 rejected={rejected} "
        f"rejected_rate_source={per_reason}\n"
    )
    got = stats.parse_summary(log)
    assert got is not None
    assert (got["received"], got["accepted"], got["rejected"]) == (received, accepted, rejected)
    assert got["rejected_rate_source"] == per_reason


@given(counts, counts, counts)
def test_summary_prose_forms(received, accepted, rejected):
    line = f"stopped: {received} received, accepted {accepted}, {rejected} rejected"
    assert stats.parse_summary(line) == {
        "received": received,
        "accepted": accepted,
        "rejected": rejected,
    }


@given(st.text(alphabet=st.characters(blacklist_characters="0123456789")))
def test_summary_absent_without_numbers(text):
    assert stats.parse_summary(text) is None


def test_status_kb_field():
    text = "Name:\tpython\nVmPeak:\t  20000 kB\nVmHWM:\t   12345 kB\nThreads:\t1\n"
    assert stats.parse_status_kb(text, "VmHWM") == 12345
    assert stats.parse_status_kb(text, "VmRSS") is None
    assert stats.peak_rss_kb(os.getpid()) > 0


def test_source_addresses_are_distinct_loopback():
    addrs = source_addresses(1000, 2)
    assert len(set(addrs)) == 1000
    assert all(a.startswith("127.2.") for a in addrs)
    assert all(0 < int(a.rsplit(".", 1)[1]) <= 250 for a in addrs)
    with pytest.raises(ValueError):
        source_addresses(0, 2)


def _receiver() -> socket.socket:
    r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    r.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    r.bind(("127.0.0.1", 0))
    r.settimeout(1.0)
    return r


def _drain(r: socket.socket) -> list[tuple[bytes, str]]:
    got = []
    r.settimeout(0.2)
    try:
        while True:
            data, peer = r.recvfrom(2048)
            got.append((data, peer[0]))
    except TimeoutError:
        pass
    return got


def test_flood_sends_94_byte_datagrams_from_every_source():
    with _receiver() as r:
        sources = source_addresses(5, 9)
        result = flood(r.getsockname(), sources, payload_pool(None, 64), 0.2, rate=2000)
        got = _drain(r)
    assert result["sent"] > 0 and result["errors"] == 0
    assert len(got) == result["sent"]
    assert {len(d) for d, _ in got} == {MSG_SIZE}
    assert {peer for _, peer in got} == set(sources)


def test_known_key_flood_carries_the_key_id_and_varying_garbage():
    key_id = bytes(range(8))
    with _receiver() as r:
        flood(r.getsockname(), ["127.9.0.1"], payload_pool(key_id, 64), 0.1, rate=1000)
        got = _drain(r)
    assert got and all(d[:8] == key_id for d, _ in got)
    assert len({d[8:] for d, _ in got}) > 1


def test_rate_limited_flood_does_not_exceed_its_rate():
    with _receiver() as r:
        result = flood(r.getsockname(), ["127.9.0.2"], payload_pool(None, 64), 0.5, rate=2000)
    # One batch of 512 may go out before the first pause.
    assert result["sent"] <= 2000 * result["seconds"] + 512


def test_fifo_sees_a_shell_printf(tmp_path):
    fifo = Fifo(tmp_path / "f")
    try:
        assert fifo.wait_byte(0.05) is None
        subprocess.run(["sh", "-c", f"printf x > '{fifo.path}'"], check=True, timeout=5)
        assert fifo.wait_byte(2.0) is not None
        subprocess.run(["sh", "-c", f"printf xy > '{fifo.path}'"], check=True, timeout=5)
        assert fifo.drain(0.1) == 2
        assert fifo.total == 3
    finally:
        fifo.close()


def test_udp_port_bound_follows_a_real_socket():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        assert proc.udp_port_bound(port)
    assert not proc.udp_port_bound(port)


def test_stop_ends_the_whole_process_group(tmp_path):
    child = proc.start(
        ["sh", "-c", "sleep 30 & echo $! > pid; wait"], tmp_path / "log", cwd=tmp_path
    )
    proc.wait_for((tmp_path / "pid").exists, 5, "child")
    time.sleep(0.05)
    grandchild = int((tmp_path / "pid").read_text())
    proc.stop(child, grace=0.5)
    assert child.returncode is not None
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            break
        time.sleep(0.02)
    else:
        os.kill(grandchild, signal.SIGKILL)
        pytest.fail("grandchild survived")


KEYGEN = (
    "KEY_BASE64: MQedQTs9cAJmVBeBhtCi79ZZQHsiBaIZR+3kn5MH6Ew=\n"
    "HMAC_KEY_BASE64: 9VCTkoZrSPDtosj7rpWX1H2GWYw6NQ5Du1PDEcyOCBsLJzkatxt64vkd98Uj0fy0J==\n"
)


def test_fwknop_keygen_output_and_configs(tmp_path):
    keys = parse_keygen("[*] Creating initial rc file: x.\n" + KEYGEN)
    assert keys["KEY_BASE64"].startswith("MQed")
    with pytest.raises(ValueError):
        parse_keygen("KEY_BASE64: abc\n")
    files = write_configs(tmp_path, 62201, keys, tmp_path / "fifo")
    for path in files.values():
        assert path.stat().st_mode & 0o777 == 0o600
    conf = files["fwknopd.conf"].read_text()
    assert "ENABLE_UDP_SERVER Y;" in conf and "UDPSERV_PORT 62201;" in conf
    access = files["access.conf"].read_text()
    assert f"CMD_CYCLE_OPEN /bin/sh {tmp_path / 'knock.sh'}" in access
    assert "CMD_CYCLE_CLOSE NONE" in access
    assert keys["HMAC_KEY_BASE64"] in files["client.rc"].read_text()
    assert "printf x" in (tmp_path / "knock.sh").read_text()


def test_final_spa_data_line():
    m = FINAL.search("   HMAC: abc\n Final SPA Data: 8Eb0Y4Y+/fKh\n\ntest mode enabled")
    assert m and m.group(1) == "8Eb0Y4Y+/fKh"


def test_results_file_shows_given_figures_and_marks_missing_ones(tmp_path: Path):
    results = {
        "machine": {"nproc": 2, "cpu": "Test CPU", "kernel": "6.1", "own_netns": True},
        "latency_1": {"p50_ms": 1.23, "p99_ms": 7.5, "knocks": 10, "measured": 10, "lost": 0},
        "client": {"median_ms": 61.0},
        "flood_random_new": {"error": "ruroco-server exited with 1"},
    }
    out = tmp_path / "RESULTS.md"
    write_results(results, out)
    text = out.read_text()
    assert "| Knock → command latency p50 | ≤ 2 | 1.23 ✓ |" in text
    assert "| Client wall time, median of 30 | ≤ 50 | 61.0 ✗ |" in text
    assert "Test CPU" in text
    assert "ruroco-server exited with 1" in text
    assert "n/a" in text


def test_back_to_back_is_compared_median_to_median_with_fwknopds_runs(tmp_path: Path):
    """fwknopd runs as often as ruroco, paired with ruroco's runs; the verdict
    compares the medians of both, never ruroco's median with one of fwknopd's runs."""
    results = {
        "machine": {"nproc": 2, "cpu": "Test CPU", "kernel": "6.1", "own_netns": True},
        **{
            f"latency_{i}": {"p50_ms": p50, "p99_ms": 2.0, "knocks": 10, "measured": 10}
            for i, p50 in ((1, 1.00), (2, 1.10), (3, 1.20))
        },
        **{
            f"fwknop_latency_{i}": {"p50_ms": p50, "p99_ms": 1.5, "knocks": 10, "measured": 10}
            for i, p50 in ((1, 0.95), (2, 1.15), (3, 1.30))
        },
    }
    out = tmp_path / "RESULTS.md"
    write_results(results, out)
    text = out.read_text()
    row = "| Knock → command p50 / p99 against fwknop, back to back | ≤ 1× / ≤ 2× fwknop |"
    assert f"{row} 1.10 / 2.00 ✓ | 1.15 / 1.50 (fwknop) | ms |" in text
    assert "* fwknop latency run 1 (paired with ruroco's run 1): 10 of 10 knocks" in text
    results["fwknop_latency_2"]["p50_ms"] = 1.05  # the peer's median is now 1.05
    write_results(results, out)
    assert f"{row} 1.10 / 2.00 ✗ | 1.05 / 1.50 (fwknop) | ms |" in out.read_text()
    # a peer run that failed or timed only part of its knocks is left out, and with unequal
    # samples on the two sides there is no verdict
    results["fwknop_latency_2"]["error"] = "fwknopd exited with 1"
    results["fwknop_latency_3"]["measured"] = 2
    write_results(results, out)
    assert f"{row} 1.10 / 2.00 | 0.95 / 1.50 (fwknop) | ms |" in out.read_text()


FWKNOP_RUN = """
import json, sys
from pathlib import Path
from bench.fwknopbench import run_fwknop_latency
print(json.dumps(run_fwknop_latency(Path(sys.argv[1]), 20)))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="fwknopd needs root and a network namespace")
def test_a_fwknop_latency_run_times_real_knocks_of_a_fresh_fwknopd(tmp_path: Path):
    """The peer's stage for real: fwknopd started, 20 knocks by the real client's packets,
    each timed to the FIFO byte, fwknopd stopped (in a network namespace of its own)."""
    script = 'ip link set lo up && RUROCO_BENCH_NETNS=1 exec "$0" -c "$1" "$2"'
    done = subprocess.run(
        ["unshare", "-n", "--", "bash", "-c", script, sys.executable, FWKNOP_RUN, tmp_path],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parent.parent,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert "error" not in result, result
    assert result["knocks"] == result["measured"] == 20 and result["lost"] == 0
    assert result["warmup"] == 20  # sent before the timed ones, as ruroco's runs do
    assert 0 < result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]
    pid = int((tmp_path / "fwknopd.pid").read_text().split()[0])
    assert not Path(f"/proc/{pid}").exists()  # stopped


def test_c_sender_builds_and_floods_from_every_source():
    from bench import cflood

    binary = cflood.build()
    assert binary is not None, "a C compiler is needed for the C flood sender"
    key_id = bytes.fromhex("00ff10ab00cd7f80")
    with _receiver() as r:
        host, port = r.getsockname()
        argv = cflood.argv(binary, host, port, 3, 9, 0.2, 500, key_id)
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=True)
        got = _drain(r)
    sent = json.loads(done.stdout)["sent"]
    assert sent == len(got) > 0
    assert {len(d) for d, _ in got} == {MSG_SIZE}
    assert all(d[:8] == key_id for d, _ in got)
    assert {peer for _, peer in got} == set(source_addresses(3, 9))


def test_c_sender_rejects_bad_arguments():
    from bench import cflood

    binary = cflood.build()
    assert binary is not None
    done = subprocess.run(
        [str(binary), "127.0.0.1", "9", "0", "2", "1", "0", "random"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert done.returncode == 2 and "out of range" in done.stderr


def test_breakdown_times_every_stage_with_real_parts(tmp_path: Path):
    from bench.breakdown import run_breakdown
    from bench.report import STAGES

    result = run_breakdown(tmp_path / "bd", reps=5)
    for key, _ in STAGES:
        assert result[key]["n"] == 5, key
        assert 0 < result[key]["p50_us"] <= result[key]["p90_us"], key
    # the whole pipeline includes the write it makes
    assert result["pipeline_disk"]["p50_us"] > result["decrypt_decode"]["p50_us"]


def test_startup_probes_split_exec_from_the_c_librarys_start_up():
    from bench import startup

    nolibc, glibc, cpuid = (startup.build(n) for n in ("nolibc", "glibc_static", "cpuid"))
    assert nolibc is not None and glibc is not None and cpuid is not None, "needs cc, libc.a"
    bare = sorted(startup.spawn_to_reaped_ns([str(nolibc)], 30))[15]
    with_libc = sorted(startup.spawn_to_reaped_ns([str(glibc)], 30))[15]
    assert bare < with_libc  # the C library's start-up is work on top of execve
    assert all(0 < ns < 1e6 for ns in startup.cpuid_ns(cpuid, 3))


def test_tmpfs_latency_run_keeps_the_blocklist_off_the_deployment_dir(tmp_path: Path):
    from bench.latency import run_latency_tmpfs

    before = set(Path("/dev/shm").glob("ruroco-bench-*"))
    result = run_latency_tmpfs(tmp_path / "lat", knocks=5)
    assert result["blocklist_dir"] == "tmpfs"
    assert (result["measured"], result["lost"]) == (5, 0)
    assert not (tmp_path / "lat" / "blocklist.msgpck").exists()
    assert set(Path("/dev/shm").glob("ruroco-bench-*")) <= before  # removed afterwards


def test_prespawned_run_releases_only_shells_started_before_it(tmp_path: Path):
    """The diagnostic run of docs/performance.md, "Back to back: the replacement shell": every
    knock releases a shell from before the run, and the commander starts none during it."""
    from bench.latency import WARMUP, run_latency_prespawned

    result = run_latency_prespawned(tmp_path / "lat", knocks=5)
    assert (result["measured"], result["lost"]) == (5, 0)
    assert result["prespawned"] == 5 + WARMUP
    shells = result["shells"]
    assert shells["sent"] == 5 + WARMUP
    assert shells["before"] == 5 + WARMUP
    assert shells["after"] == 0  # each knock took one, none came back
    assert "commander_only_p50_ms" not in result  # would spawn cold with the pool frozen


def test_results_file_explains_where_the_time_goes(tmp_path: Path):
    results = {
        "machine": {"nproc": 2},
        "latency_1": {"p50_ms": 3.0, "p99_ms": 9.0, "commander_only_p50_ms": 1.0},
        "tmpfs_latency": {"p50_ms": 1.75, "p99_ms": 4.5, "knocks": 9, "measured": 9, "lost": 0},
        "prespawned_latency": {
            "p50_ms": 2.25,
            "p99_ms": 5.0,
            "measured": 9,
            "knocks": 9,
            "prespawned": 29,
            "shells": {"before": 29, "sent": 29, "after": 0},
        },
        "breakdown": {
            "reps": 7,
            "write_atomic_disk": {"n": 7, "p50_us": 850.0, "p90_us": 990.0},
            "spawn_to_fifo": {"n": 7, "p50_us": 760.5, "p90_us": 900.0},
        },
    }
    out = tmp_path / "RESULTS.md"
    write_results(results, out)
    text = out.read_text()
    assert "| Knock → command latency p50 | ≤ 2 | 3.00 ✗ |" in text  # tmpfs run not mixed in
    assert "| Same, blocklist on tmpfs (no disk flush): p50 / p99 | — | 1.75 / 4.50 |" in text
    assert "| write_atomic_disk |" in text and "| 850.0 | 990.0 | µs |" in text
    assert "| spawn_to_fifo |" in text and "| 760.5 | 900.0 | µs |" in text
    assert "account for about 1.25 ms of the 3.00 ms on disk" in text
    assert "every shell started before the run" in text and "| — | 2.25 / 5.00 |" in text
    assert "the difference, about 0.75 ms, is roughly what starting one `sh`" in text
    results["prespawned_latency"]["shells"]["after"] = 3  # refills happened after all
    write_results(results, out)
    assert "shells were replaced during that run: not comparable" in out.read_text()


def test_results_file_compares_warm_and_cold_commander(tmp_path: Path):
    """docs/performance.md, "Warm shells": both commander stages and the line about them."""
    results = {
        "machine": {"nproc": 2},
        "breakdown": {
            "reps": 7,
            "commander_process": {"n": 7, "p50_us": 250.0, "p90_us": 400.0},
            "commander_process_cold": {"n": 7, "p50_us": 1100.0, "p90_us": 1300.0},
            "release_to_fifo": {"n": 7, "p50_us": 90.0, "p90_us": 150.0},
        },
    }
    out = tmp_path / "RESULTS.md"
    write_results(results, out)
    text = out.read_text()
    assert "| commander_process_cold |" in text and "| release_to_fifo |" in text
    assert "takes 250.0 µs (p50) from request to the command's byte" in text
    assert "1,100 µs when it spawns `sh` at the request" in text


def test_socket_filter_drops_are_counted_as_udp_inerrors_not_rcvbuf_errors():
    """What the kernel_filter flood row relies on: filtered = InErrors - RcvbufErrors."""
    from ruroco.server import kfilter

    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx,
    ):
        rx.bind(("127.0.0.1", 0))
        kfilter.attach(rx, [b"\x01" * 8])
        before = stats.read_snmp_udp()
        for _ in range(200):
            tx.sendto(b"\x02" * MSG_SIZE, rx.getsockname())
        tx.sendto(b"\x01" * MSG_SIZE, rx.getsockname())
        rx.settimeout(2)
        assert rx.recv(200) == b"\x01" * MSG_SIZE
        delta = stats.snmp_delta(before, stats.read_snmp_udp())
    assert delta["InErrors"] - delta["RcvbufErrors"] >= 200


def test_results_file_has_the_kernel_filter_rows(tmp_path: Path):
    results = {
        "machine": {"nproc": 2},
        "flood_random_kfilter": {
            "filtered_per_s": 280_000.0,
            "rcvbuf_drops_per_s": 0.0,
            "absorbed_per_s": 1.0,
            "legit_ran": 19,
            "legit_sent": 19,
            "server_summary": {"received": 19, "accepted": 19, "rejected": 0},
            "snmp_delta": {"InErrors": 5_600_000, "RcvbufErrors": 0},
        },
    }
    out = tmp_path / "RESULTS.md"
    write_results(results, out)
    text = out.read_text()
    assert (
        "| Random flood, `kernel_filter = true`: dropped by the filter / rcvbuf full / read"
        " | — | 280,000 / 0.0 / 1.0 | — | datagrams/s |" in text
    )
    assert (
        "| Random flood, `kernel_filter = true`: legit knocks run / sent | all | 19 / 19 ✓ |"
        in text
    )
    assert "InErrors 5,600,000" in text
    assert "19 of 19 legitimate knocks ran" in text


def test_cpu_seconds_reads_this_process_and_grows_with_work():
    from bench.cpuprobe import cpu_seconds

    user0, sys0 = cpu_seconds(os.getpid())
    deadline = time.process_time() + 0.2
    while time.process_time() < deadline:
        pass
    user1, sys1 = cpu_seconds(os.getpid())
    assert user1 + sys1 - user0 - sys0 >= 0.1


def test_fleet_section_reads_molecule_figures(tmp_path):
    import json

    from bench.report import fleet_section

    path = tmp_path / "fleet.json"
    assert "run `scripts/test-molecule.sh fleet` first" in "\n".join(fleet_section(path))
    path.write_text(
        json.dumps(
            {
                "hosts": 20,
                "ruroco_send_play_median_s": 0.5,
                "ruroco_send_play_s": [0.5],
                "command_fanout_play_median_s": 5.25,
                "command_fanout_play_s": [5.25],
            }
        )
    )
    text = "\n".join(fleet_section(path))
    assert "| one `ruroco.ruroco.ruroco_send` task | 0.500 | 0.500 | s |" in text
    assert "delegated to localhost | 5.250 | 5.250 | s |" in text


def _fuzz_fixture() -> dict:
    """A small bench/out/fuzz.json of the shape bench/fuzz.py writes."""
    return {
        "datagrams": 1000,
        "seed": 7,
        "sent_by_shape": {"random_94": 600, "wrong_version": 250, "replayed": 100},
        "bytes_sent": 94_000,
        "fuzz_seconds": 0.52,
        "rate_per_s": 1923,
        "max_rate": 40_000.0,
        "fuzz_sources": 1000,
        "legit_rate": 40.0,
        "legit": {"sent": 21, "ran": 21, "lost": [], "repeated": [], "unexpected": []},
        "canary_runs": [],
        "commander_runs": 21,
        "commander_canary_runs": 0,
        "server_summary": {
            "received": 1021,
            "accepted": 21,
            "forwarded": 21,
            "rejected_unknown_key": 600,
            "rejected_version": 249,
            "rejected_rate_source": 1,
            "rejected_replay": 100,
        },
        "datagrams_to_server": 1021,
        "socket_drops": 0,
        "queue_waits": 3,
        "queue_wait_s": 0.01,
        "queue_stalls": 0,
        "rss_kb": {"start": 25_600, "warm": 30_720, "peak": 31_744, "end": 30_208, "samples": 4},
        "tracebacks": {"server.log": 0, "commander.log": 0},
        "limits": {"per_source": 2, "global": 100},
        "problems": [],
        "finished": "2026-01-02T03:04:05Z",
        "wall_seconds": 3.2,
        "machine": {"nproc": 2, "cpu": "Test CPU", "kernel": "6.1", "python": "3.11.7"},
        "documented": True,
    }


def _crash_fixture() -> dict:
    """A small bench/out/crash.json of the shape bench/crash.py writes."""
    return {
        "seed": 9,
        "kills": 3,
        "knock_rate": 100.0,
        "global_limit": 1000,
        "seconds": 2.5,
        "restart_s_median": 0.2,
        "replayed": 50,
        "sentinel": "127.3.0.51",
        "replay_accepted": ["127.3.0.51"],
        "runs_after_replay": ["127.3.0.51"],
        "socket_drops": 0,
        "knocks": {"sent": 51, "ran": 40, "lost": ["x"] * 11, "repeated": [], "unexpected": []},
        "accepted": 42,
        "handed_over": 39,
        "accepted_not_handed_over": 3,
        "handed_over_not_run": [],
        "ran_not_accepted": [],
        "floor_not_covering_handover": [],
        "decode_errors": [],
        "floor_went_down": False,
        "kills_during_startup": 1,
        "per_kill": [{}, {}, {}, {}],
        "tmp_files_after_kill": {"0": 3, "1": 1},
        "final_summary": {"received": 51, "rejected_replay": 50},
        "tracebacks": {"server.log": 0, "commander.log": 0},
        "problems": ["the last knock or the sentinel did not run"],
        "finished": "2026-01-02T03:05:00Z",
    }


def _write_fixtures(out: Path, fuzz: dict | None = None, crash: dict | None = None) -> None:
    out.mkdir(exist_ok=True)
    for name, data in (("fuzz", fuzz), ("crash", crash)):
        if data is not None:
            (out / f"{name}.json").write_text(json.dumps(data))


def test_fuzz_section_renders_the_stages_json(tmp_path: Path):
    from bench.report import FUZZ_END, FUZZ_PART, fuzz_section

    _write_fixtures(tmp_path, _fuzz_fixture(), _crash_fixture())
    lines = fuzz_section(tmp_path)
    text = "\n".join(lines)
    assert lines[0].startswith("<!-- fuzz:begin") and lines[-1] == FUZZ_END
    assert lines.index(FUZZ_PART.format("fuzz")) < lines.index(FUZZ_PART.format("crash"))
    assert "## Keep it closed: fuzz and crash runs (`make fuzz`)" in text
    # fuzz: header, method, both tables, derived sentences
    assert "**Fuzz** (`bench/fuzz.py`, finished 2026-01-02 03:04:05 UTC after 3 s, seed 7;" in text
    assert "2 CPUs (Test CPU), Linux 6.1, Python 3.11.7" in text
    assert "): passes every criterion below." in text
    assert "the default limits (2/s per source, 100/s global)" in text
    assert "fuzz from 1,000 addresses 127.4.x.y in turn" in text
    assert "every 32nd datagram" in text and "more than 128 KiB" in text
    assert "| random 94 bytes | 600 |" in text
    assert "| protocol version ≠ 1 | 250 |" in text
    assert "| **total** (0.1 MB) | **1,000** |" in text
    assert "| duration / rate | 0.5 s / 1,923 datagrams/s |" in text
    assert "| datagrams the server read (`received=`) / sent | 1,021 / 1,021 |" in text
    assert "| rejected: per-source / global rate limit | 1 / n/a |" in text
    assert "| legitimate knocks sent / ran (exactly once each) / lost | 21 / 21 / 0 |" in text
    assert "| server accepted = forwarded; commander `Running command` lines | 21; 21 |" in text
    assert "| server VmRSS start / warm / peak / end (MiB) | 25.0 / 30.0 / 31.0 / 29.5 |" in text
    assert "unless a rate limit refused the datagram first (1 in all" in text
    assert "version 249 of 250" in text
    assert "end ≤ warm + 4 MiB" in text and "end − warm = -0.5 MiB" in text
    # crash: a failed criterion is shown, knocks that ran without a logged hand-off split out
    assert "**Crash** (`bench/crash.py`, finished 2026-01-02 03:05:00 UTC, seed 9;" in text
    assert "machine not recorded): **fails**: `the last knock or the sentinel did not run`" in text
    assert "global limit raised to 1,000 (knocks arrive at 100/s, the default global" in text
    assert "SIGKILLed 3 times at random moments (1 while" in text
    assert "| kills under knocks / duration | 3 / 2.5 s |" in text
    assert "| 51 / 42 / 39 / 40 |" in text
    assert "nothing ran (counter used) / ran all the same | 2 / 1 |" in text
    assert (
        "| blocklist read after each of 4 kills: decode errors / floor went down | 0 / no |" in text
    )
    assert "| `blocklist.msgpck.*.tmp` left behind by a kill (kills: files) | 3: 0, 1: 1 |" in text
    assert "| replay of 50 packets: accepted / ran (besides the sentinel) | 0 / 0 |" in text
    assert "The 11 knocks that were lost" in text
    # no markdown table row is broken by a stray pipe
    assert all(ln.count("|") in (3, 0) for ln in lines if ln.startswith("| ") and "---" not in ln)


RESULTS_AROUND = ("# Results\n\nfigures before\n\n", "\n## After\n\ntext after, no newline")


def test_fuzz_section_is_replaced_in_place_and_nothing_else(tmp_path: Path):
    from bench.report import FuzzMarkersError, update_fuzz_section

    out = tmp_path / "out"
    _write_fixtures(out, _fuzz_fixture(), _crash_fixture())
    before, after = RESULTS_AROUND
    old = "<!-- fuzz:begin old -->\n## Keep it closed\n\nold figures 123\n<!-- fuzz:end -->\n"
    results = tmp_path / "RESULTS.md"
    results.write_text(before + old + after)
    assert update_fuzz_section(results, out)
    text = results.read_text()
    assert text.startswith(before) and text.endswith(after)
    section = text[len(before) : len(text) - len(after)]
    assert "old figures 123" not in section and "| random 94 bytes | 600 |" in section
    assert section.startswith("<!-- fuzz:begin") and section.endswith("<!-- fuzz:end -->\n")
    # once more with the same figures: the file does not change at all
    assert update_fuzz_section(results, out) and results.read_text() == text
    # a file without a section gets one appended; the text before stays as it was
    bare = tmp_path / "bare.md"
    bare.write_text(before)
    update_fuzz_section(bare, out)
    assert bare.read_text() == before + "\n" + section
    # broken markers: refuse and leave the file alone
    broken = tmp_path / "broken.md"
    broken.write_text(before + "<!-- fuzz:begin -->\nhalf a section\n" + after)
    with pytest.raises(FuzzMarkersError):
        update_fuzz_section(broken, out)
    assert broken.read_text() == before + "<!-- fuzz:begin -->\nhalf a section\n" + after
    # the entry point `make fuzz` calls
    results.write_text(before + old + after)
    argv = ["--fuzz-section", "--results", str(results), "--out", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", "bench.report", *argv],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert done.returncode == 0, done.stderr
    assert results.read_text() == text


def test_write_results_keeps_the_fuzz_section_when_its_json_is_missing(tmp_path: Path):
    from bench.report import fuzz_section

    out = tmp_path / "out"
    results = {"machine": {"nproc": 2}}
    path = tmp_path / "RESULTS.md"
    _write_fixtures(out, _fuzz_fixture(), _crash_fixture())
    write_results(results, path, out)
    first = path.read_text()
    section = "\n".join(fuzz_section(out)) + "\n"
    assert first.endswith("\n\n" + section)  # after the method, the last thing in the file
    assert "## Method" in first and "| random 94 bytes | 600 |" in first

    for name in ("fuzz.json", "crash.json"):
        (out / name).unlink()
    write_results(results, path, out)  # make bench without make fuzz's output: kept verbatim
    assert path.read_text() == first
    # a hand-edited section without part markers is kept verbatim too
    edited = first.replace("| random 94 bytes | 600 |", "| random 94 bytes | 600 (checked) |")
    path.write_text(edited)
    write_results(results, path, out)
    assert path.read_text() == edited

    path.write_text(first)
    crash = _crash_fixture() | {"kills": 5, "problems": []}
    _write_fixtures(out, crash=crash)  # only crash.json: the fuzz part stays, crash re-rendered
    write_results(results, path, out)
    text = path.read_text()
    assert "| random 94 bytes | 600 |" in text and "finished 2026-01-02 03:04:05 UTC" in text
    assert "| kills under knocks / duration | 5 / 2.5 s |" in text
    assert "3 / 2.5 s" not in text

    # figures of a shortened run never replace those in the file
    _write_fixtures(out, _fuzz_fixture() | {"datagrams": 5, "documented": False})
    write_results(results, path, out)
    assert path.read_text() == text

    # no JSON and no section before: no section (and no markers) at all
    for name in ("fuzz.json", "crash.json"):
        (out / name).unlink()
    fresh = tmp_path / "fresh.md"
    write_results(results, fresh, out)
    assert "fuzz:begin" not in fresh.read_text()


# -- the original's rate-limit ordering (bench/legacy.py), used for the flood comparison --


def _legacy_pipeline(tmp_path: Path, per_ip: int = 2, global_limit: int = 100):
    from bench.legacy import LegacyPipeline
    from bench.rurocoenv import Deployment
    from ruroco.server.blocklist import open_at_startup
    from ruroco.server.config import load_config
    from ruroco.server.keys import find_key_files, load_keys

    dep = Deployment(tmp_path, per_ip=per_ip, global_limit=global_limit)
    dep.fifo.close()
    config = load_config(dep.config)
    keys = load_keys(find_key_files(config.key_dir()))
    blocklist = open_at_startup(config.blocklist_path(), keys, time.time_ns() - 60 * 10**9)
    return LegacyPipeline(config, keys, blocklist), dep


def _reason(result) -> str:
    from ruroco.server.pipeline import Acceptance

    return "accepted" if isinstance(result, Acceptance) else result[0]


def test_legacy_ordering_limits_every_datagram_before_the_key_lookup(tmp_path: Path):
    from bench.rurocoenv import Counter

    p, dep = _legacy_pipeline(tmp_path, global_limit=3)
    for i in range(3):
        assert _reason(p.handle(bytes(94), 94, f"10.0.0.{i}", 4000)) == "unknown_key"
    knock = dep.packet(Counter().next())
    assert _reason(p.handle(knock, 94, "127.0.0.1", 4000)) == "rate_global"  # starved


def test_legacy_per_source_refusals_do_not_eat_global_budget(tmp_path: Path):
    p, _ = _legacy_pipeline(tmp_path, per_ip=1, global_limit=5)
    garbage = bytes(94)
    assert _reason(p.handle(garbage, 94, "10.0.0.1", 4000)) == "unknown_key"
    assert _reason(p.handle(garbage, 94, "10.0.0.1", 4000)) == "rate_source"
    assert _reason(p.handle(garbage, 94, "10.0.0.1", 4000)) == "rate_source"
    for i in range(2, 6):
        assert _reason(p.handle(garbage, 94, f"10.0.0.{i}", 4000)) == "unknown_key"
    assert _reason(p.handle(garbage, 94, "10.0.0.9", 4000)) == "rate_global"


def test_legacy_pipeline_accepts_a_knock_and_spends_the_global_cap_only_once(tmp_path: Path):
    from bench.rurocoenv import Counter

    p, dep = _legacy_pipeline(tmp_path, global_limit=1)
    counter = Counter()
    assert _reason(p.handle(dep.packet(counter.next()), 94, "127.0.0.1", 4000)) == "accepted"
    knock = dep.packet(counter.next())
    assert _reason(p.handle(knock, 94, "127.0.0.2", 4000)) == "rate_global"


@pytest.mark.parametrize(("legacy", "unknown", "rate_source"), [(False, 4, 0), (True, 2, 2)])
def test_server_loop_rate_limits_before_the_key_lookup_only_in_legacy_order(
    tmp_path: Path, legacy: bool, unknown: int, rate_source: int
):
    """The receive loop rejects unknown keys itself; the legacy server turns that off."""
    import threading

    from bench.legacy import create_legacy_server
    from bench.rurocoenv import Deployment
    from ruroco.server.server import create_server

    dep = Deployment(tmp_path, per_ip=2)
    dep.fifo.close()
    create = create_legacy_server if legacy else create_server
    server = create(dep.config, address="127.0.0.1:0")
    result: list = []
    thread = threading.Thread(target=lambda: result.append(server.run()), daemon=True)
    thread.start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            for _ in range(4):
                client.sendto(bytes(94), server.sock.getsockname())
        deadline = time.monotonic() + 5
        while server.stats.received < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        server.request_stop()
        thread.join(5)
        server.close()
    counts = result[0].pipeline
    assert (counts["unknown_key"], counts["rate_source"]) == (unknown, rate_source)


def test_grant_stage_small(tmp_path):
    """CI-sized ``bench/grants.py``: 10 knocks in a private network namespace, each accepted
    only after its knock, a source without a grant refused, the guard back after a flush."""
    argv = ["unshare", "-n", sys.executable, "-m", "bench.grants", "--knocks", "10"]
    argv += ["--work", f"{tmp_path}/grants"]
    res = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert res.returncode == 0, res.stderr
    r = json.loads(res.stdout.strip().splitlines()[-1])
    assert "error" not in r, r
    assert (r["measured"], r["lost"], r["commander_only_n"]) == (10, 0, 10), r
    assert r["refused_before_knock"] == "5 / 5"
    assert r["outsider_refused"] and r["outsider_refused_after_flush"], r
    assert r["guard_back_n"] == 5 and r["guard_back_max_ms"] < 2000, r
    assert 0 < r["p50_ms"] < 1000, r


def test_connect_stage_small(tmp_path):
    """CI-sized ``bench/connect.py``: 4 MiB each way through the relay and directly, and 2
    ssh runs per way (real sshd; each run checks the remote command's output), in a private
    network namespace; every figure is there and positive."""
    argv = ["unshare", "-n", sys.executable, "-m", "bench.connect", "--mib", "4", "--runs", "2"]
    argv += ["--work", f"{tmp_path}/connect"]
    res = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=180,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert res.returncode == 0, res.stderr
    r = json.loads(res.stdout.strip().splitlines()[-1])
    assert "error" not in r, r
    for way in ("direct_download", "relay_download", "direct_upload", "relay_upload"):
        assert r[f"{way}_mib_s"] > 0, r
    for way in ("direct", "connect", "fdpass"):
        assert r[f"ssh_command_{way}_ms"]["n"] == 2 and r[f"ssh_command_{way}_ms"]["p50"] > 0, r
    assert r["ssh"].startswith("OpenSSH_"), r
