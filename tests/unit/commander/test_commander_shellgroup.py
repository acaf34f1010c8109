"""An idle CPU group per warm shell (docs/performance.md, "An idle group per warm shell"),
with real cgroups, real ``sh`` and real processes.

A waiting shell is in a group of its own marked ``cpu.idle``; the command it runs never is:
the mark is cleared before the release, or the shell is ended and the command spawned cold.
Groups are removed when their command is reaped, and a later commander removes what a killed
one left. On a host whose ``cpu`` controller is not in a cgroup v1 hierarchy (cgroup v2, as
on a stock Debian 12), the executor says so and warm shells work without groups; that is
what these tests check there, the rest needs the hierarchy (the CI machines have it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from commander_helpers import CommanderProcess, wait_for
from hypothesis import given
from hypothesis import strategies as st
from test_commander_warm import ready, warm_shells_of

from ruroco.commander.commands import Command
from ruroco.commander.executor import Executor
from ruroco.commander.procstat import stat_fields
from ruroco.commander.shellgroup import _RT, PREFIX, RETRY_BUSY_SEC, ShellGroups, cpu_cgroup_dir
from ruroco.commander.warm import FDS_PER_SHELL, SHELLS_PER_COMMAND
from ruroco.ipaddr import parse_ip

IP = parse_ip("203.0.113.7")
WAIT = 10.0


def _home() -> Path | None:
    """This process's cpu cgroup directory, None where there is no v1 cpu hierarchy."""
    try:
        return Path(cpu_cgroup_dir(Path("/proc/self/cgroup").read_text(), _mountinfo()))
    except OSError:
        return None


def _mountinfo() -> str:
    return Path("/proc/self/mountinfo").read_text()


HOME = _home()
# Where the hierarchy is mounted, and this process's group in it ("/": the root group).
MOUNT = "" if HOME is None else cpu_cgroup_dir("1:cpu:/\n", _mountinfo())
OWN = str(HOME).removeprefix(MOUNT) or "/"
# What a command prints: its cpu cgroup (in the hierarchy) and that group's mark.
SHOW = (
    "g=$(sed -n 's/^[0-9]*:\\([^:]*,\\)\\{0,1\\}cpu\\(,[^:]*\\)\\{0,1\\}:\\(.*\\)/\\3/p' "
    f"/proc/self/cgroup); echo \"$g $(cat '{MOUNT}'$g/cpu.idle)\""
)


def group_of(pid: int) -> str:
    """The cpu cgroup directory of ``pid``."""
    cgroup = Path(f"/proc/{pid}/cgroup").read_text()
    return cpu_cgroup_dir(cgroup, _mountinfo())


def our_groups() -> list[str]:
    assert HOME is not None
    return sorted(p.name for p in HOME.iterdir() if p.name.startswith(f"{PREFIX}{os.getpid()}."))


@pytest.fixture
def executor():
    executor = Executor()
    yield executor
    executor.close()


def test_the_start_line_part_says_whether_groups_are_used(executor: Executor) -> None:
    if HOME is None:
        assert executor.shell_groups == "off (no cgroup v1 hierarchy has the cpu controller)"
    else:
        assert executor.shell_groups == "idle"
    assert Executor(shell_groups=False).shell_groups == "off"


def test_a_waiting_shell_is_idle_and_its_released_command_is_not(executor: Executor) -> None:
    command = Command("t", SHOW, 5)
    cold = Executor(shell_groups=False).run(command, IP)
    executor.keep_warm([command])
    assert ready(executor)
    shells = warm_shells_of(SHOW, os.getpid())
    if HOME is None:  # no groups: a warm shell runs its command as before
        assert executor.run(command, IP).stdout == cold.stdout
        return
    groups = {group_of(pid) for pid in shells}
    assert len(groups) == len(shells) == 3
    for group in groups:
        assert Path(group).parent == HOME and Path(group).name.startswith(PREFIX)
        assert Path(group, "cpu.idle").read_text() == "1\n"
    outcome = executor.run(command, IP)
    assert executor.released_warm == 1
    where, mark = outcome.stdout.split()
    assert mark == "0" and MOUNT + where in groups
    assert not Path(MOUNT + where).exists()  # reaped: its group is gone
    assert cold.stdout.split()[0] == OWN  # a cold command runs in the commander's own group


def test_close_removes_every_group() -> None:
    executor = Executor()
    executor.keep_warm([Command("a", "true", 5), Command("b", "true", 5)])
    assert ready(executor, 2)
    if HOME is not None:
        assert len(our_groups()) == 6
    executor.close()
    if HOME is not None:
        assert our_groups() == []


