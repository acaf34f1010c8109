"""File-system helpers shared by client, server and commander.

``write_atomic`` is how every state file (counter, blocklist) is written: a crash at any
point leaves either the old or the new content, never a torn file, and a failed write leaves
no temporary file behind (the original leaks it); the steps are in docs/files.md, Atomic
writes.
"""

from __future__ import annotations

import os
import time

from ruroco import log
from ruroco.errors import RurocoError, qpath

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: typing costs the client's cold start ~10 ms
if TYPE_CHECKING:  # pathlib is imported lazily: it costs the client's cold start ~5 ms
    from pathlib import Path


def write_atomic(path: str | os.PathLike[str], data: bytes, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` via a fsynced temp file in the same directory and rename."""
    target = os.fspath(path)
    tmp = f"{target}.{time.time_ns()}.tmp"
    # A new file only (O_EXCL: never one planted at the name, nor a link), created with the
    # final mode: whoever opened it while it was wider would keep reading it after a chmod.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(tmp, flags, 0o666 if mode is None else mode)
    except OSError as exc:
        raise RurocoError(f"open {tmp}") from exc
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
        except OSError as exc:
            raise RurocoError(f"write tmp {tmp}") from exc
        try:
            os.fsync(fd)
        except OSError as exc:
            raise RurocoError(f"fsync tmp {tmp}") from exc
        if mode is not None:  # exactly ``mode``, whatever the umask took from it at the open
            try:
                os.fchmod(fd, mode)
            except OSError as exc:
                raise RurocoError(f"set mode on tmp {tmp}") from exc
        os.close(fd)
        fd = -1
        try:
            os.rename(tmp, target)
        except OSError as exc:
            raise RurocoError(f"rename {tmp} -> {target}") from exc
    except BaseException:
        if fd >= 0:
            os.close(fd)
        try:  # noqa: SIM105 - contextlib would cost the client's cold start ~3 ms
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(os.path.dirname(target) or ".")


def _fsync_dir(directory: str) -> None:
    try:
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def resolve_path(path: str | os.PathLike[str]) -> Path:
    """Absolute paths stay as given; relative ones are joined to the CWD and canonicalized
    (the client's conf dir, as the original resolves it)."""
    joined = daemon_path(path)
    if os.path.isabs(path) or not joined.is_absolute():
        return joined  # absolute already, or no working directory
    try:
        return joined.resolve(strict=True)
    except OSError as exc:
        log.error(f"Could not canonicalize {qpath(joined)}: {exc}")
        return joined


def make_dirs_beneath(existing: str, names: list[str], mode: int) -> None:
    """Create ``names`` one below the other under the directory ``existing``, never following a
    link: each is made with ``mkdirat`` and opened with ``O_NOFOLLOW`` relative to its
    parent's descriptor. A link planted after the trust check (in a sticky ``/tmp``, where
    anyone may add entries) then fails the open (ELOOP or ENOTDIR) instead of taking root's
    ``mkdir`` elsewhere, as ``Path.mkdir(parents=True)`` did. What already exists and is a
    directory is kept; the caller checks the result's owner and mode (``ruroco.trust``)."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
    fd = os.open(existing, flags)
    try:
        for name in names:
            try:  # noqa: SIM105 (contextlib costs the client's cold start an import)
                os.mkdir(name, mode, dir_fd=fd)
            except FileExistsError:
                pass
            below = os.open(name, flags | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = below
    finally:
        os.close(fd)


def daemon_path(path: str | os.PathLike[str]) -> Path:
    """A daemon's directory setting as an absolute path: relative ones joined to the CWD, links
    not resolved. The daemons check such a path with ``ruroco.trust``, which follows links
    itself and refuses one planted by another user in a directory others can write;
    resolving it here first (``resolve_path``) would follow that link before the check saw it
    (docs/security.md, "Files and directories the daemons trust")."""
    from pathlib import Path

    p = Path(path)
    if p.is_absolute():
        return p
    try:
        return Path.cwd() / p
    except OSError as exc:
        log.error(f"Could not get current directory: {exc}")
        return p


def unreachable_for(directory: str, user: str) -> str | None:
    """Why the account ``user`` could not reach ``directory`` (a real path: no links on the
    way), judged by the mode bits of every directory from ``/``: the first one it may not
    search, described, or None. Nothing for root or an unknown or empty name. A directory
    carrying a POSIX ACL is passed over (its bits are not the whole answer), so this may
    miss a refusal but never invents one."""
    import pwd
    import stat

    try:
        account = pwd.getpwnam(user.strip())
    except (KeyError, ValueError):
        return None
    if account.pw_uid == 0:
        return None
    groups = set(os.getgrouplist(account.pw_name, account.pw_gid))
    path = "/"
    for name in [""] + [p for p in directory.split("/") if p]:
        path = os.path.join(path, name)
        try:
            st = os.stat(path)
        except OSError:
            return None  # gone meanwhile: the caller's own checks say so
        if _has_acl(path):
            continue  # an ACL decides, not the bits
        if st.st_uid == account.pw_uid:
            bit = stat.S_IXUSR
        elif st.st_gid in groups:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            mode = stat.S_IMODE(st.st_mode)
            return f"directory {qpath(path)} (mode {mode:04o}, uid {st.st_uid}, gid {st.st_gid})"
    return None


def _has_acl(path: str) -> bool:
    """Whether ``path`` carries a POSIX access ACL (False without one, or without xattrs)."""
    try:
        return bool(os.getxattr(path, "system.posix_acl_access"))
    except OSError:
        return False


def lookup_ids(user: str, group: str) -> tuple[int, int]:
    """uid/gid for names; an empty (after trimming) name means "keep" and yields -1."""
    import grp
    import pwd

    user, group = user.strip(), group.strip()
    uid = gid = -1
    if user:
        try:
            uid = pwd.getpwnam(user).pw_uid
        except KeyError:
            raise RurocoError(f"Could not find user {user}") from None
    if group:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise RurocoError(f"Could not find group {group}") from None
    return uid, gid
