"""One commander per network namespace manages ``inet ruroco`` (docs/grants.md, "One commander
per network namespace").

Every commander names its table ``inet ruroco``, and nftables keeps no owner for a table
beyond the nft process that made it. Two commanders in one namespace would therefore undo
each other: one without grants removes the table at start, two with different grants each
put their own back after every change of the other's, and the guarded ports are open in
between. So a commander that manages the table holds an exclusive ``flock`` on a file named
after its network namespace (the inode of ``/proc/self/ns/net``) in ``/run/ruroco``, root's
directory, checked like ``socket_dir`` (``ruroco.trust``), so no other user can plant or hold
it. The kernel drops the lock when the commander ends, ``kill -9`` included.
"""

from __future__ import annotations

import os

from ruroco import trust
from ruroco.errors import RurocoError, qpath
from ruroco.ipc import COMMANDER_LOCK_NAME
from ruroco.lock import InstanceLock, LockHeld, is_held

LOCK_DIR = "/run/ruroco"
WHAT = "the grants' lock directory"


class TableBusy(RurocoError):
    """Another running commander manages ``inet ruroco`` in this network namespace."""


def lock_path(directory: str = LOCK_DIR) -> str:
    """``grants-netns-<inode>.lock``: one name per network namespace. Without ``/proc``, one
    name for all of them (stricter, never looser)."""
    try:
        name = f"grants-netns-{os.stat('/proc/self/ns/net').st_ino}.lock"
    except OSError:
        name = "grants.lock"
    return os.path.join(directory, name)


def _lock(directory: str) -> InstanceLock:
    trust.for_process().make_directory(directory, WHAT)
    return InstanceLock(lock_path(directory), "table lock")


def claim(holder: str, directory: str = LOCK_DIR) -> InstanceLock:
    """The held lock for this namespace's table, with ``holder`` (the commander's socket_dir)
    written in it for ``--check``; ``TableBusy`` if another commander has it."""
    lock = _lock(directory)
    try:
        lock.acquire()
    except LockHeld:
        raise TableBusy(busy_text(lock.path)) from None
    lock.note(holder)
    return lock


def held_elsewhere(directory: str = LOCK_DIR) -> bool:
    """Whether a commander manages the table now (creates nothing)."""
    return is_held(lock_path(directory))


def check_warning(
    has_grants: bool, socket_dir: str | None, directory: str = LOCK_DIR
) -> str | None:
    """For ``--check``, which creates nothing: whether a commander other than the checked
    configuration's own (the one whose ``socket_dir`` the lock names, running) manages the
    table. A warning, not a refusal: a deploy that restarts the running commander (a new
    ``socket_dir``, say) would start fine, which the check cannot know."""
    path = lock_path(directory)
    if not has_grants or not is_held(path):
        return None
    holder = _holder(path)
    own = socket_dir is not None and holder == socket_dir
    if own and is_held(os.path.join(holder, COMMANDER_LOCK_NAME)):
        return None
    return (
        f"{busy_text(path)}: while it runs (socket_dir {qpath(holder or '?')}), start fails"
        " and so does a reload that brings this commander grants"
    )


def _holder(path: str) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return ""
    try:
        return os.read(fd, 4096).decode("utf-8", "replace")
    except OSError:
        return ""
    finally:
        os.close(fd)


def busy_text(path: str) -> str:
    return (
        "another ruroco-commander manages table inet ruroco in this network namespace"
        f" (it holds {path}); one commander per namespace can keep grants"
    )
