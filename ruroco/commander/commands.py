"""``commands.toml``: command name → shell command and timeout (docs/files.md, commands.toml),
and the ``[grants]`` beside them (docs/grants.md), whose ``open_NAME``/``close_NAME`` share the
command names' hash space.

A single bad entry fails the whole file, so an operator never runs with half a command set.
Messages name the file and the entry but never echo a command (docs/deviations.md #5): the command
set is root-only information and must not leak into logs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from ruroco import trust
from ruroco.cmdhash import command_hash
from ruroco.commander.grants import Grant, GrantAction, actions_of, parse_grants
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


@dataclass(frozen=True)
class CommandFile:
    """Everything ``commands.toml`` defines, each indexed by the hash a client sends."""

    commands: dict[int, Command]
    grants: tuple[Grant, ...] = ()
    actions: dict[int, GrantAction] = field(default_factory=dict)

    def known(self) -> set[int]:
        """Every hash a client may send: commands, ``open_NAME`` and ``close_NAME``."""
        return set(self.commands) | set(self.actions)

    def summary(self) -> str:
        count = len(self.commands)
        text = f"{count} command{'s' * (count != 1)}"
        if self.grants:
            text += f", {len(self.grants)} grant{'s' * (len(self.grants) != 1)}"
        return text


def parse_commands(data: dict[str, Any], path: str | os.PathLike[str]) -> dict[int, Command]:
    """The lookup table ``command_hash(name) → Command``; extra keys in entries are ignored."""
    return parse_command_file(data, path).commands


def parse_command_file(data: dict[str, Any], path: str | os.PathLike[str]) -> CommandFile:
    """``[commands]`` and ``[grants]``; a file may have either or both (not neither).

    A grant's ``open_NAME``/``close_NAME`` that a ``[commands]`` entry also defines (or that
    hashes like one) is an error: which of the two a knock runs must never be a guess.
    """
    table = data.get("commands")
    grants_table = data.get("grants")
    if table is None and grants_table is None:
        raise _fail(path, "missing [commands] table")
    if table is None:
        table = {}
    if not isinstance(table, dict):
        raise _fail(path, "`commands` must be a table")
    commands = {command_hash(name): _entry(name, value, path) for name, value in table.items()}
    try:
        grants = parse_grants(grants_table)
    except ValueError as exc:
        raise _fail(path, str(exc)) from None
    actions: dict[int, GrantAction] = {}
    for name, action in actions_of(grants).items():
        digest = command_hash(name)
        clash = commands.get(digest)
        if clash is not None:
            raise _fail(
                path,
                f"grant {qpath(action.grant.name)} defines {qpath(name)}, which clashes with "
                f"the [commands] entry {qpath(clash.name)}",
            )
        actions[digest] = action
    return CommandFile(commands, grants, actions)


def load_command_file(path: str | os.PathLike[str]) -> CommandFile:
    """Commands run as root, so the file must be one only root can change (docs/security.md)."""
    return parse_command_file(read_toml(path, WHAT, trust.for_process()), path)


def load_commands(path: str | os.PathLike[str]) -> dict[int, Command]:
    """The ``[commands]`` alone, after the whole file (grants included) was validated."""
    return load_command_file(path).commands
