"""Decide whether a file or directory may be trusted before a daemon relies on it.

One rule (docs/security.md, "Files and directories the daemons trust"): what a daemon relies
on, and every directory on the way to it, belongs to a trusted owner and is writable by
nobody else. A directory on the way may be writable by others if its sticky bit is set (as
on ``/tmp``): others can add entries there but cannot rename or remove ours. A symlink met on
the way is followed only if nobody untrusted could have planted or changed it, i.e. if the
directory holding it is not writable by others or the link itself has a trusted owner (the
kernel's ``protected_symlinks`` idea, applied here because resolving a path ourselves
bypasses it).

The path is resolved component by component from ``/`` once; callers then use the returned
real path, so re-pointing a link later changes nothing. A file is checked on the descriptor
that is then read (``read_file``), so the checked file is the file read.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import deque
from dataclasses import dataclass

from ruroco.errors import RurocoError, os_reason, qpath

_MAX_LINKS = 40  # as the kernel's MAXSYMLINKS


class TrustError(RurocoError):
    """A file or directory that someone other than the trusted owners could change."""


@dataclass(frozen=True)
class Trust:
    """Who may own what we rely on; ``owners=None`` accepts any owner (write bits still count)."""

    owners: frozenset[int] | None

    @classmethod
    def of_process(cls, *users: str) -> Trust:
        """Root, the user we run as, and ``users`` (names that do not exist are skipped)."""
        import pwd

        owners = {0, os.geteuid()}
        for name in users:
            try:
                owners.add(pwd.getpwnam(name.strip()).pw_uid)
            except (KeyError, ValueError):
                continue
        return cls(frozenset(owners))

    def problem(self, st: os.stat_result, on_the_way: bool) -> str | None:
        """What is wrong with one object's owner and mode, or None."""
        if self.owners is not None and st.st_uid not in self.owners:
            return f"is owned by uid {st.st_uid}, not by root or this service"
        writable = st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        if on_the_way and stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX:
            writable = 0
        if not writable:
            return None
        who = {stat.S_IWGRP: "its group", stat.S_IWOTH: "others"}.get(writable, "group and others")
        return f"is writable by {who} (mode {stat.S_IMODE(st.st_mode):04o})"

    def resolve(self, path: str | os.PathLike[str], what: str) -> tuple[str, os.stat_result]:
        """The real path of ``path`` and its ``lstat``, every step on the way checked.

        ``OSError`` (e.g. a missing component) is left to the caller's message.
        """
        shown = os.fspath(path)
        pending = deque(_parts(os.path.abspath(shown)))
        current = "/"
        current_st = os.lstat(current)
        self._on_the_way(current, current_st, what, shown)
        links = 0
        while pending:
            name = pending.popleft()
            if name == "..":
                current = os.path.dirname(current)  # checked when we came down through it
                current_st = os.lstat(current)
                continue
            candidate = os.path.join(current, name)
            st = os.lstat(candidate)
            if stat.S_ISLNK(st.st_mode):
                links += 1
                if links > _MAX_LINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), shown)
                open_dir = current_st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
                if open_dir and self.owners is not None and st.st_uid not in self.owners:
                    raise TrustError(
                        f"Refusing {what} {qpath(shown)}: link {qpath(candidate)} is owned by "
                        f"uid {st.st_uid} in a directory others can write"
                    )
                target = os.readlink(candidate)
                if target.startswith("/"):
                    current, current_st = "/", os.lstat("/")
                pending.extendleft(reversed(_parts(target)))
                continue
            if not pending:
                return candidate, st
            if not stat.S_ISDIR(st.st_mode):
                raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), candidate)
            self._on_the_way(candidate, st, what, shown)
            current, current_st = candidate, st
        return current, current_st  # the path named "/" itself

    def _on_the_way(self, directory: str, st: os.stat_result, what: str, shown: str) -> None:
        problem = self.problem(st, on_the_way=True)
        if problem:
            raise TrustError(
                f"Refusing {what} {qpath(shown)}: directory {qpath(directory)} {problem}"
            )

    def _resolve_or_refuse(self, path: str, what: str, shown: str) -> tuple[str, os.stat_result]:
        try:
            return self.resolve(path, what)
        except OSError as exc:
            raise TrustError(f"Refusing {what} {qpath(shown)}: {os_reason(exc)}") from None

    def directory(self, path: str | os.PathLike[str], what: str) -> str:
        """The real path of directory ``path``, or ``TrustError`` saying what is wrong."""
        shown = os.fspath(path)
        real, st = self._resolve_or_refuse(shown, what, shown)
        if not stat.S_ISDIR(st.st_mode):
            raise TrustError(f"Refusing {what} {qpath(shown)}: not a directory")
        problem = self.problem(st, on_the_way=False)
        if problem:
            where = "" if real == shown else f" (resolved to {qpath(real)})"
            raise TrustError(f"Refusing {what} {qpath(shown)}{where}: it {problem}")
        return real

    def nearest_existing(self, path: str | os.PathLike[str], what: str) -> tuple[str, list[str]]:
        """Check what already exists of a directory path that is still to be created: the real
        path of that part, and the names still to be created below it, in order (for
        ``ruroco.fs.make_dirs_beneath``, which never follows a link planted meanwhile)."""
        shown = os.fspath(path)
        existing = os.path.abspath(shown)
        missing: list[str] = []
        while not os.path.lexists(existing) and existing != "/":
            existing, name = os.path.split(existing)
            missing.insert(0, name)
        real, st = self._resolve_or_refuse(existing, what, shown)
        if not stat.S_ISDIR(st.st_mode):
            raise TrustError(f"Refusing {what} {qpath(shown)}: {qpath(real)} is not a directory")
        self._on_the_way(real, st, what, shown)
        return real, missing

    def make_directory(self, path: str | os.PathLike[str], what: str) -> str:
        """Create directory ``path`` (0755, with its missing parents) beneath the part that
        exists and is trusted, never following a link planted meanwhile
        (``ruroco.fs.make_dirs_beneath``); its real path once it is trusted."""
        from ruroco.fs import make_dirs_beneath

        existing, missing = self.nearest_existing(path, what)  # checked before root creates
        try:
            make_dirs_beneath(existing, missing, 0o755)
        except OSError as exc:
            raise RurocoError(f"Could not create parents for {qpath(os.fspath(path))}") from exc
        return self.directory(path, what)

    def check_file(self, st: os.stat_result, what: str, shown: str) -> None:
        """Refuse a non-regular file, or one whose owner or mode break the rule."""
        if not stat.S_ISREG(st.st_mode):
            raise TrustError(f"Refusing {what} {qpath(shown)}: not a regular file")
        problem = self.problem(st, on_the_way=False)
        if problem:
            raise TrustError(f"Refusing {what} {qpath(shown)}: it {problem}")

    def read_file(
        self,
        path: str | os.PathLike[str],
        what: str,
        max_size: int = 16 << 20,
        link_ok: bool = True,
    ) -> tuple[bytes, os.stat_result]:
        """Content and ``fstat`` of ``path`` after checking the way to it and the open file.

        Errors that are not about trust (missing file, permission, a directory) raise
        ``OSError`` for the caller's usual message; more than ``max_size`` bytes is refused.
        ``link_ok=False``: ``path`` itself must not be a link, symbolic or hard (a file the
        daemon writes by rename, never a link, so a link there was planted: not followed,
        whether or not its target exists, so the answer tells nothing about files the
        planter cannot see).
        """
        shown = os.fspath(path)
        if link_ok:
            real, _ = self.resolve(shown, what)
        else:
            directory, name = os.path.split(os.path.abspath(shown))
            real = os.path.join(self.resolve(directory, what)[0], name)
            if stat.S_ISLNK(os.lstat(real).st_mode):  # the open below refuses a later one
                raise TrustError(f"Refusing {what} {qpath(shown)}: it is a link")
        # O_NONBLOCK: a FIFO planted under the name must not hang the daemon before fstat.
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK
        fd = os.open(real, flags)
        try:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):  # reported like any unreadable file
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), shown)
            self.check_file(st, what, shown)
            if not link_ok and st.st_nlink != 1:  # a hard link is a link too
                raise TrustError(
                    f"Refusing {what} {qpath(shown)}: it has {st.st_nlink} links "
                    "(a file written by rename has 1)"
                )
            if st.st_size > max_size:
                raise TrustError(f"Refusing {what} {qpath(shown)}: larger than {max_size} bytes")
            chunks = []
            total = 0
            while chunk := os.read(fd, 1 << 16):
                total += len(chunk)
                if total > max_size:  # grew while we read
                    raise TrustError(
                        f"Refusing {what} {qpath(shown)}: larger than {max_size} bytes"
                    )
                chunks.append(chunk)
            return b"".join(chunks), st
        finally:
            os.close(fd)


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


def for_process() -> Trust:
    """Root and the user we run as: what the root commander trusts."""
    return Trust.of_process()


ANY_OWNER = Trust(None)
