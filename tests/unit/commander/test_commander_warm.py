"""Warm shells (docs/performance.md, "Warm shells"; docs/deviations.md #24), with real ``sh``.

A released warm shell must be indistinguishable, to the command, from ``sh -c CMD`` spawned at
the request; nothing runs unless released; ended shells never run; a dead one means a cold
spawn. The cold path's own tests run through warm shells too (the ``executor`` fixture's
``-warm`` modes).
"""

from __future__ import annotations

import gc
import os
import pwd
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from commander_helpers import executor_for, wait_for
from localuser import run_as
from procfind import pid_gone
from test_commander_capture import _pipes_and_pidfds

from ruroco.commander import warm
from ruroco.commander.commands import Command
from ruroco.commander.executor import Executor, Status
from ruroco.commander.warm import MAX_WARM_COMMANDS, SHELLS_PER_COMMAND, WarmShells
from ruroco.ipaddr import parse_ip

IP = parse_ip("203.0.113.7")
WAIT = 10.0


@pytest.fixture(params=["pid-namespace", "process-group"])
def plain(request: pytest.FixtureRequest):
    """A plain executor (no ``WarmFirst``) in both isolation modes; closed after."""
    yield from executor_for(request.param)


def warm_shells_of(text: str, parent: int | None = None) -> list[int]:
    """Live warm shells (``sh -c SCRIPT``) whose command text contains ``text`` (children of
    ``parent``); the text is in their environment, which root can read."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            argv = Path(f"/proc/{name}/cmdline").read_bytes().split(b"\0")
            stat = Path(f"/proc/{name}/stat").read_text()
            environ = Path(f"/proc/{name}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] in ("Z", "X") or argv[1:3] != [b"-c", warm.SCRIPT.encode()]:
            continue
        prefix = f"{warm.COMMAND_VARIABLE}=".encode()
        cmd = b"".join(v.removeprefix(prefix) for v in environ if v.startswith(prefix))
        if text.encode() in cmd and (parent is None or int(fields[1]) == parent):
            found.append(int(name))
    return found


def ready(executor: Executor, names: int = 1) -> bool:
    """Every wanted name has all its warm shells."""
    return wait_for(lambda: executor.warm_waiting() == names * SHELLS_PER_COMMAND, WAIT)


def normal(text: str) -> str:
    """Pipe inodes and pids differ between any two spawns; the rest must not."""
    return re.sub(r"pipe:\[\d+\]|/proc/\d+|\b\d{3,}\b", "N", text)


# What a command can see of how it was started.
SEEN = {
    "env": "env | sort",
    "args": 'echo "$0 $# $- $?"; echo "[$*]"',
    "set": "set",
    "fds": "ls -l /proc/self/fd | cut -c1-10,40-",
    "cwd_umask_ids": "pwd; umask; id",
    "signals": "grep -E '^(Sig(Ign|Blk|Cgt)|NoNewPrivs|Cap(Inh|Prm|Eff))' /proc/self/status",
    "session": "ps -o sid=,pgid=,tty= -p $$ | awk '{print ($1 == $2), $3}'",
    "ns_pid": "echo $$ $PPID",
    "stdin": "cat; echo rc=$?",
    "limits": "ulimit -a",
    # scheduling policy (field 41) and nice value (19): SCHED_IDLE while warm, not once released
    "sched": "cut -d' ' -f19,41 /proc/self/stat",
}


@pytest.mark.parametrize("what", sorted(SEEN))
def test_a_released_warm_shell_looks_like_sh_c(plain: Executor, what: str) -> None:
    command = Command("t", SEEN[what], 10)
    cold = plain.run(command, IP)
    plain.keep_warm([command])
    assert ready(plain)
    time.sleep(0.05)
    released = plain.released_warm
    warm = plain.run(command, IP)
    assert plain.released_warm == released + 1
    assert (warm.status, warm.returncode) == (cold.status, cold.returncode) == (Status.SUCCESS, 0)
    assert normal(warm.stdout) == normal(cold.stdout) and warm.stderr == cold.stderr
    if what == "env":
        assert "RUROCO_IP=203.0.113.7" in warm.stdout.splitlines()


def test_nothing_but_ruroco_ip_is_added(plain: Executor) -> None:
    """``set`` lists every shell variable: the preamble leaves none but RUROCO_IP, and fd 3
    is gone before the command's first word."""
    command = Command("t", "set; echo fds:; cd -P /proc/self && ls fd", 10)
    plain.keep_warm([command])
    assert ready(plain)
    outcome = plain.run(command, IP)
    assert plain.released_warm == 1
    names = {line.split("=", 1)[0] for line in outcome.stdout.splitlines() if "=" in line}
    assert "RUROCO_IP" in names and "REPLY" not in names
    assert "RUROCO_IP='203.0.113.7'" in outcome.stdout
    assert outcome.stdout.endswith("fds:\n0\n1\n2")