def test_a_command_never_runs_idle_when_the_mark_cannot_be_cleared(
    executor: Executor, capfd: pytest.CaptureFixture[str]
) -> None:
    """Every waiting shell's group is renamed behind the executor's back, so its mark cannot
    be cleared: the release ends each shell and the command is spawned cold, in the
    commander's group."""
    if HOME is None:
        assert executor.shell_groups.startswith("off")
        return
    command = Command("t", SHOW, 5)
    executor.keep_warm([command])
    assert ready(executor)
    waiting = [shell.started.group.name for shell in executor._warm._shells["t"]]
    for name in waiting:
        (HOME / name).rename(HOME / f"{name}-moved")
    try:
        outcome = executor.run(command, IP)
        assert executor.released_warm == 0
        where, mark = outcome.stdout.split()
        assert (where, mark) == (OWN, Path(HOME, "cpu.idle").read_text().strip())
        err = capfd.readouterr().err
        assert err.count("Could not release a warm shell of ruroco-shell-") == 3, err
        # each was ended: its (renamed) group is empty
        for name in waiting:
            assert (HOME / f"{name}-moved" / "cgroup.procs").read_text() == ""
    finally:
        for name in waiting:
            (HOME / f"{name}-moved").rmdir()


def test_a_group_a_leftover_process_holds_is_removed_once_it_is_empty(tmp_path: Path) -> None:
    """Outside a PID namespace a command's background process outlives ``sh``: its group
    stays until that process is gone; the next group made after ``RETRY_BUSY_SEC`` (here:
    the replacement of the next knock's shell) removes it."""
    executor = Executor(pid_namespace=False)
    try:
        once = tmp_path / "once"  # only the first knock leaves a process behind
        command = Command(
            "t",
            f"[ -e {once} ] || {{ : > {once}; "
            "setsid sleep 30 </dev/null >/dev/null 2>&1 & echo $!; }",
            5,
        )
        executor.keep_warm([command])
        assert ready(executor)
        sleeper = int(executor.run(command, IP).stdout)
        assert executor.released_warm == 1
        if HOME is None:
            os.kill(sleeper, signal.SIGKILL)
            return
        held = Path(group_of(sleeper))
        assert held.name.startswith(PREFIX) and held.name in our_groups()
        time.sleep(RETRY_BUSY_SEC)
        executor.run(command, IP)  # a new group: too early for the held one to be retried
        assert ready(executor)
        assert held.exists()
        os.kill(sleeper, signal.SIGKILL)
        assert wait_for(lambda: (held / "cgroup.procs").read_text() == "", WAIT)
        time.sleep(RETRY_BUSY_SEC)
        executor.run(command, IP)
        assert wait_for(lambda: not held.exists(), WAIT)  # while the commander runs on
        assert ready(executor)
        assert wait_for(lambda: len(our_groups()) == 3, WAIT)
    finally:
        executor.close()
    if HOME is not None:
        assert our_groups() == []


def test_a_taken_name_is_skipped_and_a_dead_namesakes_groups_are_removed() -> None:
    """A group name that exists already (a leftover it may not remove) is passed over; groups
    of a commander that had our pid before us (another start time) are removed at start."""
    if HOME is None:
        return
    me = os.getpid()
    namesake = HOME / f"{PREFIX}{me}.1-1"  # our pid, started at tick 1: long gone
    namesake.mkdir()
    groups, reason = ShellGroups.probe()
    assert groups is not None, reason
    try:
        assert not namesake.exists()
        owner = our_groups_owner()
        probe = groups.new()
        number = int(probe.name.rsplit("-", 1)[1])
        probe.remove()
        taken = HOME / f"{PREFIX}{owner}-{number + 1}"
        taken.mkdir()
        group = groups.new()
        assert group.name == f"{PREFIX}{owner}-{number + 2}"
        group.remove()
    finally:
        groups.close()
        taken.rmdir()
    assert our_groups() == []


def our_groups_owner() -> str:
    """This process's ``<pid>.<start time>``, as its groups are named."""
    return f"{os.getpid()}.{stat_fields(os.getpid())[19].decode()}"


