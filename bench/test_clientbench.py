"""The client library stage (``bench/clientbench.py``): a short real run, and its report."""

from __future__ import annotations

from pathlib import Path

from bench.clientbench import run_client_library
from bench.report import write_results


def test_client_library_stage_small_real_run(tmp_path: Path) -> None:
    result = run_client_library(tmp_path / "lib", knocks=30)
    inp = result["in_process"]
    assert inp["n"] == 30 and inp["p50_us"] > 0
    assert inp["last"] - inp["first"] >= 30  # every knock read back, counters rising
    assert inp["file"] >= inp["last"]  # the file never below a value that was sent
    assert result["forked"]["send_in_child"]["n"] == 3
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
            "forked": {"send_in_child": {"n": 100, "p50_us": 2100.0, "p99_us": 4000.0}},
            "breakdown": {"lock": step, "counter": step, "counter_fsync_each": step},
        },
    }
    out = tmp_path / "RESULTS.md"
    write_results(results, out)
    text = out.read_text()
    assert "| ≤ 1,000 (p50) | 150.0 / 400.0 ✓ |" in text
    assert "an Ansible worker's `ruroco_send`) p50 / p99 | — | 2,100 / 4,000 |" in text
    assert "## The client library's knock" in text
    assert "| counter | the counter: read the file" in text
