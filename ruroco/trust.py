"""Decide whether a file or directory may be trusted before a daemon acts on it.

Two rules, for the two daemons (see docs/security.md, "Files the daemons trust"):

* ``STRICT`` (the root commander): the object and every directory above it belong to root
  (or to the user the process runs as) and nobody else can write them; above the object a
  sticky directory such as ``/tmp`` is fine, because others cannot rename what root owns in
  it. ``commands.toml`` runs as root, and the socket directory is where root creates files,
  so anything less would let another local user plant links or swap the file.
* ``NO_OTHERS`` (the unprivileged server): nothing on the path is writable by every user.
  The server's own files legitimately belong to its account, and ``--check`` runs as root
  during deployment, so ownership is not part of this rule.

Paths are resolved once (``os.path.realpath``); callers then use the returned path, so a
symlink on the configured path that is later re-pointed changes nothing. Files are checked
on the descriptor that is then read (``read_file``), so the checked file is the read file.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass

from ruroco.errors import RurocoError, qpath


class TrustError(RurocoError):
    """A file or directory that someone other than the trusted owners could change."""


@dataclass(frozen=True)
class Rule:
    name: str
    check_owner: bool  # owner must be root or the current user
    forbidden_bits: int  # write bits that must be clear on the object itself


STRICT = Rule("strict", check_owner=True, forbidden_bits=stat.S_IWGRP | stat.S_IWOTH)
NO_OTHERS = Rule("no-others", check_owner=False, forbidden_bits=stat.S_IWOTH)


def _owners() -> tuple[int, ...]:
    return (0, os.geteuid())


def _problem(st: os.stat_result, rule: Rule, ancestor: bool) -> str | None:
    """What is wrong with one object's owner and mode under ``rule``, or None."""
    if rule.check_owner and st.st_uid not in _owners():
        return f"is owned by uid {st.st_uid}, not by root"
    writable = st.st_mode & rule.forbidden_bits
    if ancestor and stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX:
        writable = 0  # others may add entries, but cannot rename or remove ours
    if writable:
        who = (
            "group and others"
            if writable == stat.S_IWGRP | stat.S_IWOTH
            else ("others" if writable & stat.S_IWOTH else "its group")
        )
        return f"is writable by {who} (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def _check_ancestors(real: str, rule: Rule, what: str, shown: str) -> None:
    """Every directory from ``/`` down to the parent of ``real`` (an absolute real path)."""
    dirs = ["/"]
    for part in real.split("/")[1:-1]:
        dirs.append(os.path.join(dirs[-1], part))
    for current in dirs:
        st = os.lstat(current)  # OSError (e.g. missing) is the caller's to report
        problem = _problem(st, rule, ancestor=True)
        if problem:
            raise TrustError(
                f"Refusing {what} {qpath(shown)}: directory {qpath(current)} {problem}"
            )


def trusted_dir(path: str | os.PathLike[str], rule: Rule, what: str) -> str:
    """The real path of directory ``path`` after checking it and its ancestors."""
    shown = os.fspath(path)
    real = os.path.realpath(shown)
    try:
        _check_ancestors(real, rule, what, shown)
        st = os.lstat(real)
    except OSError as exc:
        raise TrustError(
            f"Refusing {what} {qpath(shown)}: {exc.strerror} (os error {exc.errno})"
        ) from None
    if not stat.S_ISDIR(st.st_mode):
        raise TrustError(f"Refusing {what} {qpath(shown)}: not a directory")
    problem = _problem(st, rule, ancestor=False)
    if problem:
        where = "" if real == shown else f" (resolved to {qpath(real)})"
        raise TrustError(f"Refusing {what} {qpath(shown)}{where}: it {problem}")
    return real


def check_file_stat(st: os.stat_result, rule: Rule, what: str, shown: str) -> None:
    """Refuse a non-regular file or one whose owner/mode break ``rule``."""
    if not stat.S_ISREG(st.st_mode):
        raise TrustError(f"Refusing {what} {qpath(shown)}: not a regular file")
    problem = _problem(st, rule, ancestor=False)
    if problem:
        raise TrustError(f"Refusing {what} {qpath(shown)}: it {problem}")


def read_file(path: str | os.PathLike[str], rule: Rule, what: str) -> bytes:
    """Read ``path`` after checking its directories and, on the open descriptor, the file.

    Symlinks on the path are resolved first and the target is what gets checked and read,
    so a link to a file someone else controls is refused like the file itself. Errors that
    are not about trust (missing file, permission) raise ``OSError`` for the caller's message.
    """
    shown = os.fspath(path)
    real = os.path.realpath(shown)
    _check_ancestors(real, rule, what, shown)
    # O_NONBLOCK: a FIFO planted under the name must not hang the daemon before fstat.
    fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):  # reported like any unreadable file
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), shown)
        check_file_stat(st, rule, what, shown)
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)
