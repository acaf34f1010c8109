"""An idle CPU group for each warm shell while it starts and waits (docs/performance.md,
"An idle group per warm shell").

Back to back, the shell that replaces a released one starts up (exec, dynamic linking, the C
library probing the CPU) while the next knock's server and commander need the CPU. Linux
decides whether a waking task preempts the running one by comparing their scheduling groups,
so the shell's own ``SCHED_IDLE`` does not make it give way to the server; a cgroup marked
``cpu.idle`` does, to every waking task of a sibling group that is not marked.

So each warm shell gets a cgroup of its own in the ``cpu`` hierarchy, a child of the
commander's, marked idle before the shell is moved in; the release clears the mark (a
one-byte write of a few µs) before it writes the address, so the command runs in a group of
normal weight, as a session of its own would. The shell is moved in once, by the warm thread;
moving it back at the release instead would take an RCU grace period (~8 ms here) whenever
moves are rare. The group is removed once its command is reaped, or the shell ended.

Only a cgroup v1 ``cpu`` hierarchy is used: under cgroup v2 a child group needs a delegated
subtree with the commander out of its own group, which is not built. There, and wherever the
commander cannot make the groups (not root, a read-only ``/sys/fs/cgroup``), warm shells start
in the commander's group as before; the start line says which.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import stat
import threading
import time

from ruroco.commander.procstat import stat_fields

# A group's name: this prefix, its commander's pid and start time (``<pid>.<ticks>``), a
# number. Pid and start time let a commander remove what one that was killed left behind,
# even under the same pid, without touching a running one's groups.
PREFIX = "ruroco-shell-"
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC
# Groups a process still held at their removal are tried again when a group is made, at most
# this often (one ``rmdir`` each), and at ``sweep``.
RETRY_BUSY_SEC = 1.0
_NO_IDLE = "this kernel's cpu controller has no cpu.idle (Linux 5.15 or later has it)"
_NUMBERS = itertools.count(1)  # one series per process, whatever makes groups in it
_RT = "the commander runs under a real-time policy, which a group without real-time time refuses"


class ShellGroup:
    """One warm shell's group: idle until ``wake``; ``remove`` once nothing is in it. Only
    ``cgroup.procs`` stays open, until ``enter``: a waiting shell costs no descriptor more."""

    __slots__ = ("_groups", "_procs", "name")

    def __init__(self, groups: ShellGroups, name: str, procs: int) -> None:
        self._groups = groups
        self.name = name
        self._procs = procs  # cgroup.procs, open for the move in

    def enter(self, pid: int) -> None:
        """Move ``pid`` (the shell, still starting up) into the group."""
        try:
            os.write(self._procs, str(pid).encode("ascii"))
        finally:
            os.close(self._procs)
            self._procs = -1

    def wake(self) -> None:
        """Clear the idle mark: from now on the group competes at normal weight."""
        self._groups.mark(self.name, b"0")

    def remove(self) -> None:
        """Remove the group; one a process still holds (a command's descendant outside a PID
        namespace) is tried again later (``RETRY_BUSY_SEC``)."""
        if self._procs >= 0:
            os.close(self._procs)
            self._procs = -1
        self._groups.remove(self.name)


class ShellGroups:
    """Makes the warm shells' groups below ``home``, the commander's own ``cpu`` cgroup (an
    open directory, so a group is always made where the probe checked)."""

    def __init__(self, home: int, where: str) -> None:
        self._home = home
        self.where = where  # for the start line and errors
        self._owner = _owner(os.getpid())
        self._lock = threading.Lock()
        self._busy: set[str] = set()  # removals that found a process still inside
        self._retry_at = 0.0

    @classmethod
    def probe(cls) -> tuple[ShellGroups | None, str]:
        """Groups below the commander's ``cpu`` cgroup, or None and why not. Removes the
        groups of commanders that are gone."""
        try:
            where = _own_cpu_cgroup()
        except OSError as exc:
            return None, exc.strerror or str(exc)
        try:
            home = os.open(where, _DIR)
        except OSError as exc:
            return None, f"{where}: {exc.strerror}"
        groups = cls(home, where)
        try:
            info = os.fstat(home)
            if info.st_uid != 0 or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                raise OSError(errno.EPERM, f"{where} is writable by others than root")
            groups.sweep()
            group = groups.new()  # may we, and does the kernel know cpu.idle?
            try:
                group.wake()
                if _realtime() and groups.rt_runtime(group.name) == 0:
                    raise OSError(errno.EPERM, _RT)
            finally:
                group.remove()
        except OSError as exc:
            groups.close()
            return None, exc.strerror or str(exc)
        return groups, ""

    def new(self) -> ShellGroup:
        """A fresh group marked idle; OSError if it cannot be made."""
        self._remove_busy(wait=True)
        for _ in range(100):  # a name taken (a leftover we may not remove): the next one
            name = f"{PREFIX}{self._owner}-{next(_NUMBERS)}"
            try:
                os.mkdir(name, 0o755, dir_fd=self._home)
            except FileExistsError:
                continue
            break
        else:
            raise OSError(errno.EEXIST, f"{PREFIX}{self._owner}-*: 100 names in a row are taken")
        procs = -1
        try:
            self.mark(name, b"1")
            procs = os.open(f"{name}/cgroup.procs", _FILE, dir_fd=self._home)
        except BaseException:
            if procs >= 0:
                os.close(procs)
            with contextlib.suppress(OSError):
                os.rmdir(name, dir_fd=self._home)
            raise
        return ShellGroup(self, name, procs)

    def mark(self, name: str, value: bytes) -> None:
        """Write ``value`` to group ``name``'s ``cpu.idle``."""
        try:
            fd = os.open(f"{name}/cpu.idle", _FILE, dir_fd=self._home)
        except FileNotFoundError:
            if os.path.isdir(f"/proc/self/fd/{self._home}/{name}"):
                raise OSError(errno.ENOENT, _NO_IDLE) from None
            raise
        try:
            os.write(fd, value)
        finally:
            os.close(fd)

    def rt_runtime(self, name: str) -> int | None:
        """Group ``name``'s real-time budget (µs per period); None without real-time group
        scheduling (``CONFIG_RT_GROUP_SCHED``: then real-time tasks run in any group)."""
        try:
            fd = os.open(f"{name}/cpu.rt_runtime_us", os.O_RDONLY | os.O_CLOEXEC, dir_fd=self._home)
        except FileNotFoundError:
            return None
        try:
            return int(os.read(fd, 64))
        finally:
            os.close(fd)

    def remove(self, name: str) -> None:
        try:
            os.rmdir(name, dir_fd=self._home)
        except FileNotFoundError:
            pass
        except OSError:  # EBUSY: a process is still inside; tried again later
            with self._lock:
                self._busy.add(name)

    def _remove_busy(self, wait: bool = False) -> None:
        """Try again the groups that were held at their removal (``wait``: only if
        ``RETRY_BUSY_SEC`` passed since the last try); those still held stay listed."""
        with self._lock:
            now = time.monotonic()
            if not self._busy or (wait and now < self._retry_at):
                return
            self._retry_at = now + RETRY_BUSY_SEC
            busy, self._busy = self._busy, set()
        for name in busy:
            self.remove(name)

    def sweep(self) -> None:
        """Remove our groups that a process held at their removal and the groups of
        commanders that are gone (killed: their shells have exited); never raises, what
        cannot be removed stays for a later sweep."""
        self._remove_busy()
        try:
            names = os.listdir(self._home)
        except OSError:
            return
        for name in names:
            owner = name[len(PREFIX) :].rpartition("-")[0]
            if name.startswith(PREFIX) and owner != self._owner and not _alive(owner):
                self.remove(name)

    def close(self) -> None:
        """Try the leftover groups once more and let go of the directory."""
        if self._home >= 0:
            self.sweep()
            os.close(self._home)
            self._home = -1


