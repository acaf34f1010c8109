"""The server's view of ``config.toml`` (spec §3.2).

The same file also carries commander-only keys, so unknown keys are ignored. ``ips`` is the
one required key: without it the server would have to guess which destination addresses
are its own, and guessing wrong either accepts replays sent to other hosts or nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ruroco import trust
from ruroco.fs import resolve_path
from ruroco.ipaddr import parse_ip
from ruroco.ipc import SOCKET_NAME
from ruroco.tomlconfig import Table, read_toml

DEFAULT_CONFIG_PATH = Path("/etc/ruroco/config.toml")
DEFAULT_CONFIG_DIR = Path("/etc/ruroco")
BLOCKLIST_FILE = "blocklist.msgpck"
U32_MAX = (1 << 32) - 1
U64_MAX = (1 << 64) - 1
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
    path: Path | None = field(default=None, compare=False)

    def key_dir(self) -> Path:
        return resolve_path(self.config_dir)

    def blocklist_path(self) -> Path:
        return resolve_path(self.blocklist_dir or self.config_dir) / BLOCKLIST_FILE

    def socket_path(self) -> Path:
        return resolve_path(self.socket_dir or self.config_dir) / SOCKET_NAME


def load_config(path: str | os.PathLike[str]) -> ServerConfig:
    """Read and validate ``path``; errors name the file and key but never echo its content."""
    table = Table(read_toml(path, WHAT, trust.NO_OTHERS), path, WHAT)
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
        address=table.str("address"),
        config_dir=table.path_value("config_dir", DEFAULT_CONFIG_DIR) or DEFAULT_CONFIG_DIR,
        blocklist_dir=table.path_value("blocklist_dir"),
        socket_dir=table.path_value("socket_dir"),
        max_requests_per_second=table.int("max_requests_per_second", 2, maximum=U32_MAX),
        max_requests_per_second_global=table.int(
            "max_requests_per_second_global", 100, maximum=U32_MAX
        ),
        max_clock_skew_seconds=table.int("max_clock_skew_seconds", 3600, maximum=U64_MAX),
        kernel_filter=table.bool("kernel_filter", False),
        path=Path(path),
    )
