"""Warm shells of a real ``ruroco-commander`` (docs/performance.md, "Warm shells"): spawned at
start, released by requests, replaced after a release, ended (never run) by a reload that
changes or removes their command, and gone without running anything when the commander is
killed with SIGKILL."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

from commander_helpers import CommanderProcess, wait_for, write_commands, write_config
from test_commander_warm import warm_shells_of

from ruroco.commander.warm import SHELLS_PER_COMMAND

WAIT = 10.0


def reload(proc: CommanderProcess) -> str:
    """SIGHUP and the one line the reload logged."""
    before = proc.stdout.count("Reloaded ")
    proc.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: proc.stdout.count("Reloaded ") > before, WAIT), proc.stderr
    return [line for line in proc.stdout.splitlines() if "Reloaded " in line][-1]


def test_requests_release_warm_shells_and_they_are_replaced(
    start_commander: Callable[..., CommanderProcess], tmp_path: Path
) -> None:
    log = tmp_path / "ran"
    proc = start_commander({"a": f'printf "%s\\n" "$RUROCO_IP" >> {log}'})
    assert "warm shells: 1" in proc.stdout
    pid = proc.proc.pid
    assert wait_for(lambda: len(warm_shells_of(str(log), pid)) == SHELLS_PER_COMMAND, WAIT)
    first = set(warm_shells_of(str(log), pid))
    for i in range(3):
        proc.send("a", f"1.2.3.{i + 1}")
        assert wait_for(lambda n=i: log.exists() and len(log.read_text().split()) == n + 1, WAIT)
    assert log.read_text().split() == ["1.2.3.1", "1.2.3.2", "1.2.3.3"]
    assert wait_for(lambda: len(warm_shells_of(str(log), pid)) == SHELLS_PER_COMMAND, WAIT)
    assert not first & set(warm_shells_of(str(log), pid))  # three releases took both


def test_reload_ends_changed_and_removed_shells_unrun(
    start_commander: Callable[..., CommanderProcess], tmp_path: Path
) -> None:
    old, new, gone, kept = (tmp_path / n for n in ("old", "new", "gone", "kept"))
    proc = start_commander(
        {"a": f"touch {old}", "b": f"touch {gone}", "c": f"touch {kept}"},
        allow_non_routable_ips=True,
    )
    pid = proc.proc.pid
    assert wait_for(lambda: len(warm_shells_of(str(tmp_path), pid)) == 3 * SHELLS_PER_COMMAND, WAIT)
    ended = warm_shells_of(str(old), pid) + warm_shells_of(str(gone), pid)
    unchanged = set(warm_shells_of(str(kept), pid))
    write_commands(tmp_path, {"a": f"touch {new}", "c": f"touch {kept}"})
    line = reload(proc)
    assert "1 removed" in line and "1 changed" in line, line
    assert wait_for(lambda: not any(Path(f"/proc/{p}").exists() for p in ended), WAIT)
    assert wait_for(lambda: len(warm_shells_of(str(new), pid)) == SHELLS_PER_COMMAND, WAIT)
    assert set(warm_shells_of(str(kept), pid)) == unchanged
    assert not old.exists() and not gone.exists() and not new.exists() and not kept.exists()
    proc.send("a", "1.2.3.4")
    assert wait_for(new.exists, WAIT) and not old.exists()


def test_warm_shells_can_be_switched_off_and_on_by_a_reload(
    start_commander: Callable[..., CommanderProcess], tmp_path: Path
) -> None:
    ran = tmp_path / "ran"
    keys = {"config_dir": str(tmp_path), "socket_user": "", "socket_group": ""}
    proc = start_commander({"a": f"touch {ran}"}, warm_shells=False)
    assert "warm shells: 0" in proc.stdout
    pid = proc.proc.pid
    assert warm_shells_of(str(ran), pid) == []
    write_config(tmp_path, **keys, warm_shells=True)
    assert "settings changed: warm_shells" in reload(proc)
    assert wait_for(lambda: len(warm_shells_of(str(ran), pid)) == SHELLS_PER_COMMAND, WAIT)
    write_config(tmp_path, **keys, warm_shells=False)
    reload(proc)
    assert wait_for(lambda: warm_shells_of(str(ran), pid) == [], WAIT)
    assert not ran.exists()


def test_kill_9_of_the_commander_leaves_no_shell_and_runs_nothing(
    start_commander: Callable[..., CommanderProcess], tmp_path: Path
) -> None:
    marks = {name: tmp_path / name for name in ("a", "b", "c")}
    proc = start_commander({name: f"touch {path}" for name, path in marks.items()})
    pid = proc.proc.pid
    assert wait_for(lambda: len(warm_shells_of(str(tmp_path), pid)) == 3 * SHELLS_PER_COMMAND, WAIT)
    shells = warm_shells_of(str(tmp_path), pid)
    os.kill(pid, signal.SIGKILL)  # only the commander: the shells have sessions of their own
    proc.proc.wait(WAIT)
    assert wait_for(lambda: warm_shells_of(str(tmp_path)) == [], WAIT), shells
    assert not any(path.exists() for path in marks.values())


def test_stopping_ends_the_warm_shells(
    start_commander: Callable[..., CommanderProcess], tmp_path: Path
) -> None:
    ran = tmp_path / "ran"
    proc = start_commander({"a": f"touch {ran}"})
    pid = proc.proc.pid
    assert wait_for(lambda: len(warm_shells_of(str(ran), pid)) == SHELLS_PER_COMMAND, WAIT)
    shells = warm_shells_of(str(ran), pid)
    assert proc.stop() == 0
    assert not any(Path(f"/proc/{p}").exists() for p in shells)  # reaped before it exited
    assert not ran.exists()
