"""The client library stage (``bench/clientbench.py``): a short real run, and its report."""

from __future__ import annotations

from pathlib import Path

from bench.ansiblesend import run_ansible_send
from bench.clientbench import run_client_library
from bench.report import write_results


def test_client_library_stage_small_real_run(tmp_path: Path) -> None:
    result = run_client_library(tmp_path / "lib", knocks=30)
    inp = result["in_process"]
    assert inp["n"] == 30 and inp["p50_us"] > 0
    assert inp["last"] - inp["first"] >= 30  # every knock read back, counters rising
    assert inp["file"] >= inp["last"]  # the file never below a value that was sent
    forked = result["forked"]
    assert forked["send_in_child"]["n"] == 3
    # the first child writes what it needs, the second (in series) reserves ahead, the third
    # takes a value of that range through counter.next: no write
    assert forked["counter_writes"] == 2
    assert forked["first_send_fresh_process"]["n"] == 1
    steps = result["breakdown"]
    assert {"lock", "key_parse", "counter", "build", "sendto", "counter_fsync_each"} <= set(steps)
    # a reserved value costs no write: well below the fsync'd write it replaced
    assert steps["counter"]["p50_us"] < steps["counter_fsync_each"]["p50_us"]


def test_results_file_has_the_client_library_rows(tmp_path: Path) -> None:
    step = {"n": 5, "p50_us": 9.0, "p99_us": 20.0, "max_us": 30.0}
    results = {
        "machine": {"nproc": 2},
        "client_library": {
            "in_process": {"n": 1000, "p50_us": 150.0, "p99_us": 400.0, "max_us": 900.0},
            "forked": {
                "send_in_child": {"n": 100, "p50_us": 900.0, "p99_us": 2000.0},
                "fork_to_exit": {"n": 100, "p50_us": 3000.0, "p99_us": 5000.0},
                "counter_writes": 2,
                "first_send_fresh_process": {"n": 20, "p50_us": 1300.0, "p99_us": 1800.0},
            },
            "breakdown": {"lock": step, "counter": step, "counter_fsync_each": step},
        },
        "client_ansible": {
            "send_in_worker": {"n": 100, "p50_us": 1100.0, "p99_us": 2500.0},
            "hosts": 50,
            "runs": 2,
        },
    }
    out = tmp_path / "RESULTS.md"
    write_results(results, out)
    text = out.read_text()
    assert "| ≤ 1,000 (p50) | 150.0 / 400.0 ✓ |" in text
    assert "from the child's `send` call) p50 / p99 | — | 900.0 / 2,000 |" in text
    assert "to the exit (as the parent sees it) p50 / p99 | — | 3,000 / 5,000 |" in text
    assert "import untimed, no `warm_up`) p50 / p99 | — | 1,300 / 1,800 |" in text
    assert (
        "(forks 1, 50 hosts × 2 runs; `send` timed in each forked worker) p50 / p99"
        " | ≤ 1,000 (p50) | 1,100 / 2,500 ✗ |"
    ) in text
    assert "2 of 100 children wrote the counter file" in text
    assert "## The client library's knock" in text
    assert "| counter | the counter: read the file" in text


def test_ansible_send_stage_small_real_run(tmp_path: Path) -> None:
    """A real ``ansible-playbook`` with ``ruroco_send``: every knock timed in a worker, every
    datagram read back with a rising counter (the stage raises otherwise)."""
    result = run_ansible_send(tmp_path / "ansible", runs=1, hosts=3)
    assert result["send_in_worker"]["n"] == 3
    assert result["send_in_worker"]["p50_us"] > 0
