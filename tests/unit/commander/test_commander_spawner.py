"""``ruroco.commander.spawn.Spawner``: SCHED_IDLE taken before exec, and the encoded
environment reused only while it is the same (docs/performance.md, "Warm shells")."""

from __future__ import annotations

import errno
import os
import select
import subprocess
import sys

import pytest

from ruroco.commander.commands import Command
from ruroco.commander.executor import Executor
from ruroco.commander.spawn import Spawner

# The policy as the spawned program itself sees it, from its first instruction on: field 41 of
# /proc/self/stat is read by the exec'd ``cut``, which never ran under any other policy.
POLICY_FROM_EXEC = ["sh", "-c", "exec cut -d' ' -f41 /proc/self/stat"]


def run(spawner: Spawner, argv: list[str], env: dict[str, str], idle: bool = False) -> str:
    """Spawn ``argv`` through ``spawner``, wait for it, return its stdout."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        pid = spawner.spawn("/bin/sh", argv, env, out_w, err_w, idle=idle)
    finally:
        os.close(out_w)
        os.close(err_w)
    chunks = []
    while chunk := os.read(out_r, 4096):
        chunks.append(chunk)
    os.close(out_r)
    os.close(err_r)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return b"".join(chunks).decode()


def test_an_idle_spawn_runs_under_sched_idle_from_its_exec_on() -> None:
    spawner = Spawner()
    assert spawner.idle_works
    env = dict(os.environ)
    assert run(spawner, POLICY_FROM_EXEC, env, idle=True).strip() == str(os.SCHED_IDLE)
    assert run(spawner, POLICY_FROM_EXEC, env).strip() == str(os.sched_getscheduler(0))


# A seccomp filter that makes sched_setscheduler fail with EPERM (as the role's unit does with
# ``SystemCallFilter=~@resources``), installed in a fresh interpreter before the executor is
# made. Classic BPF over struct seccomp_data: the architecture at offset 4, the syscall
# number at 0.
_REFUSE_SCHED = """
import ctypes, os, platform, struct
ARCH = {"x86_64": (0xC000003E, 144), "aarch64": (0xC00000B7, 119)}
audit_arch, nr = ARCH[platform.machine()]
def op(code, jt, jf, k):
    return struct.pack("HBBI", code, jt, jf, k)
prog = b"".join([
    op(0x20, 0, 0, 4), op(0x15, 0, 3, audit_arch),  # other architecture: allow
    op(0x20, 0, 0, 0), op(0x15, 0, 1, nr),  # sched_setscheduler:
    op(0x06, 0, 0, 0x00050000 | 1),  # fail with EPERM
    op(0x06, 0, 0, 0x7FFF0000),  # everything else: allow
])
class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
code = ctypes.create_string_buffer(prog)
fprog = SockFprog(len(prog) // 8, ctypes.addressof(code))
libc = ctypes.CDLL(None, use_errno=True)
assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
assert libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) == 0  # PR_SET_SECCOMP, filter
try:
    os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    raise SystemExit("the filter is not active")
except PermissionError:
    pass
from ruroco.commander.commands import Command
from ruroco.commander.executor import Executor
executor = Executor(pid_namespace=PID_NAMESPACE)
assert executor._idle_start and executor._spawner.idle_works
for _ in range(2):
    warm = executor._spawn_warm(Command("t", "exec cut -d' ' -f41 /proc/self/stat", 5))
    print("spawned", warm.sched is None, os.sched_getscheduler(warm.started.child.pid))
    warm.end()
print("idle_works", executor._spawner.idle_works)
executor.close()
"""


@pytest.mark.parametrize("pid_namespace", [True, False])
def test_a_refused_idle_policy_gives_a_normal_warm_shell_at_once_and_from_then_on(
    pid_namespace: bool,
) -> None:
    """The child of the idle spawn fails before its exec; with a PID namespace it was that
    namespace's init, so the normal spawn needs a namespace of its own (into the old one the
    kernel refuses with ENOMEM)."""
    code = _REFUSE_SCHED.replace("PID_NAMESPACE", str(pid_namespace))
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    normal = os.sched_getscheduler(0)
    assert result.stdout.splitlines() == [
        f"spawned True {normal}",
        f"spawned True {normal}",
        "idle_works False",
    ]


def test_other_spawn_errors_are_not_taken_for_a_refused_policy() -> None:
    spawner = Spawner()
    r, w = os.pipe()
    try:
        with pytest.raises(OSError) as caught:
            spawner.spawn("/nonexistent/sh", ["sh"], {}, w, w, idle=True)
    finally:
        os.close(r)
        os.close(w)
    assert caught.value.errno == errno.ENOENT
    assert spawner.idle_works


def test_the_environment_is_encoded_again_whenever_it_changed() -> None:
    spawner = Spawner()
    env = {"PATH": os.environ.get("PATH", os.defpath), "V": "one"}
    show = ["sh", "-c", 'printf "%s|%s" "$V" "$W"']
    assert run(spawner, show, env) == "one|"
    assert run(spawner, show, env) == "one|"
    env["V"] = "two"  # the same dict, changed in place
    assert run(spawner, show, env) == "two|"
    env["W"] = "added"
    assert run(spawner, show, env) == "two|added"
    assert run(spawner, show, {**env, "V": "copy"}) == "copy|added"
    del env["W"]
    assert run(spawner, show, env) == "two|"


def test_warm_shells_wait_under_sched_idle_and_get_the_policy_back_at_release() -> None:
    executor = Executor(pid_namespace=False)
    try:
        assert executor._spawner.idle_works
        executor.keep_warm([Command("t", "true", 5)])
        shell = None
        for _ in range(200):
            shell = executor._warm.take(Command("t", "true", 5))
            if shell is not None:
                break
            select.select([], [], [], 0.01)
        assert shell is not None
        pid = shell.started.child.pid
        assert os.sched_getscheduler(pid) == os.SCHED_IDLE
        assert shell.sched == (os.sched_getscheduler(0), os.sched_getparam(0))
        shell.end()
    finally:
        executor.close()
