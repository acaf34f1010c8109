"""The settings of ``config.toml`` and of a ``commands.toml`` entry, by who reads them.

Both daemons read the one ``config.toml``, and each ignores the keys it does not know, as the
original does (the other daemon's keys are in the same file). A key that neither knows, a
typo such as ``max_request_per_second``, is then ignored twice and silently; ``--check`` of
either daemon names it, as a warning (docs/files.md). The sets are tested against what the
parsers really read.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from ruroco.errors import qpath

SERVER = frozenset(
    {
        "ips",
        "address",
        "config_dir",
        "blocklist_dir",
        "socket_dir",
        "max_requests_per_second",
        "max_requests_per_second_global",
        "max_clock_skew_seconds",
        "kernel_filter",
        "drop_report_seconds",
        "accept_protocol_0",
        "socket_user",
        "keys",  # the [keys.<stem>] tables
    }
)
COMMANDER = frozenset(
    {
        "config_dir",
        "socket_dir",
        "socket_user",
        "socket_group",
        "allow_non_routable_ips",
        "max_concurrent_commands",
        "pid_namespace",
        "warm_shells",
        "warm_shell_groups",
    }
)
# A ``[commands]`` entry written as a table (``name = { cmd = "...", timeout_sec = 5 }``).
COMMAND_ENTRY = frozenset({"cmd", "timeout_sec"})


def config_warnings(data: Mapping[str, object], path: str | os.PathLike[str]) -> list[str]:
    """One line per top-level key of ``config.toml`` that neither daemon reads."""
    return [
        f"{qpath(path)}: {key!r} is not a setting of ruroco-server or ruroco-commander and is "
        "ignored (a typo?)"
        for key in sorted(set(data) - SERVER - COMMANDER)
    ]


def command_warnings(data: Mapping[str, object], path: str | os.PathLike[str]) -> list[str]:
    """One line per key of a ``[commands]`` table entry that is not ``cmd`` or
    ``timeout_sec`` (``timeout = 5`` silently left the default of 30 s)."""
    commands = data.get("commands")
    if not isinstance(commands, Mapping):
        return []
    return [
        f"{qpath(path)}: entry {qpath(name)} has {key!r}, which is not a setting of a command "
        "(cmd, timeout_sec) and is ignored (a typo?)"
        for name, entry in commands.items()
        if isinstance(entry, Mapping)
        for key in sorted(set(entry) - COMMAND_ENTRY)
    ]
