"""The server–commander contract that is not the 24-byte message: file names and limits.

Both daemons import these, so the socket name, the lock names and the path limit are
defined once.
"""

from __future__ import annotations

import os

from ruroco.errors import RurocoError, qpath

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