def test_a_waiting_shell_holds_no_more_descriptors_than_without_groups(
    executor: Executor,
) -> None:
    """``warm.FDS_PER_SHELL`` sizes the cap on warm commands: a group adds none while its
    shell waits (``cpu.idle`` is opened at the release)."""
    before = len(os.listdir("/proc/self/fd"))
    executor.keep_warm([Command("t", "true", 5)])
    assert ready(executor)
    assert len(os.listdir("/proc/self/fd")) - before == SHELLS_PER_COMMAND * FDS_PER_SHELL


def test_a_realtime_commander_makes_no_groups_where_they_get_no_realtime_time() -> None:
    """With real-time group scheduling a new group has no real-time budget, so the release
    could not give a real-time commander's policy back: groups are off (the reason says why),
    where the kernel has it; elsewhere they are on."""
    result = subprocess.run(
        ["chrt", "-f", "10", sys.executable, "-c", _PROBE],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    if HOME is None:
        assert result.stdout.startswith("off (no cgroup v1")
    elif (HOME / "cpu.rt_runtime_us").exists():
        assert result.stdout.strip() == f"off ({_RT})"
    else:
        assert result.stdout.strip() == "idle"


def test_a_path_outside_the_cgroup_namespace_is_refused() -> None:
    with pytest.raises(OSError, match="outside this cgroup namespace"):
        cpu_cgroup_dir("1:cpu:/../../x\n", V1_MOUNTS.replace("cpu,cpuacct", "cpu"))


_KILLED = """
import os, sys, time
from ruroco.commander.commands import Command
from ruroco.commander.executor import Executor
executor = Executor()
executor.keep_warm([Command("t", "true", 5)])
while executor.warm_waiting() < 3:
    time.sleep(0.01)
print(os.getpid(), flush=True)
time.sleep(60)
"""


def test_a_killed_commanders_groups_are_removed_by_the_next() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED], stdout=subprocess.PIPE, text=True, env=os.environ
    )
    try:
        assert proc.stdout is not None
        pid = int(proc.stdout.readline())
    finally:
        proc.kill()
        proc.wait()
    if HOME is None:
        return
    left = [p for p in HOME.iterdir() if p.name.startswith(f"{PREFIX}{pid}.")]
    assert len(left) == 3
    # its warm shells read end of file and exit: the groups empty
    assert wait_for(lambda: all((p / "cgroup.procs").read_text() == "" for p in left), WAIT)
    Executor().close()
    assert not any(p.exists() for p in left)


def test_a_running_commanders_groups_are_left_alone(executor: Executor) -> None:
    executor.keep_warm([Command("t", "true", 5)])
    assert ready(executor)
    if HOME is None:
        return
    mine = our_groups()
    other = Executor()  # its probe sweeps: not these
    other.close()
    assert our_groups() == mine and executor.run(Command("t", "true", 5), IP).returncode == 0


_PROBE = """
from ruroco.commander.executor import Executor
print(Executor().shell_groups)
"""
_RUN_ONE = """
import time
from ruroco.commander.commands import Command
from ruroco.ipaddr import parse_ip
executor = Executor()
executor.keep_warm([Command("t", "true", 5)])
while executor.warm_waiting() < 3:
    time.sleep(0.01)
outcome = executor.run(Command("t", "true", 5), parse_ip("::1"))
print(f"warm={executor.released_warm} rc={outcome.returncode}")
executor.close()
"""


