"""``commands.toml``: command name → shell command and timeout (docs/files.md, commands.toml).

A single bad entry fails the whole file, so an operator never runs with half a command set.
Messages name the file and the entry but never echo a command (docs/deviations.md #5): the command
set is root-only information and must not leak into logs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ruroco import trust
from ruroco.cmdhash import command_hash
from ruroco.errors import qpath
from ruroco.tomlconfig import ConfigError, read_toml

DEFAULT_COMMANDS_PATH = "/etc/ruroco/commands.toml"
DEFAULT_TIMEOUT_SEC = 30
WHAT = "commands file"


@dataclass(frozen=True)
class Command:
    name: str
    cmd: str
    timeout_sec: int = DEFAULT_TIMEOUT_SEC


def _fail(path: str | os.PathLike[str], problem: str) -> ConfigError:
    return ConfigError(f"Could not parse {WHAT} {qpath(path)}: {problem}")


def _no_nul(cmd: str, where: str, path: str | os.PathLike[str]) -> None:
    """``sh -c`` cannot take a NUL: refuse at load (and ``--check``), not at the first knock."""
    if "\0" in cmd:
        raise _fail(path, f"{where} has a command containing a NUL character")


def _entry(name: str, value: Any, path: str | os.PathLike[str]) -> Command:
    where = f"entry {qpath(name)}"
    if isinstance(value, str):
        _no_nul(value, where, path)
        return Command(name, value)
    if not isinstance(value, dict):
        raise _fail(path, f"{where} must be a string or a table with `cmd`")
    cmd = value.get("cmd")
    if not isinstance(cmd, str):
        raise _fail(path, f"{where} needs a string `cmd`")
    _no_nul(cmd, where, path)
    timeout = value.get("timeout_sec", DEFAULT_TIMEOUT_SEC)
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 0:
        raise _fail(path, f"{where} has a `timeout_sec` that is not a non-negative integer")
    return Command(name, cmd, timeout)


def parse_commands(data: dict[str, Any], path: str | os.PathLike[str]) -> dict[int, Command]:
    """The lookup table ``command_hash(name) → Command``; extra keys in entries are ignored."""
    table = data.get("commands")
    if table is None:
        raise _fail(path, "missing [commands] table")
    if not isinstance(table, dict):
        raise _fail(path, "`commands` must be a table")
    return {command_hash(name): _entry(name, value, path) for name, value in table.items()}


def load_commands(path: str | os.PathLike[str]) -> dict[int, Command]:
    """Commands run as root, so the file must be one only root can change (docs/security.md)."""
    return parse_commands(read_toml(path, WHAT, trust.for_process()), path)