def _owner(pid: int) -> str:
    """``<pid>.<start time in clock ticks since boot>``: names one process for all time."""
    return f"{pid}.{stat_fields(pid)[19].decode('ascii', 'replace')}"


def _alive(owner: str) -> bool:
    """Whether the commander a group's name names still runs (a name we cannot read: yes)."""
    pid, _, start = owner.partition(".")
    if not pid.isdigit() or not start.isdigit():
        return True
    try:
        return _owner(int(pid)) == owner
    except FileNotFoundError:
        return False
    except (OSError, IndexError):
        return True


def _realtime() -> bool:
    return os.sched_getscheduler(0) in (os.SCHED_FIFO, os.SCHED_RR)


def _own_cpu_cgroup() -> str:
    """This process's ``cpu_cgroup_dir``."""
    with open("/proc/self/cgroup", encoding="utf-8") as fh:
        cgroup = fh.read()
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        mountinfo = fh.read()
    return cpu_cgroup_dir(cgroup, mountinfo)


def cpu_cgroup_dir(cgroup: str, mountinfo: str) -> str:
    """The directory of a process's cgroup in a v1 hierarchy with the ``cpu`` controller,
    from the texts of its /proc/PID/cgroup and /proc/PID/mountinfo; OSError when there is
    none. Lines of another shape are passed over."""
    path = None
    for line in cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3 and "cpu" in parts[1].split(",") and parts[2].startswith("/"):
            path = parts[2]
    if path is not None and ".." in path.split("/"):
        raise OSError(errno.ENOENT, f"the cpu cgroup {path} is outside this cgroup namespace")
    if path is None:
        raise OSError(errno.ENOENT, "no cgroup v1 hierarchy has the cpu controller")
    for line in mountinfo.splitlines():
        fields = line.split(" ")
        if "-" not in fields[6:]:
            continue
        sep = fields.index("-", 6)
        if len(fields) < sep + 4 or fields[sep + 1] != "cgroup":
            continue
        if "cpu" not in fields[sep + 3].split(","):
            continue
        root, mount = _unescape(fields[3]), fields[4]
        if root == "/":
            inside = path
        elif path == root or path.startswith(root + "/"):
            inside = path[len(root) :]
        else:
            continue  # a mount of another part of the hierarchy
        if not mount.startswith("/"):
            continue
        return _unescape(mount) + inside.rstrip("/")
    raise OSError(errno.ENOENT, "the cpu controller's cgroup v1 hierarchy is not mounted")


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    for escaped, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(escaped, char)
    return field
