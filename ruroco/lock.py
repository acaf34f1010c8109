"""Single-instance lock on a file with flock(2); which files: docs/files.md, Locks.

The kernel drops the lock when the holder dies, so there is no stale-lock handling; the file
is never deleted and its content means nothing to the lock (the grants' table lock
writes its holder there for ``--check`` to read). It is opened with ``O_NOFOLLOW``: a daemon
must never create or lock whatever a planted symlink points at (docs/security.md).
``timeout`` lets library callers (the Ansible action plugin running many forks) wait for
their turn instead of failing.
"""

from __future__ import annotations

import fcntl
import os
import stat
import time

from ruroco.errors import RurocoError, qpath


class LockHeld(RurocoError):
    """Another process holds the lock (not: the lock file could not be opened)."""


class InstanceLock:
    def __init__(self, path: str | os.PathLike[str], what: str) -> None:
        self.path = os.fspath(path)
        self.what = what
        self._fd: int | None = None

    def acquire(self, timeout: float | None = None) -> InstanceLock:
        """Take the lock; fail at once (``timeout=None``) or after waiting ``timeout`` s."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
        try:
            fd = os.open(self.path, flags, 0o600)
        except OSError as exc:
            raise RurocoError(f"Lock file unavailable at {qpath(self.path)}") from exc
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise RurocoError(f"Lock file unavailable at {qpath(self.path)}: not a regular file")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError as exc:
                if deadline is None or time.monotonic() >= deadline:
                    os.close(fd)
                    raise LockHeld(
                        f"{self.what} already running (lock at {qpath(self.path)}): "
                        f"{exc.strerror or exc}"
                    ) from None
                time.sleep(0.005)
            except OSError as exc:
                os.close(fd)
                raise RurocoError(f"Lock file unavailable at {qpath(self.path)}") from exc
        self._fd = fd
        return self

    def note(self, text: str) -> None:
        """Replace the held lock file's content with ``text`` (who holds it, for others to
        read); best effort, the lock is what counts."""
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, text.encode("utf-8", "surrogateescape"), 0)
        except OSError:
            pass

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> InstanceLock:
        if self._fd is None:
            self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def is_held(path: str | os.PathLike[str]) -> bool:
    """Whether a process holds the lock at ``path`` now; for ``--check``, which creates
    nothing: a missing or unopenable file counts as not held (start will say more)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # also drops the shared lock just taken
    return False