def test_a_read_only_cgroup_hierarchy_means_no_groups() -> None:
    """As under systemd's ``ProtectControlGroups=yes``: the hierarchy mounted read-only in
    the commander's mount namespace. The probe says why; warm shells work without groups."""
    script = _PROBE + _RUN_ONE
    if HOME is None:
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
        assert result.stdout.startswith("off (no cgroup v1")
        return
    shell = f'mount -o remount,bind,ro \'{MOUNT}\' && exec "$0" -c "$1"'
    result = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", shell, sys.executable, script],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    printed = [line for line in result.stdout.splitlines() if not line.startswith("[")]
    assert printed == ["off (Read-only file system)", "warm=1 rc=0"]


def test_a_cgroup_others_can_write_is_not_used() -> None:
    """A commander whose own cgroup another user may write makes no groups there."""
    if HOME is None:
        return
    home = HOME / f"ruroco-test-{os.getpid()}"
    home.mkdir()
    try:
        home.chmod(0o777)
        script = f"open('{home}/cgroup.procs', 'w').write('0')\n" + _PROBE
        result = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=30
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"off ({home} is writable by others than root)"
    finally:
        assert wait_for(lambda: (home / "cgroup.procs").read_text() == "", WAIT)
        home.rmdir()


# -- parsing /proc/PID/cgroup and mountinfo ----------------------------------------------------

V1_MOUNTS = (
    "33 25 0:29 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755\n"
    "35 33 0:31 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct\n"
    "36 33 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    "37 33 0:33 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate\n"
)


def test_a_combined_cpu_hierarchy_and_a_subgroup() -> None:
    cgroup = "4:memory:/x\n3:cpu,cpuacct:/system.slice/ruroco-commander.service\n0::/y\n"
    assert cpu_cgroup_dir(cgroup, V1_MOUNTS) == (
        "/sys/fs/cgroup/cpu,cpuacct/system.slice/ruroco-commander.service"
    )


def test_the_root_group_and_a_mount_of_part_of_the_hierarchy() -> None:
    assert cpu_cgroup_dir("1:cpu:/\n", V1_MOUNTS.replace("cpu,cpuacct", "cpu")) == (
        "/sys/fs/cgroup/cpu"
    )
    # a container sees its own part of the hierarchy mounted (no cgroup namespace)
    part = "40 33 0:31 /docker/abc /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n"
    assert cpu_cgroup_dir("2:cpu:/docker/abc/inner\n", part) == "/sys/fs/cgroup/cpu/inner"
    assert cpu_cgroup_dir("2:cpu:/docker/abc\n", part) == "/sys/fs/cgroup/cpu"
    with pytest.raises(OSError, match="not mounted"):
        cpu_cgroup_dir("2:cpu:/docker/abcd\n", part)


def test_cgroup_v2_only_and_cpuset_are_not_the_cpu_controller() -> None:
    with pytest.raises(OSError, match="no cgroup v1 hierarchy has the cpu controller"):
        cpu_cgroup_dir("0::/system.slice/x.service\n", V1_MOUNTS)
    with pytest.raises(OSError, match="no cgroup v1"):
        cpu_cgroup_dir("5:cpuset,cpuacct:/\n", V1_MOUNTS)


def test_an_escaped_mount_point() -> None:
    mount = "35 33 0:31 / /sys/fs/cgroup/my\\040cpu rw - cgroup cgroup rw,cpu\n"
    assert cpu_cgroup_dir("1:cpu:/a\n", mount) == "/sys/fs/cgroup/my cpu/a"


@given(st.text(), st.text())
def test_any_text_gives_a_directory_or_an_oserror(cgroup: str, mountinfo: str) -> None:
    try:
        where = cpu_cgroup_dir(cgroup, mountinfo)
    except OSError:
        return
    assert where.startswith("/")


def test_groups_are_made_below_the_directory_the_probe_checked() -> None:
    """``ShellGroups`` holds the directory open: a group is made there, by descriptor."""
    if HOME is None:
        assert ShellGroups.probe()[0] is None
        return
    groups, reason = ShellGroups.probe()
    assert groups is not None and reason == ""
    group = groups.new()
    try:
        assert (HOME / group.name / "cpu.idle").read_text() == "1\n"
        group.wake()
        assert (HOME / group.name / "cpu.idle").read_text() == "0\n"
    finally:
        group.remove()
        groups.close()
    assert not (HOME / group.name).exists()


# -- a real commander ---------------------------------------------------------------------------


def test_a_commander_says_whether_it_uses_groups_and_the_key_turns_them_off(
    start_commander: Callable[..., CommanderProcess], tmp_path: Path
) -> None:
    """``warm_shell_groups`` (docs/files.md): on by default, ``false`` keeps every warm shell
    in the commander's own group; the start line says which."""
    (tmp_path / "on").mkdir()
    (tmp_path / "off").mkdir()
    on = start_commander({"a": "true"}, tmp_path / "on")
    off = start_commander({"a": "true"}, tmp_path / "off", warm_shell_groups=False)
    assert "warm shells: 1 (CPU groups: off)" in off.stdout
    pid = off.proc.pid
    assert wait_for(lambda: len(warm_shells_of("true", pid)) == 3, WAIT)
    assert {group_of(shell) for shell in warm_shells_of("true", pid)} == {group_of(pid)}
    if HOME is None:
        assert "(CPU groups: off (no cgroup v1 hierarchy has the cpu controller))" in on.stdout
        return
    assert "warm shells: 1 (CPU groups: idle)" in on.stdout
    pid = on.proc.pid
    assert wait_for(lambda: len(warm_shells_of("true", pid)) == 3, WAIT)
    groups = {group_of(shell) for shell in warm_shells_of("true", pid)}
    assert len(groups) == 3 and all(f"/{PREFIX}{pid}." in group for group in groups)
