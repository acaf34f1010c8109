"""Fixtures: a real ``ruroco-commander`` process on a temp dir (killed after the test), and an
``Executor`` in each isolation mode."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from commander_helpers import CommanderProcess, executor_for, write_commands, write_config

from ruroco.commander.executor import Executor


@pytest.fixture
def start_commander(tmp_path: Path) -> Iterator[Callable[..., CommanderProcess]]:
    """``start(commands, **config_keys)``: a ready commander on ``tmp_path``; killed at the end."""
    started: list[CommanderProcess] = []

    def start(
        commands: dict[str, str | tuple[str, int]],
        directory: Path | None = None,
        wait: bool = True,
        **config: object,
    ) -> CommanderProcess:
        directory = directory or tmp_path
        keys: dict[str, object] = {
            "config_dir": str(directory),
            "socket_user": "",
            "socket_group": "",
        }
        keys.update(config)
        proc = CommanderProcess(
            directory, write_config(directory, **keys), write_commands(directory, commands)
        )
        started.append(proc)
        if wait:
            proc.wait_ready()
        return proc

    yield start
    for proc in started:
        proc.kill()


MODES = [f"{m}{w}" for w in ("", "-warm") for m in ("pid-namespace", "process-group")]


@pytest.fixture(params=MODES)
def executor(request: pytest.FixtureRequest) -> Iterator[Executor]:
    """Both isolation modes, each spawning cold and releasing a warm shell (``WarmFirst``).
    The default is "pid-namespace" on this host (root, asserted by
    ``test_isolation_is_pid_namespace_for_root``); the fallback is forced."""
    yield from executor_for(request.param)
