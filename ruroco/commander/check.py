"""``--check``: validate config and commands files without touching anything.

Used by the Ansible role as ``validate:`` for each file before it is moved into place, so it
must work on one file alone (the other may not exist yet on a fresh host): only the files
named on the command line are checked, or both defaults when neither is named.
"""

from __future__ import annotations

import os
from pathlib import Path

from ruroco import trust
from ruroco.commander.commands import load_commands
from ruroco.commander.config import load_config
from ruroco.errors import RurocoError
from ruroco.fs import lookup_ids
from ruroco.ipc import check_socket_path


def check(config_path: Path | None, commands_path: Path | None) -> tuple[list[str], str]:
    """``(problems, summary)``; every problem is one line naming its file, never its content."""
    problems: list[str] = []
    done: list[str] = []
    if config_path is not None:
        try:
            config = load_config(config_path)
            lookup_ids(config.socket_user, config.socket_group)
            check_socket_dir(config.socket_path())
            done.append(f"config {config_path} ok")
        except RurocoError as exc:
            problems.append(_with_file(str(exc), config_path))
    if commands_path is not None:
        try:
            count = len(load_commands(commands_path))
            done.append(f"commands {commands_path} ok ({count} command{'s' * (count != 1)})")
        except RurocoError as exc:
            problems.append(_with_file(str(exc), commands_path))
    return problems, "; ".join(done)


def check_socket_dir(socket_path: Path) -> None:
    """What ``prepare_socket_dir`` would refuse, without creating anything."""
    check_socket_path(socket_path)
    directory = socket_path.parent
    trusted = trust.for_process()
    if os.path.lexists(directory):
        trusted.directory(directory, "socket_dir")
    else:
        trusted.nearest_existing(directory, "socket_dir")


def _with_file(message: str, path: Path) -> str:
    return message if str(path) in message else f"{path}: {message}"
