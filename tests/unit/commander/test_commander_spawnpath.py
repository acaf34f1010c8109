"""``sh`` is looked up on PATH once, as ``posix_spawnp`` would (docs/performance.md)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ruroco.commander.commands import Command
from ruroco.commander.executor import Executor, Status, _find_sh
from ruroco.ipaddr import parse_ip


def _fake_sh(directory: Path, executable: bool = True) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    sh = directory / "sh"
    sh.write_text("#!/bin/false\n")
    sh.chmod(0o755 if executable else 0o644)
    return sh


def test_first_executable_sh_on_path_wins(tmp_path: Path) -> None:
    _fake_sh(tmp_path / "a", executable=False)
    b = _fake_sh(tmp_path / "b")
    _fake_sh(tmp_path / "c")
    path = os.pathsep.join(str(tmp_path / d) for d in ("missing", "a", "b", "c"))
    assert _find_sh(path) == str(b)


@pytest.mark.parametrize("first", ["", ".", "bin"])
def test_a_relative_directory_first_leaves_the_search_to_each_spawn(first: str) -> None:
    assert _find_sh(os.pathsep.join([first, "/usr/bin", "/bin"])) is None


def test_no_sh_anywhere(tmp_path: Path) -> None:
    assert _find_sh(str(tmp_path)) is None


def test_commands_run_with_the_sh_found_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    executor = Executor()
    assert executor._sh is not None and os.path.isabs(executor._sh)
    monkeypatch.setenv("PATH", str(tmp_path))  # later changes do not move the shell
    outcome = executor.run(Command("t", "printf %s ok", 5), parse_ip("1.2.3.4"))
    assert (outcome.status, outcome.stdout) == (Status.SUCCESS, "ok")
