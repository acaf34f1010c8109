"""Hand an accepted request to the commander over its Unix stream socket (spec §3.11).

The server is single-threaded, so a commander that stopped accepting (full listen backlog)
must not stall it: connect and write share one deadline (decided deviation 4). On Linux a
non-blocking connect to a Unix socket with a full backlog fails with EAGAIN instead of
waiting, so the connect is retried until the deadline in short steps.
"""

from __future__ import annotations

import errno
import os
import socket
import time

from ruroco.errors import RurocoError, qpath

DEFAULT_TIMEOUT = 1.0
_RETRY_STEP = 0.01


class ForwardError(RurocoError):
    """The 24-byte message did not reach the commander."""


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, TimeoutError) and not exc.errno:
        return "timed out"
    return f"{exc.strerror} (os error {exc.errno})" if exc.strerror else str(exc)


def send_to_commander(
    path: str | os.PathLike[str], message: bytes, timeout: float = DEFAULT_TIMEOUT
) -> None:
    """Connect, write ``message``, close; raise ``ForwardError`` within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    target = os.fspath(path)
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    except OSError as exc:
        raise ForwardError(
            f"Could not connect to socket {qpath(target)}: {_os_reason(exc)}"
        ) from None
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ForwardError(f"Could not connect to socket {qpath(target)}: timed out")
            sock.settimeout(remaining)
            try:
                sock.connect(target)
                break
            except OSError as exc:
                if exc.errno == errno.EAGAIN and deadline - time.monotonic() > 0:
                    time.sleep(min(_RETRY_STEP, max(0.0, deadline - time.monotonic())))
                    continue
                raise ForwardError(
                    f"Could not connect to socket {qpath(target)}: {_os_reason(exc)}"
                ) from None
        try:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("timed out")
            sock.settimeout(remaining)
            sock.sendall(message)
        except OSError as exc:
            raise ForwardError(
                f"Could not send data to commander via socket {qpath(target)}: {_os_reason(exc)}"
            ) from None
    finally:
        sock.close()
