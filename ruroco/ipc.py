"""The server–commander contract: the 24-byte message, file names and limits.

Both daemons import these, so the message format, the default config paths, the socket
name, the lock names and the path limit are defined once. Commander message (24 bytes):
cmd_hash u64 BE ‖ ip(16) (docs/protocol.md, Commander message; the files: docs/files.md).
No cryptography here: the commander never loads it.
"""

from __future__ import annotations

import os
from pathlib import Path

from ruroco.errors import ProtocolError, RurocoError, qpath

COMMANDER_DATA_SIZE = 24

# Both daemons read one config.toml; its default place, and the default config_dir.
DEFAULT_CONFIG_DIR = Path("/etc/ruroco")
DEFAULT_CONFIG_PATH = DEFAULT_CONFIG_DIR / "config.toml"

SOCKET_NAME = "ruroco.socket"
COMMANDER_LOCK_NAME = "commander.lock"
# In blocklist_dir: held by a server for its lifetime, so two servers never share a floor.
SERVER_LOCK_NAME = "server.lock"
# sun_path holds 108 bytes including the terminating NUL.
MAX_SOCKET_PATH = 107


def check_socket_path(socket_path: str | os.PathLike[str]) -> None:
    """Refuse a socket path the kernel cannot bind or connect to (found without a socket)."""
    size = len(os.fsencode(socket_path))
    if size > MAX_SOCKET_PATH:
        raise RurocoError(
            f"Socket path {qpath(socket_path)} is {size} bytes long; "
            f"Unix sockets allow at most {MAX_SOCKET_PATH}"
        )


def encode_commander_data(cmd_hash: int, ip: bytes) -> bytes:
    if len(ip) != 16:
        raise ProtocolError("IP addresses must be 16 bytes")
    return cmd_hash.to_bytes(8, "big") + ip


def decode_commander_data(data: bytes) -> tuple[int, bytes]:
    """``(cmd_hash, ip16)``; exactly 24 bytes."""
    if len(data) != COMMANDER_DATA_SIZE:
        raise ProtocolError(
            f"Commander message must be {COMMANDER_DATA_SIZE} bytes, got {len(data)}"
        )
    return int.from_bytes(data[:8], "big"), bytes(data[8:])