def test_nothing_runs_unless_released_and_ended_shells_never_run(
    plain: Executor, tmp_path: Path
) -> None:
    ran = tmp_path / "ran"
    command = Command("t", f"touch {ran}", 10)
    plain.keep_warm([command])
    assert ready(plain)
    shells = warm_shells_of(str(ran), os.getpid())
    assert len(shells) == SHELLS_PER_COMMAND
    time.sleep(0.3)
    assert not ran.exists()
    plain.close()
    assert all(pid_gone(pid) for pid in shells)
    time.sleep(0.2)
    assert not ran.exists()
    assert plain.warm_waiting() == 0


def test_timeout_counts_from_the_release(plain: Executor) -> None:
    """A shell that waited 2 s still gets its whole 1 s timeout once released."""
    command = Command("t", "sleep 0.5; echo done", 1)
    plain.keep_warm([command])
    assert ready(plain)
    time.sleep(2)
    outcome = plain.run(command, IP)
    assert plain.released_warm == 1
    assert (outcome.status, outcome.stdout) == (Status.SUCCESS, "done")
    slow = Command("t", "exec sleep 30", 1)
    plain.keep_warm([slow])
    assert ready(plain)
    time.sleep(1.5)
    started = time.monotonic()
    assert plain.run(slow, IP).status is Status.TIMEOUT
    assert 0.9 <= time.monotonic() - started < 10


def test_output_and_log_lines_are_the_cold_ones(
    plain: Executor, capfd: pytest.CaptureFixture[str]
) -> None:
    command = Command("t", "echo out; echo err >&2; exit 3", 10)
    cold = plain.run(command, IP)
    cold_log = capfd.readouterr()
    plain.keep_warm([command])
    assert ready(plain)
    warm = plain.run(command, IP)
    warm_log = capfd.readouterr()
    assert warm == cold and (warm.stdout, warm.stderr, warm.returncode) == ("out", "err", 3)

    def lines(text: str) -> list[str]:
        return [line.split("] ", 1)[1] for line in text.splitlines() if "] " in line]

    assert lines(warm_log.out) == lines(cold_log.out)
    assert lines(warm_log.err) == lines(cold_log.err)


def test_a_dead_warm_shell_means_a_cold_spawn(plain: Executor, tmp_path: Path) -> None:
    out = tmp_path / "ran"
    command = Command("t", f'printf %s "$RUROCO_IP" >> {out}', 10)
    plain.keep_warm([command])
    assert ready(plain)
    for pid in warm_shells_of(str(out), os.getpid()):
        os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: not warm_shells_of(str(out), os.getpid()), WAIT)
    outcome = plain.run(command, IP)
    assert outcome.status is Status.SUCCESS and out.read_text() == "203.0.113.7"
    assert plain.released_warm == 0  # it ran cold
    assert ready(plain)  # refilled after that request
    assert plain.run(command, IP).status is Status.SUCCESS
    assert plain.released_warm == 1
    assert out.read_text() == "203.0.113.7" * 2


def test_a_syntax_error_fails_as_cold_with_eval_in_the_message(plain: Executor) -> None:
    """The text is parsed once released (by ``eval``): the same status and nothing run, the
    same message but for the ``eval:`` that dash puts before it (docs/deviations.md #24)."""
    command = Command("t", "echo a; if", 10)
    cold = plain.run(command, IP)
    plain.keep_warm([command])
    assert ready(plain)
    again = plain.run(command, IP)
    assert plain.released_warm == 1
    assert again.status == cold.status and again.returncode == cold.returncode == 2
    assert again.stdout == cold.stdout == ""  # nothing ran: sh parses the whole line first
    assert cold.stderr.endswith('Syntax error: end of file unexpected (expecting "then")')
    assert again.stderr == cold.stderr.replace(": Syntax error", ": eval: Syntax error")


@pytest.mark.parametrize("text", ["-x", "-e echo hi", "+x", "-- echo hi"])
def test_a_text_sh_would_take_for_options_runs_cold(plain: Executor, text: str) -> None:
    """``sh -c -x`` reads ``-x`` as an option (and fails with a usage error) where ``eval``
    would run it as a command: such a text gets no warm shell, so it fails as it always did
    (a review of the warm shell's eval)."""
    command = Command("t", text, 10)
    cold = plain.run(command, IP)
    assert plain.keep_warm([command]) == 0
    again = plain.run(command, IP)
    assert plain.released_warm == 0 and plain.warm_waiting() == 0
    assert (again.status, again.returncode, again.stderr) == (
        cold.status,
        cold.returncode,
        cold.stderr,
    )


