"""``--check``: validate config and commands files without touching anything.

Used by the Ansible role as ``validate:`` for each file before it is moved into place, so it
must work on one file alone (the other may not exist yet on a fresh host): only the files
named on the command line are checked, or both defaults when neither is named.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ruroco import trust
from ruroco.cmdhash import command_hash
from ruroco.commander import tablelock
from ruroco.commander.commands import WHAT as COMMANDS_WHAT
from ruroco.commander.commands import parse_command_file
from ruroco.commander.config import WHAT, parse_config
from ruroco.commander.nft import check_usable
from ruroco.commander.warm import SHELLS_PER_COMMAND, cap
from ruroco.configkeys import command_warnings, config_warnings
from ruroco.errors import RurocoError, qpath
from ruroco.fs import lookup_ids, unreachable_for
from ruroco.ipc import check_socket_path
from ruroco.policy import parse_rules
from ruroco.tomlconfig import read_toml


def check(config_path: Path | None, commands_path: Path | None) -> tuple[list[str], str, list[str]]:
    """``(problems, summary, warnings)``; every problem is one line naming its file, never its
    content; warnings deserve a look but are not refused (start runs with them)."""
    problems: list[str] = []
    warnings: list[str] = []
    done: list[str] = []
    warm: bool | None = None  # the config's warm_shells, once the config passed
    config_data: dict[str, Any] | None = None  # each file is read once, as start reads it
    socket_dir: str | None = None  # the config's, when it exists
    if config_path is not None:
        try:
            config_data = read_toml(config_path, WHAT, trust.for_process())
            config = parse_config(config_data, config_path)
            lookup_ids(config.socket_user, config.socket_group)
            directory = check_socket_dir(config.socket_path())
            socket_dir = directory
            warm = config.warm_shells
            warning = socket_user_warning(directory, config.socket_user) if directory else None
            warnings += [_with_file(warning, config_path)] if warning else []
            warnings += config_warnings(config_data, config_path)
        except RurocoError as exc:
            problems.append(_with_file(str(exc), config_path))
    commands = None
    count = None
    if commands_path is not None:
        try:
            commands_data = read_toml(commands_path, COMMANDS_WHAT, trust.for_process())
            loaded = parse_command_file(commands_data, commands_path)
            warnings += command_warnings(commands_data, commands_path)
            check_usable(loaded.grants)  # grants: nft and the kernel take their table
            busy = tablelock.check_warning(bool(loaded.grants), socket_dir)
            warnings += [_with_file(busy, commands_path)] if busy else []
            commands = loaded.known()
            count = len(loaded.commands)
            done.append(f"commands {commands_path} ok ({loaded.summary()})")
        except RurocoError as exc:
            problems.append(_with_file(str(exc), commands_path))
    if warm is not None:
        done.insert(0, f"config {config_path} ok ({warm_summary(warm, count)})")
    if config_path and config_data is not None and commands is not None and not problems:
        problems += ungranted(config_data, config_path, commands_path, set(commands))
    return problems, "; ".join(done), warnings


def warm_summary(enabled: bool, commands: int | None = None) -> str:
    """``warm shells: on`` / ``off``; with the command count, for how many of them (the
    first ``warm.cap`` of commands.toml; docs/performance.md, "Warm shells")."""
    if not enabled:
        return "warm shells: off"
    if commands is None:
        return "warm shells: on"
    limit = cap(SHELLS_PER_COMMAND)
    if commands <= limit:
        return f"warm shells: on, for all {commands} command(s)"
    return f"warm shells: on, for the first {limit} of {commands} commands"


def ungranted(
    config_data: dict[str, Any], config_path: Path, commands_path: Path | None, known: set[int]
) -> list[str]:
    """Names a ``[keys.<stem>]`` table grants that ``commands.toml`` does not define: such a
    grant can never run (most likely a typo). The server's own ``--check`` reports a broken
    ``[keys]`` table; here it is only read (docs/files.md, ``[keys.<stem>]``)."""
    try:
        rules = parse_rules(config_data, config_path, WHAT)
    except RurocoError:
        return []
    return [
        f"{config_path}: {rule.name}.commands grants {qpath(name)}, which {commands_path} "
        "does not define"
        for rule in rules
        for name in rule.commands or ()
        if command_hash(name) not in known
    ]


def check_socket_dir(socket_path: Path) -> str | None:
    """What ``prepare_socket_dir`` would refuse, without creating anything; the directory's
    real path if it exists."""
    check_socket_path(socket_path)
    directory = socket_path.parent
    trusted = trust.for_process()
    if os.path.lexists(directory):
        return trusted.directory(directory, "socket_dir")
    trusted.nearest_existing(directory, "socket_dir")
    return None


def socket_user_warning(directory: str, user: str) -> str | None:
    """Why ``socket_user`` could not reach the socket in ``directory``, or None. Not a
    refusal: an ACL or a capability the mode bits do not show may still let it through; but
    otherwise the commander would run and the server drop every request it hands over with
    "Permission denied" (found trying the docs as a new operator)."""
    blocked = unreachable_for(directory, user)
    if blocked is None:
        return None
    return (
        f"socket_user {qpath(user.strip())} cannot reach socket_dir {qpath(directory)}: "
        f"{blocked} does not let it through, so the server could hand over no request"
    )


def _with_file(message: str, path: Path) -> str:
    return message if str(path) in message else f"{path}: {message}"
