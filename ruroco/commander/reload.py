"""What a commander reload (SIGHUP) applies, what waits for a restart, and the line that says
so (docs/files.md, "Reload on SIGHUP (commander)").

Pure: ``Commander.reload`` (``ruroco.commander.commander``) reads the files with the same trust
checks as at start, re-applies the grants' table and swaps; this module only compares the
running configuration with the new one and words the result.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping

from ruroco.commander.commands import CommandFile
from ruroco.commander.config import CommanderConfig
from ruroco.errors import qpath

#: Settings a running commander keeps until it restarts, and why: its socket (``socket_dir``,
#: or ``config_dir`` as its default; ``socket_user``/``socket_group``, its owner) is made once
#: and kept so that no request is lost during a reload; the worker pool that keeps each
#: command name's requests in order is sized at start (``max_concurrent_commands``); the
#: isolation mode was probed at start and running commands are killed by it
#: (``pid_namespace``).
RESTART_ONLY = (
    "socket_dir",
    "socket_user",
    "socket_group",
    "max_concurrent_commands",
    "pid_namespace",
    "warm_shell_groups",
)

#: Settings a reload applies from the next message on (``warm_shells``: the warm shells are
#: ended or spawned by the reload itself).
LIVE = ("allow_non_routable_ips", "warm_shells")

RELOADED = "Reloaded"
FAILED = "Reload failed, keeping the running configuration"


def needs_restart(running: CommanderConfig, new: CommanderConfig) -> tuple[str, ...]:
    """The restart-only settings whose effective value differs in ``new``.

    The socket directory counts as it is used (``socket_dir`` or its default ``config_dir``),
    named by the key the operator changed; ``config_dir`` means nothing else to the commander.
    """
    names: list[str] = []
    if running.socket_path() != new.socket_path():
        explicit = running.socket_dir is not None or new.socket_dir is not None
        names.append("socket_dir" if explicit else "config_dir")
    names += [n for n in RESTART_ONLY[1:] if getattr(running, n) != getattr(new, n)]
    return tuple(names)


def live_changes(running: CommanderConfig, new: CommanderConfig) -> tuple[str, ...]:
    return tuple(n for n in LIVE if getattr(running, n) != getattr(new, n))


def applied(running: CommanderConfig, new: CommanderConfig) -> CommanderConfig:
    """The configuration the commander runs on with: ``running`` with ``new``'s live settings."""
    return dataclasses.replace(running, **{n: getattr(new, n) for n in LIVE})


def restart_line(config_path: str | os.PathLike[str], names: Iterable[str]) -> str:
    """The one line naming the changed settings a reload could not apply."""
    return (
        f"Reload of {qpath(config_path)}: {', '.join(names)} changed but take effect only "
        "after a restart; running on with the values from start"
    )


def _diff(old: Mapping[str, object], new: Mapping[str, object]) -> str:
    """``1 added ("b"), 1 removed ("a"), 0 changed``, by name."""
    parts = []
    for word, names in (
        ("added", sorted(set(new) - set(old))),
        ("removed", sorted(set(old) - set(new))),
        ("changed", sorted(n for n in set(old) & set(new) if old[n] != new[n])),
    ):
        listed = f" ({', '.join(qpath(n) for n in names)})" if names else ""
        parts.append(f"{len(names)} {word}{listed}")
    return ", ".join(parts)


def summary(
    commands_path: str | os.PathLike[str],
    config_path: str | os.PathLike[str],
    old: CommandFile,
    new: CommandFile,
    kept: int | None,
    changed: Iterable[str],
    elapsed_s: float,
) -> str:
    """The one line a successful reload logs: commands and grants added, removed and changed
    (by name), the live grants the table kept (``kept``; None when no table was applied), the
    live settings that changed, and the time it took."""
    old_commands = {c.name: c for c in old.commands.values()}
    new_commands = {c.name: c for c in new.commands.values()}
    text = (
        f"{RELOADED} {qpath(commands_path)} and {qpath(config_path)}: "
        f"{len(new_commands)} command(s), {_diff(old_commands, new_commands)}; "
    )
    old_grants = {g.name: g for g in old.grants}
    new_grants = {g.name: g for g in new.grants}
    if old_grants or new_grants:
        text += f"{len(new_grants)} grant(s), {_diff(old_grants, new_grants)}"
        if kept is not None:
            text += f", {kept} live grant(s) kept"
        text += "; "
    else:
        text += "no grants; "
    settings = ", ".join(changed) or "none"
    return text + f"settings changed: {settings}; took {elapsed_s * 1000:.1f} ms"
