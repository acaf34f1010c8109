"""Command execution (docs/security.md, Commands; docs/deviations.md #3) with real ``sh``."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import pytest
from commander_helpers import wait_for
from procfind import marked_pids, marker, no_survivors, pid_gone
from test_commander_pidns import Background

from ruroco.commander.commands import Command
from ruroco.commander.executor import Executor, Status
from ruroco.ipaddr import parse_ip


@pytest.fixture(autouse=True)
def private_tmpdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Output used to go to files in $TMPDIR; point it at a private dir to see nothing lands."""
    capture = tmp_path / "tmpdir"
    capture.mkdir()
    monkeypatch.setenv("TMPDIR", str(capture))
    monkeypatch.setattr(tempfile, "tempdir", str(capture))  # what $TMPDIR means at start-up
    return capture


def run(cmd: str, ip: str = "1.2.3.4", timeout: int = 30, executor: Executor | None = None):
    return (executor or Executor()).run(Command("test", cmd, timeout), parse_ip(ip))


@pytest.mark.parametrize(
    ("ip", "text"),
    [
        ("1.2.3.4", "1.2.3.4"),
        ("::ffff:192.168.178.123", "192.168.178.123"),
        ("dead:beef:dead:beef:dead:beef:dead:beef", "dead:beef:dead:beef:dead:beef:dead:beef"),
        ("2001:0db8:0:0:0:0:0:1", "2001:db8::1"),
    ],
)
def test_ruroco_ip_reaches_command(tmp_path: Path, ip: str, text: str) -> None:
    out = tmp_path / "ip.txt"
    outcome = run(f'printf %s "$RUROCO_IP" > {out}', ip)
    assert outcome.status is Status.SUCCESS
    assert out.read_text() == text


