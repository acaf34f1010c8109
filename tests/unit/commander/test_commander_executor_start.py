"""``Executor.start``: the command runs when it returns; the returned callable waits, logs and
gives the outcome (docs/performance.md). ``run`` is ``start(...)()``; both isolation modes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from commander_helpers import wait_for

from ruroco.commander.commands import Command
from ruroco.commander.executor import Executor, Status
from ruroco.ipaddr import parse_ip

WAIT = 10.0


def test_command_runs_before_the_wait_is_called(
    executor: Executor, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ran"
    finish = executor.start(
        Command("t", f'printf %s "$RUROCO_IP" > {out}', 30), parse_ip("5.6.7.8")
    )
    # Nothing waits for it yet, and it runs: started means spawned.
    assert wait_for(lambda: out.exists() and out.read_text() == "5.6.7.8", WAIT)
    assert "Running command" not in capfd.readouterr().out  # logged by the waiting part
    outcome = finish()
    assert outcome.status is Status.SUCCESS
    logged = capfd.readouterr().out
    running = logged.index("Running command (")
    assert running < logged.index("Execution was successful")


def test_started_command_is_killed_by_kill_all(executor: Executor, tmp_path: Path) -> None:
    marker_file = tmp_path / "started"
    finish = executor.start(
        Command("t", f"touch {marker_file}; exec sleep 60", 120), parse_ip("1.2.3.4")
    )
    assert wait_for(marker_file.exists, WAIT)
    assert executor.kill_all() == 1
    outcome = finish()
    assert outcome.status is Status.FAILURE and outcome.returncode == -9


def test_started_command_keeps_its_timeout(executor: Executor) -> None:
    finish = executor.start(Command("t", "exec sleep 60", 0), parse_ip("1.2.3.4"))
    outcome = finish()
    assert outcome.status is Status.TIMEOUT


def test_spawn_failure_is_logged_at_start_and_gives_an_error_outcome(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    executor = Executor()
    executor._sh = str(tmp_path / "no-such-sh")  # the spawn itself fails
    finish = executor.start(Command("t", "true", 30), parse_ip("1.2.3.4"))
    out, err = capfd.readouterr()
    assert "Running command (" in out
    assert "Error executing true for 1.2.3.4: Could not spawn true" in err
    assert finish().status is Status.ERROR
    assert executor.kill_all() == 0


def test_output_of_a_started_command_is_captured(executor: Executor) -> None:
    finish = executor.start(Command("t", "echo out; echo err >&2", 30), parse_ip("1.2.3.4"))
    outcome = finish()
    assert (outcome.status, outcome.stdout, outcome.stderr) == (Status.SUCCESS, "out", "err")


def test_the_wait_ends_at_the_reap_and_the_report_reads_what_is_left_and_logs(
    executor: Executor, capfd: pytest.CaptureFixture[str]
) -> None:
    """``start_parts``: the dispatcher lets the name's next request go between the two parts,
    so ``wait`` must not include the drain of a background writer (1 s at most) or the outcome
    line; ``report`` does both."""
    command = Command("t", "sleep 3 & echo early", 30)
    wait = executor.start_parts(command, parse_ip("1.2.3.4"))
    t0 = time.monotonic()
    report = wait()
    waited = time.monotonic() - t0
    assert waited < 2.5  # sh is gone; the background sleep (own process group mode) is not
    assert "Execution was successful" not in capfd.readouterr().out
    outcome = report()
    assert (outcome.status, outcome.returncode, outcome.stdout) == (Status.SUCCESS, 0, "early")
    assert "Execution was successful" in capfd.readouterr().out
