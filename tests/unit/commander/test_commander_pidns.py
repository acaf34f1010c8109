"""Nothing a command started outlives its timeout (security review, finding 9).

Real processes throughout. A process is found by a unique argument (``sleep 1000.<n>``) in a
scan of ``/proc``: inside a per-command PID namespace ``$$`` and ``$!`` are that namespace's
numbers, not ours, so a command cannot tell us its pids by writing them to a file.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from commander_helpers import wait_for
from procfind import marked_pids, marker, no_survivors, pid_gone

from ruroco.commander.commands import Command
from ruroco.commander.executor import Executor, Outcome, Status
from ruroco.ipaddr import parse_ip


def session_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[3])


class Background:
    """``executor.run`` in a thread, so the test can look at the command while it runs."""

    def __init__(self, executor: Executor, cmd: str, timeout: int) -> None:
        self.outcome: Outcome | None = None
        self._thread = threading.Thread(
            target=self._run, args=(executor, Command("t", cmd, timeout)), daemon=True
        )
        self._thread.start()

    def _run(self, executor: Executor, command: Command) -> None:
        self.outcome = executor.run(command, parse_ip("1.2.3.4"))

    def join(self, timeout: float) -> Outcome:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "Executor.run did not return"
        assert self.outcome is not None
        return self.outcome


def test_isolation_is_pid_namespace_for_root() -> None:
    assert Executor().isolation == "pid-namespace"


_WITHOUT_CAP_SCRIPT = """
import sys
from ruroco.commander.commands import Command
from ruroco.commander.executor import Executor
from ruroco.ipaddr import parse_ip
print(open("/proc/self/status").read(), flush=True)
executor = Executor()
print("isolation=" + executor.isolation, flush=True)
outcome = executor.run(Command("t", sys.argv[1], 1), parse_ip("::1"))
print("status=" + outcome.status.value, flush=True)
"""


def test_without_cap_sys_admin_falls_back_and_still_kills_setsid_children() -> None:
    """(e) The real fallback: root without CAP_SYS_ADMIN (a container, a unit without it)
    logs one line at start-up and still kills a setsid'd child that is in the tree."""
    mark = marker()
    with no_survivors(mark):
        drop = ["setpriv", "--bounding-set", "-sys_admin", "--inh-caps", "-sys_admin"]
        result = subprocess.run(
            [*drop, sys.executable, "-c", _WITHOUT_CAP_SCRIPT, f"setsid sleep {mark} & sleep 100"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        cap_eff = int(result.stdout.split("CapEff:")[1].split()[0], 16)
        assert not cap_eff & (1 << 21)  # CAP_SYS_ADMIN is really gone
        assert "isolation=process-group" in result.stdout
        assert "status=timeout" in result.stdout
        notes = [line for line in result.stdout.splitlines() if "PID namespaces" in line]
        assert len(notes) == 1 and "CAP_SYS_ADMIN is missing" in notes[0], result.stdout
        assert wait_for(lambda: not marked_pids(mark), 5), "the setsid'd child survived"


def test_timeout_kills_setsid_escapee(executor: Executor) -> None:
    """(a, e) ``setsid`` leaves sh's session and process group (all that the old kill reached);
    both modes still kill it at the timeout."""
    mark, sleeper = marker(), marker(100)
    with no_survivors(mark, sleeper):
        job = Background(executor, f"setsid sh -c 'sleep {mark}' & sleep {sleeper}", timeout=1)
        assert wait_for(lambda: marked_pids(mark) and marked_pids(sleeper), 10)
        (escapee,) = marked_pids(mark)
        assert session_of(escapee) != session_of(marked_pids(sleeper)[0])  # it did detach
        outcome = job.join(30)
        assert outcome.status is Status.TIMEOUT
        assert wait_for(lambda: pid_gone(escapee), 5), "the setsid'd child survived the timeout"


def test_timeout_kills_nested_setsid_escapees(executor: Executor) -> None:
    """Detached twice over and forking while we look: every one of them is still in the tree."""
    outer, inner, loop = marker(), marker(), marker()
    cmd = (
        f"setsid sh -c 'setsid sleep {inner} & sleep {outer} & "
        f"while :; do sleep 0.01 & wait $!; done' {loop} & sleep 100"
    )
    with no_survivors(outer, inner, loop):
        job = Background(executor, cmd, timeout=3)  # room to look at them before it ends
        assert wait_for(lambda: marked_pids(outer) and marked_pids(inner), 10)
        pids = marked_pids(outer) + marked_pids(inner) + marked_pids(loop)
        # The loop's sh forks every 10 ms, and a fork carries its marker until it execs sleep:
        # one or more processes for it, exactly one for each sleep.
        assert len(marked_pids(outer)) == 1 and len(marked_pids(inner)) == 1
        assert len(pids) >= 3
        assert job.join(30).status is Status.TIMEOUT
        assert wait_for(lambda: all(pid_gone(p) for p in pids), 5)


@pytest.mark.parametrize("spawn", ["(sleep {mark} &)", "sleep {mark} >/dev/null 2>&1 &"])
def test_escapee_dies_with_sh_after_a_normal_exit(tmp_path: Path, spawn: str) -> None:
    """(b) A double fork is re-parented to init at once, a plain ``&`` job when sh exits;
    either way it is in sh's namespace, which ends with sh."""
    mark, go = marker(), tmp_path / "go"
    cmd = spawn.format(mark=mark) + f"\nwhile [ ! -e {go} ]; do sleep 0.01; done; echo done"
    with no_survivors(mark):
        job = Background(Executor(), cmd, timeout=30)
        assert wait_for(lambda: marked_pids(mark), 10)
        (escapee,) = marked_pids(mark)
        go.touch()
        outcome = job.join(30)
        assert (outcome.status, outcome.stdout) == (Status.SUCCESS, "done")
        assert wait_for(lambda: pid_gone(escapee), 5), "the background child outlived sh"


def test_background_writer_does_not_hold_up_the_executor(executor: Executor) -> None:
    """(d) A child still writing after sh exited: read for the bounded drain, then cut off."""
    mark = marker()
    cmd = f"sh -c 'while :; do echo tick; sleep 0.02; done' {mark} & echo started"
    with no_survivors(mark):
        job = Background(executor, cmd, timeout=30)
        outcome = job.join(20)  # the drain after sh's exit is bounded (1 s)
        assert outcome.status is Status.SUCCESS
        assert outcome.stdout.startswith("started")
        # Killed with its namespace, or by SIGPIPE on its first write to the closed pipe.
        assert wait_for(lambda: not marked_pids(mark), 5), "the writer kept running"


def test_process_group_mode_leaves_a_silent_background_job_running() -> None:
    """The documented limit of the fallback: after a normal exit nothing is killed."""
    executor = Executor(pid_namespace=False)
    mark = marker()
    with no_survivors(mark):
        outcome = executor.run(
            Command("t", f"sleep {mark} > /dev/null 2>&1 & echo started", 30), parse_ip("::1")
        )
        assert outcome.stdout == "started"
        assert wait_for(lambda: marked_pids(mark), 5)


def test_kill_all_kills_setsid_escapees(executor: Executor) -> None:
    mark = marker()
    with no_survivors(mark):
        job = Background(executor, f"setsid sleep {mark} & sleep 100", timeout=2**63 - 1)
        # Found once setsid(1) has detached and exec'd sleep: its own session.
        assert wait_for(lambda: [p for p in marked_pids(mark) if session_of(p) == p], 10)
        (escapee,) = marked_pids(mark)
        assert executor.kill_all() == 1
        outcome = job.join(30)
        assert (outcome.status, outcome.returncode) == (Status.FAILURE, -9)
        assert wait_for(lambda: pid_gone(escapee), 5)


def test_pid_namespace_semantics_seen_by_the_command() -> None:
    """What operators must know: sh is PID 1 of its namespace and sees only its own processes
    by number; ``/proc`` is still ours, so ``ps`` shows host processes it cannot signal."""
    outcome = Executor().run(
        Command("t", f'echo "$$"; kill -0 {os.getpid()} 2>/dev/null || echo no-kill', 5),
        parse_ip("::1"),
    )
    assert outcome.stdout.split() == ["1", "no-kill"]
    fallback = Executor(pid_namespace=False).run(
        Command("t", f"kill -0 {os.getpid()} && echo can-kill", 5), parse_ip("::1")
    )
    assert fallback.stdout == "can-kill"


def test_worker_threads_keep_their_own_pid_namespace() -> None:
    """unshare/setns act on the calling thread only and are always undone."""
    executor = Executor()
    own = os.readlink("/proc/self/ns/pid")
    errors: list[str] = []

    def work() -> None:
        for _ in range(20):
            executor.run(Command("t", "true", 5), parse_ip("::1"))
            for link in ("pid", "pid_for_children"):
                ns = os.readlink(f"/proc/thread-self/ns/{link}")
                if ns != own:
                    errors.append(f"{link}: {ns}")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert os.readlink("/proc/self/ns/pid_for_children") == own
