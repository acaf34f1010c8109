"""The commander's view of ``config.toml`` (keys and defaults: docs/files.md, config.toml).

The same file also feeds the server, so unknown keys are ignored and every key is optional;
only syntax and type errors fail. Errors name the file and key, never the content.

``max_concurrent_commands``, ``pid_namespace``, ``warm_shells`` and ``warm_shell_groups`` are
ours; the original ignores unknown keys, so a file carrying them stays valid for both
implementations.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruroco import trust
from ruroco.fs import daemon_path
from ruroco.ipc import DEFAULT_CONFIG_DIR as DEFAULT_CONFIG_DIR
from ruroco.ipc import DEFAULT_CONFIG_PATH as DEFAULT_CONFIG_PATH
from ruroco.ipc import SOCKET_NAME
from ruroco.tomlconfig import Table, read_toml

# Commands run concurrently (docs/deviations.md #3), bounded so a burst cannot fork-bomb
# the host.
DEFAULT_MAX_CONCURRENT_COMMANDS = 32
MAX_CONCURRENT_COMMANDS_LIMIT = 1024
WHAT = "commander config"


@dataclass(frozen=True)
class CommanderConfig:
    config_dir: Path = DEFAULT_CONFIG_DIR
    socket_dir: Path | None = None
    socket_user: str = "ruroco"
    socket_group: str = "ruroco"
    allow_non_routable_ips: bool = False
    max_concurrent_commands: int = DEFAULT_MAX_CONCURRENT_COMMANDS
    # Ours too: each command in its own PID namespace (docs/security.md, "Commands").
    pid_namespace: bool = True
    # Ours too: a warm shell per command, released at a request (docs/performance.md,
    # "Warm shells"; docs/deviations.md #24).
    warm_shells: bool = True
    # Ours too: each warm shell in an idle CPU group of its own until its release, where the
    # commander can make them (docs/performance.md, "An idle group per warm shell").
    warm_shell_groups: bool = True

    def socket_path(self) -> Path:
        """Resolved at use time, like the server does, so both sides agree on relative dirs."""
        return daemon_path(self.socket_dir or self.config_dir) / SOCKET_NAME


def parse_config(data: dict[str, Any], path: str | os.PathLike[str]) -> CommanderConfig:
    table = Table(data, path, WHAT)
    return CommanderConfig(
        config_dir=table.path_value("config_dir", DEFAULT_CONFIG_DIR),
        socket_dir=table.path_value("socket_dir"),
        socket_user=table.text("socket_user", "ruroco").strip(),
        socket_group=table.text("socket_group", "ruroco").strip(),
        allow_non_routable_ips=table.flag("allow_non_routable_ips", False),
        max_concurrent_commands=table.integer(
            "max_concurrent_commands",
            DEFAULT_MAX_CONCURRENT_COMMANDS,
            minimum=1,
            maximum=MAX_CONCURRENT_COMMANDS_LIMIT,
        ),
        pid_namespace=table.flag("pid_namespace", True),
        warm_shells=table.flag("warm_shells", True),
        warm_shell_groups=table.flag("warm_shell_groups", True),
    )


def load_config(path: str | os.PathLike[str]) -> CommanderConfig:
    """Only a file that root (or our own user) alone can change is read: it names the
    directory where root creates the socket (docs/security.md)."""
    return parse_config(read_toml(path, WHAT, trust.for_process()), path)