def test_other_users_never_see_a_waiting_shells_command(
    plain: Executor, attacker: pwd.struct_passwd
) -> None:
    """``commands.toml`` is root's; a warm shell waits for as long as the commander runs, so
    its command text must not show in ``ps`` (argv, readable by every user) nor anywhere
    else another user can read. The released command still runs as written."""
    secret = f"TOKEN=s3cr3t-{os.urandom(6).hex()}"
    command = Command("t", f"echo {secret} | wc -c", 10)
    plain.keep_warm([command])
    assert ready(plain)
    shells = warm_shells_of(secret, os.getpid())
    assert len(shells) == SHELLS_PER_COMMAND
    listing = run_as(attacker, "ps", "-eww", "-o", "pid=,args=").stdout
    assert all(f"{pid} sh -c " in listing.replace("  ", " ") for pid in shells), listing
    assert secret not in listing
    for pid in shells:
        peek = subprocess.run(
            ["cat", f"/proc/{pid}/environ", f"/proc/{pid}/cmdline"],
            user=attacker.pw_uid,
            group=attacker.pw_gid,
            extra_groups=[],
            capture_output=True,
            timeout=30,
        )
        assert peek.returncode != 0 and secret.encode() not in peek.stdout
    outcome = plain.run(command, IP)
    assert plain.released_warm == 1
    assert (outcome.status, outcome.stdout) == (Status.SUCCESS, str(len(secret) + 1))


def test_changed_and_removed_commands_end_their_shells_unrun(
    plain: Executor, tmp_path: Path
) -> None:
    first, second, other = (tmp_path / n for n in ("first", "second", "other"))
    plain.keep_warm([Command("a", f"touch {first}", 10), Command("b", f"touch {other}", 10)])
    assert ready(plain, 2)
    old = warm_shells_of(str(first), os.getpid())
    kept = warm_shells_of(str(other), os.getpid())
    plain.keep_warm([Command("a", f"touch {second}", 10), Command("b", f"touch {other}", 10)])
    assert all(pid_gone(pid) for pid in old)
    assert ready(plain, 2)
    assert warm_shells_of(str(other), os.getpid()) == kept  # unchanged: kept as it was
    assert len(warm_shells_of(str(second), os.getpid())) == SHELLS_PER_COMMAND
    plain.keep_warm([])
    assert plain.warm_waiting() == 0 and plain.warm_shells() == 0
    assert not warm_shells_of(str(tmp_path), os.getpid())
    time.sleep(0.2)
    assert not first.exists() and not second.exists() and not other.exists()


def test_a_request_with_an_older_definition_runs_cold(plain: Executor, tmp_path: Path) -> None:
    """A request dispatched before a reload keeps its definition: not the new shell's."""
    plain.keep_warm([Command("a", "echo new", 10)])
    assert ready(plain)
    outcome = plain.run(Command("a", "echo old", 10), IP)
    assert outcome.stdout == "old" and plain.released_warm == 0


def test_disabled_means_none(plain: Executor) -> None:
    assert plain.keep_warm([Command("a", "true", 10)], enabled=False) == 0
    assert plain.warm_waiting() == 0
    plain.run(Command("a", "true", 10), IP)
    assert plain.released_warm == 0 and plain.warm_waiting() == 0


def test_no_descriptor_is_left_open(plain: Executor) -> None:
    gc.collect()
    before = _pipes_and_pidfds()
    command = Command("t", "echo out; echo err >&2", 5)
    plain.keep_warm([command, Command("u", "sleep 10 & sleep 10", 0)])
    assert ready(plain, 2)
    for _ in range(3):
        plain.run(command, IP)
        assert ready(plain, 2)  # replaced on the warm thread meanwhile
    plain.run(Command("u", "sleep 10 & sleep 10", 0), IP)
    assert plain.released_warm == 4
    plain.close()
    assert _pipes_and_pidfds() - before == set()


def test_the_release_pipe_reaches_no_other_process(plain: Executor, tmp_path: Path) -> None:
    """Another command (cold or warm) running while warm shells wait sees only 0, 1, 2."""
    go = tmp_path / "go"
    probe = f"while [ ! -e {go} ]; do sleep 0.01; done; cd -P /proc/self && ls fd"
    plain.keep_warm([Command("w", "true", 5), Command("probe", probe, 5)])
    assert ready(plain, 2)
    results: list[str] = []
    runner = threading.Thread(
        target=lambda: results.append(plain.run(Command("probe", probe, 30), IP).stdout)
    )
    runner.start()
    cold = threading.Thread(
        target=lambda: results.append(plain.run(Command("cold", probe, 30), IP).stdout)
    )
    cold.start()
    time.sleep(0.3)
    go.touch()
    runner.join(30)
    cold.join(30)
    assert [sorted(r.split()) for r in results] == [["0", "1", "2"]] * 2