def test_environment_is_inherited(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUROCO_TEST_INHERITED", "yes-inherited")
    outcome = run('printf %s "$RUROCO_TEST_INHERITED"')
    assert outcome.stdout == "yes-inherited"


def test_success_and_failure_are_logged_on_one_line(capfd: pytest.CaptureFixture[str]) -> None:
    ok = run("echo hello; echo oops >&2")
    assert (ok.status, ok.returncode, ok.stdout, ok.stderr) == (Status.SUCCESS, 0, "hello", "oops")
    bad = run("false")
    assert (bad.status, bad.returncode) == (Status.FAILURE, 1)
    out, err = capfd.readouterr()
    success = [line for line in out.splitlines() if "Execution was successful" in line]
    assert success == [
        success[0]  # one line holding command, ip and both outputs
    ] and success[0].endswith(
        "echo hello; echo oops >&2 for 1.2.3.4\\nstdout: hello\\nstderr: oops"
    )
    assert "Running command (" in out
    assert "Execution was not successful (exit status 1): false for 1.2.3.4" in err


def test_no_capture_files_left(private_tmpdir: Path) -> None:
    run("echo x; echo y >&2")
    run("sleep 5", timeout=0)
    assert list(private_tmpdir.iterdir()) == []


def test_chatty_command_cannot_deadlock_and_log_is_capped(
    capfd: pytest.CaptureFixture[str],
) -> None:
    outcome = run("head -c 3000000 /dev/zero | tr '\\0' a; head -c 3000000 /dev/zero >&2")
    assert outcome.status is Status.SUCCESS
    assert len(outcome.stdout) < 100_000 and "more bytes not logged" in outcome.stdout
    out, _ = capfd.readouterr()
    assert len(out) < 400_000


def test_timeout_kills_whole_process_group(
    executor: Executor, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    marker_file = tmp_path / "survived"
    mark = marker(30)
    started = time.monotonic()
    with no_survivors(mark):
        job = Background(executor, f"(sleep 3; touch {marker_file}) & sleep {mark} & wait", 1)
        assert wait_for(lambda: marked_pids(mark), 10)
        (child,) = marked_pids(mark)
        outcome = job.join(30)
        elapsed = time.monotonic() - started
        assert outcome.status is Status.TIMEOUT
        assert elapsed < 10  # 30 s sleeps did not run to the end
        assert wait_for(lambda: pid_gone(child), 5)
    time.sleep(3)
    assert not marker_file.exists()  # the background child was killed, not just sh
    assert "Execution timed out after 1s and was killed" in capfd.readouterr().err


def test_timeout_zero_kills_at_once(tmp_path: Path) -> None:
    marker = tmp_path / "never"
    outcome = run(f"sleep 2 && touch {marker}", timeout=0)
    assert outcome.status is Status.TIMEOUT
    time.sleep(2.5)
    assert not marker.exists()


def test_quick_command_within_timeout(tmp_path: Path) -> None:
    marker = tmp_path / "made"
    assert run(f"touch {marker}", timeout=1).status is Status.SUCCESS
    assert marker.exists()


def test_huge_timeout_means_no_deadline(tmp_path: Path) -> None:
    marker = tmp_path / "made"
    assert run(f"touch {marker}", timeout=2**63 - 1).status is Status.SUCCESS
    assert run(f"touch {marker}", timeout=10**30).status is Status.SUCCESS
    assert marker.exists()


def test_spawn_failure_is_reported(monkeypatch: pytest.MonkeyPatch, capfd) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    outcome = run("true")
    assert outcome.status is Status.ERROR
    assert "Could not spawn true" in capfd.readouterr().err


def test_kill_all_stops_running_commands(executor: Executor) -> None:
    mark = marker(30)
    with no_survivors(mark):
        job = Background(executor, f"sleep {mark} & wait", 2**63 - 1)
        assert wait_for(lambda: marked_pids(mark), 10)
        (child,) = marked_pids(mark)
        assert executor.kill_all() == 1
        outcome = job.join(10)
        assert outcome.status is Status.FAILURE and outcome.returncode == -9
        assert wait_for(lambda: pid_gone(child), 5)
    assert os.getpgrp() != 0  # we are still alive: only the command was killed


@pytest.mark.parametrize("pid_namespace", [True, False])
def test_command_inherits_only_stdin_stdout_stderr(pid_namespace: bool) -> None:
    """posix_spawn does not close descriptors like Popen did: close-on-exec must cover it,
    including descriptors the commander itself inherited without close-on-exec.

    ``/proc/$$`` would be the wrong process inside a PID namespace (``$$`` is 1 there);
    ``cd -P /proc/self`` resolves to sh itself in either mode."""
    inherited = os.open(os.devnull, os.O_RDONLY)
    os.set_inheritable(inherited, True)
    try:
        # Created after the fd: it cleans the table at start.
        executor = Executor() if pid_namespace else Executor(pid_namespace=False)
        outcome = run("cd -P /proc/self && ls fd", executor=executor)
    finally:
        os.close(inherited)
    assert outcome.status is Status.SUCCESS
    assert sorted(outcome.stdout.split()) == ["0", "1", "2"]


def test_stdin_is_dev_null_and_sigpipe_is_default() -> None:
    """Python ignores SIGPIPE; the command must get the default action, as with Popen."""
    outcome = run("cat; yes | head -c 3 >/dev/null; echo done")
    assert outcome.status is Status.SUCCESS
    assert (outcome.stdout, outcome.stderr) == ("done", "")  # yes died of SIGPIPE, silently
    outcome = run("grep -E '^Sig(Ign|Blk)' /proc/self/status")
    masks = {line.split(":")[0]: int(line.split()[1], 16) for line in outcome.stdout.splitlines()}
    assert masks["SigBlk"] == 0
    assert not masks["SigIgn"] & (1 << (13 - 1))  # SIGPIPE


def test_output_is_fresh_per_command(executor: Executor, private_tmpdir: Path) -> None:
    first = executor.run(Command("a", "echo first; echo e1 >&2", 5), parse_ip("1.2.3.4"))
    second = executor.run(Command("a", "echo second", 5), parse_ip("1.2.3.4"))
    assert (first.stdout, first.stderr) == ("first", "e1")
    assert (second.stdout, second.stderr) == ("second", "")
    executor.close()
    assert list(private_tmpdir.iterdir()) == []


def test_exit_status_and_signal_are_reported() -> None:
    assert run("exit 7").returncode == 7
    fallback = Executor(pid_namespace=False)
    assert run("kill -TERM $$", executor=fallback).returncode == -15


def test_sh_as_namespace_init_ignores_its_own_signals() -> None:
    """PID 1 of a namespace only gets signals it handles: ``kill -TERM $$`` is a no-op there,
    and only SIGKILL (our timeout) ends it from outside. Documented for operators."""
    outcome = run("kill -TERM $$; echo still here")
    assert (outcome.status, outcome.stdout) == (Status.SUCCESS, "still here")


def test_without_pidfd_exit_and_timeout_still_work(
    executor: Executor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kernels before 5.3 have no pidfd_open: the executor falls back to polling waitpid."""

    def no_pidfd(pid: int) -> int:
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(os, "pidfd_open", no_pidfd)
    marker = tmp_path / "made"
    assert run(f"touch {marker}; exit 3", timeout=5, executor=executor).returncode == 3
    assert marker.exists()
    started = time.monotonic()
    assert run("sleep 30", timeout=1, executor=executor).status is Status.TIMEOUT
    assert time.monotonic() - started < 10
    chatty = run("head -c 100000 /dev/zero; echo err >&2", timeout=5, executor=executor)
    assert "more bytes not logged" in chatty.stdout and chatty.stderr == "err"
