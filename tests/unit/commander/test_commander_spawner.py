"""``ruroco.commander.spawn.Spawner``: SCHED_IDLE taken before exec, and the encoded
environment reused only while it is the same (docs/performance.md, "Warm shells")."""

from __future__ import annotations

import errno
import os
import select
from typing import Any

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


def test_a_refused_idle_policy_falls_back_to_a_normal_spawn_for_good(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where a seccomp filter refuses sched_setscheduler, the child of an idle spawn fails with
    EPERM before its exec (as glibc reports it); the spawn is made again at the caller's
    policy, and no later spawn asks for SCHED_IDLE."""
    spawner = Spawner()
    idle_attr = spawner._idle_attr
    real = spawner._spawn_with
    asked: list[bool] = []

    def refusing(attr: Any, *args: Any) -> int:
        asked.append(attr is idle_attr)
        if attr is idle_attr:
            raise OSError(errno.EPERM, os.strerror(errno.EPERM))
        return real(attr, *args)

    monkeypatch.setattr(spawner, "_spawn_with", refusing)
    env = dict(os.environ)
    normal = str(os.sched_getscheduler(0))
    assert run(spawner, POLICY_FROM_EXEC, env, idle=True).strip() == normal
    assert not spawner.idle_works
    assert run(spawner, POLICY_FROM_EXEC, env, idle=True).strip() == normal
    assert asked == [True, False, False]


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
