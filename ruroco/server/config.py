"""The server's view of ``config.toml`` (keys and defaults: docs/files.md, config.toml).

The same file also carries commander-only keys, so unknown keys are ignored. ``ips`` is the
one required key: without it the server would have to guess which destination addresses
are its own, and guessing wrong either accepts replays sent to other hosts or nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruroco import trust
from ruroco.fs import daemon_path
from ruroco.ipaddr import parse_ip
from ruroco.ipc import DEFAULT_CONFIG_DIR as DEFAULT_CONFIG_DIR
from ruroco.ipc import DEFAULT_CONFIG_PATH as DEFAULT_CONFIG_PATH
from ruroco.ipc import SOCKET_NAME
from ruroco.limits import U32_MAX, U64_MAX
from ruroco.policy import KeyRules, Policy, bind, parse_rules
from ruroco.tomlconfig import Table, read_toml

BLOCKLIST_FILE = "blocklist.msgpck"
WHAT = "server config"


@dataclass(frozen=True)
class ServerConfig:
    """Parsed settings; ``ips`` are 16-byte wire forms, so mapped IPv4 is already collapsed."""

    ips: tuple[bytes, ...]
    address: str | None = None
    config_dir: Path = DEFAULT_CONFIG_DIR
    blocklist_dir: Path | None = None
    socket_dir: Path | None = None
    max_requests_per_second: int = 2
    max_requests_per_second_global: int = 100
    max_clock_skew_seconds: int = 3600
    # Not in the original (which ignores unknown keys): drop wrong-size and unknown-key
    # datagrams in the kernel, unlogged (see ruroco.server.kfilter).
    kernel_filter: bool = False
    # Not in the original either: every this many seconds, one line with the datagrams the
    # kernel dropped at the socket, if any (ruroco.server.drops); 0 = never.
    drop_report_seconds: int = 60
    # Not in the original either: also take the released ruroco 0.14.2's 93-byte AES-256-GCM
    # packets (docs/protocol.md, Protocol 0). Off by default: GCM loses its secrecy and
    # integrity under a repeated IV, where GCM-SIV only shows that two plaintexts were equal.
    accept_protocol_0: bool = False
    # The commander's key, read here too: the socket's owner is the server's own account,
    # which may own the server's directories and key files (ruroco.trust).
    socket_user: str = "ruroco"
    # Not in the original either: per-key rules from [keys.<stem>] (ruroco.policy), bound to
    # key ids once the key files are read.
    key_rules: tuple[KeyRules, ...] = ()
    path: Path | None = field(default=None, compare=False)

    def trusted(self) -> trust.Trust:
        """Who may own the key, blocklist and socket directories: root, us, ``socket_user``."""
        return trust.Trust.of_process(self.socket_user)

    def key_dir(self) -> Path:
        return daemon_path(self.config_dir)

    def checked_key_dir(self, trusted: trust.Trust) -> str | Path:
        """The key directory, resolved and checked: whoever could add a ``*.key`` there could
        knock. A missing one is left to the usual "Error reading directory" message."""
        key_dir = self.key_dir()
        return trusted.directory(key_dir, "config_dir") if os.path.lexists(key_dir) else key_dir

    def checked_socket_path(self, trusted: trust.Trust) -> Path:
        """The commander's socket; through a resolved and checked directory when it exists, so
        nobody who could re-point a link on the way receives the requests."""
        socket_path = self.socket_path()
        if not os.path.lexists(socket_path.parent):
            return socket_path  # the commander creates and checks it
        return Path(trusted.directory(socket_path.parent, "socket_dir")) / socket_path.name

    def policy(
        self,
        key_files: Iterable[str | os.PathLike[str]],
        key_ids: Mapping[str, bytes],
        key_dir: str | os.PathLike[str],
    ) -> Policy:
        """The ``[keys]`` rules bound to the key ids read from the key files; a table naming no
        key file is a config error (start and ``--check`` alike)."""
        where = self.path if self.path is not None else DEFAULT_CONFIG_PATH
        return bind(self.key_rules, key_files, key_ids, where, WHAT, key_dir)

    def blocklist_path(self) -> Path:
        return daemon_path(self.blocklist_dir or self.config_dir) / BLOCKLIST_FILE

    def socket_path(self) -> Path:
        return daemon_path(self.socket_dir or self.config_dir) / SOCKET_NAME


def load_config(path: str | os.PathLike[str]) -> ServerConfig:
    """Read and validate ``path``; errors name the file and key but never echo its content."""
    return parse_config(read_toml(path, WHAT, trust.ANY_OWNER), path)


def parse_config(data: dict[str, Any], path: str | os.PathLike[str]) -> ServerConfig:
    """Validate the content of ``path``, already read (``--check`` also looks at its keys)."""
    table = Table(data, path, WHAT)
    raw_ips = table.str_list("ips", required=True) or []
    ips: list[bytes] = []
    for index, text in enumerate(raw_ips):
        try:
            ips.append(parse_ip(text))
        except ValueError:
            raise table.fail(
                f"ips[{index}]", "is not a single IP address (no CIDR, brackets or zone)"
            ) from None
    return ServerConfig(
        ips=tuple(ips),
        address=table.text("address"),
        config_dir=table.path_value("config_dir", DEFAULT_CONFIG_DIR) or DEFAULT_CONFIG_DIR,
        blocklist_dir=table.path_value("blocklist_dir"),
        socket_dir=table.path_value("socket_dir"),
        max_requests_per_second=table.integer("max_requests_per_second", 2, maximum=U32_MAX),
        max_requests_per_second_global=table.integer(
            "max_requests_per_second_global", 100, maximum=U32_MAX
        ),
        max_clock_skew_seconds=table.integer("max_clock_skew_seconds", 3600, maximum=U64_MAX),
        kernel_filter=table.flag("kernel_filter", False),
        drop_report_seconds=table.integer("drop_report_seconds", 60, maximum=U32_MAX),
        accept_protocol_0=table.flag("accept_protocol_0", False),
        socket_user=(table.text("socket_user", "ruroco") or "").strip(),
        key_rules=parse_rules(data, path, WHAT),
        path=Path(path),
    )