def test_refill_waits_for_the_released_command(plain: Executor, tmp_path: Path) -> None:
    """The replacement is spawned by the waiting part once the command has started (its
    first event or ``ANNOUNCE_AFTER_SEC``), never before the release."""
    command = Command("t", "sleep 0.2", 5)
    plain.keep_warm([command])
    assert ready(plain)
    finish = plain.start(command, IP)
    assert plain.warm_waiting() == SHELLS_PER_COMMAND - 1  # taken, not yet replaced
    time.sleep(0.1)  # the command sleeps 0.2 s without output: no event, and nobody waits
    assert plain.warm_waiting() == SHELLS_PER_COMMAND - 1
    finish()
    assert ready(plain)


# -- the pool alone (no processes) ------------------------------------------------------------


class _Fake:
    def __init__(self, command: Command, log: list[str]) -> None:
        self.cmd = command.cmd
        self._log = log
        log.append(f"spawn {command.name}")

    def end(self) -> None:
        self._log.append(f"end {self.cmd}")


def test_the_cap_keeps_the_first_names() -> None:
    events: list[str] = []
    pool = WarmShells(lambda c: _Fake(c, events))
    commands = [Command(f"c{i}", f"cmd{i}", 5) for i in range(MAX_WARM_COMMANDS + 6)]
    pool.configure(commands)
    assert pool.wanted() == MAX_WARM_COMMANDS
    assert wait_for(lambda: pool.waiting() == MAX_WARM_COMMANDS * SHELLS_PER_COMMAND, WAIT)
    assert pool.take(commands[-1]) is None  # beyond the cap: cold
    assert pool.take(commands[0]) is not None
    pool.close()
    assert pool.waiting() == 0
    pool.refill_later("c0")
    time.sleep(0.1)
    assert pool.waiting() == 0  # nothing after close


def test_warm_shells_take_at_most_half_the_descriptor_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events: list[str] = []
    monkeypatch.setattr(warm.resource, "getrlimit", lambda _: (256, 4096))
    pool = WarmShells(lambda c: _Fake(c, events), depth=2)
    pool.configure([Command(f"c{i}", f"cmd{i}", 5) for i in range(40)])
    assert pool.wanted() == 256 // 2 // (warm.FDS_PER_SHELL * 2) == 16
    pool.close()


def test_a_failing_spawn_is_one_line_and_no_loop(capfd: pytest.CaptureFixture[str]) -> None:
    calls: list[str] = []

    def spawn(command: Command) -> _Fake:
        calls.append(command.name)
        raise OSError("Could not create release pipe: Too many open files")

    pool: WarmShells[_Fake] = WarmShells(spawn)
    pool.configure([Command("a", "true", 5)])
    assert wait_for(lambda: calls == ["a"], WAIT)
    time.sleep(0.1)
    assert calls == ["a"] and pool.waiting() == 0
    pool.close()
    err = capfd.readouterr().err
    assert err.count("Could not keep a warm shell for command a: Could not create") == 1


_WITHOUT_SYS_NICE = """
import time
from ruroco.commander.commands import Command
from ruroco.commander.executor import Executor
from ruroco.ipaddr import parse_ip
executor = Executor()
command = Command("t", "cut -d' ' -f41 /proc/self/stat", 5)
executor.keep_warm([command])
while executor.warm_waiting() < 2:
    time.sleep(0.01)
outcome = executor.run(command, parse_ip("::1"))
print(f"idle={executor._idle_start} warm={executor.released_warm} policy={outcome.stdout}")
executor.close()
"""


def test_without_cap_sys_nice_warm_shells_start_at_normal_priority() -> None:
    """Leaving SCHED_IDLE needs CAP_SYS_NICE (the role's unit does not grant it): then warm
    shells are never put there, and still released (not ended for an EPERM)."""
    drop = ["setpriv", "--bounding-set", "-sys_nice", "--inh-caps", "-sys_nice"]
    result = subprocess.run(
        [*drop, sys.executable, "-c", _WITHOUT_SYS_NICE],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "idle=False warm=1 policy=0"


def test_with_cap_sys_nice_a_waiting_shell_is_idle_and_a_released_one_is_not(
    plain: Executor,
) -> None:
    command = Command("t", "cut -d' ' -f41 /proc/self/stat", 5)
    plain.keep_warm([command])
    assert ready(plain)
    (pid, *_) = warm_shells_of("cut -d", os.getpid())
    assert wait_for(lambda: os.sched_getscheduler(pid) == os.SCHED_IDLE, WAIT)
    assert plain.run(command, IP).stdout == "0" and plain.released_warm == 1
