"""Run one configured command and log its outcome as one line.

What a command gets and how it ends, for operators: docs/security.md, "Commands";
docs/deviations.md #3 and #12.

Containment. Where the kernel lets us (CAP_SYS_ADMIN), every ``sh -c`` is PID 1 of a PID
namespace of its own: when ``sh`` exits, or is SIGKILLed at the timeout, the kernel kills every
other process in that namespace, so nothing a command started outlives it, however it detached
(``setsid``, double fork, ``&``). The worker thread ``unshare``s right before ``posix_spawn`` and
``setns``es back right after; both act on the calling thread only, so concurrent workers do not
interfere. Without the capability (containers, units without it) the executor logs one line at
start-up and falls back to killing the process group and every descendant still in the process
tree at the timeout; ``Executor.isolation`` says which mode is active.

Output. stdout and stderr are pipes that the worker drains while the command runs, so a chatty
command never blocks and never deadlocks us: the first ``MAX_LOGGED_OUTPUT`` bytes of each are
kept for the log line, the rest is counted and dropped. Memory stays flat and nothing touches
the disk, whatever a command writes. After ``sh`` exits the pipes are drained until end of file
for at most ``DRAIN_AFTER_EXIT_SEC`` and then closed, so a writer still holding them (possible
only in the fallback mode) gets EPIPE/SIGPIPE instead of keeping us waiting.

Latency (knock -> command started) is what users feel, so the hot path is short:
``posix_spawn`` (vfork + exec in glibc, about 0.3 ms cheaper than ``subprocess.Popen`` with
``start_new_session``), and the exit of ``sh`` is noticed through a pidfd at once rather than by
``Popen.wait``'s sleep-and-poll loop (up to 50 ms late, which delays the next request for the
same command name). ``start`` spawns and returns the waiting part, so the commander can spawn
on its accepting thread and leave only the wait to a worker; nothing is logged before the spawn
(docs/performance.md). ``posix_spawn`` does not close inherited descriptors the way ``Popen``
does; every descriptor Python opens is close-on-exec (PEP 446, and the pipes are created with
O_CLOEXEC), so ``sh`` gets only 0, 1, 2 (a test checks this).

Warm shells (``ruroco.commander.warm``; docs/performance.md, "Warm shells"). With
``keep_warm``, each command name has ``sh`` spawned ahead (three) by the same code as a cold
spawn (``_start_process``), with fd 3 the read end of its release pipe; ``start`` releases one
(writes the address) instead of spawning, and falls back to a cold spawn when there is none or
it died. From the release on, a warm command is a started command like any other: the same
wait, timeout (counted from the release), capture, outcome and log lines. Its replacement is
asked for by the waiting part once the released command has had its first moments
(``announce``) and spawned on the warm thread. Every spawn goes through
``ruroco.commander.spawn``, which does not hold the GIL while the child execs.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import os
import resource
import select
import signal
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

from ruroco import log
from ruroco.cmdhash import command_hash
from ruroco.commander.commands import Command
from ruroco.commander.procstat import stat_fields
from ruroco.commander.shellgroup import ShellGroup, ShellGroups
from ruroco.commander.spawn import IdleRefused, Spawner
from ruroco.commander.warm import SCRIPT as WARM_SCRIPT
from ruroco.commander.warm import WarmShells
from ruroco.commander.warm import environment as warm_environment
from ruroco.ipaddr import ip_text

# Beyond this a deadline is meaningless (and float/int conversion could overflow): no deadline.
NO_DEADLINE_AFTER_SEC = 2**32
# How much of each output stream is kept for the log line; the rest is counted, not kept. With
# the "N more bytes" note it fits ``log.MAX_PART_CHARS``, so stdout and stderr both stay
# visible in one journal line.
MAX_LOGGED_OUTPUT = 4000
# How long a command has the CPU to itself before its "Running command" line is written
# (unless it writes or exits sooner; docs/performance.md).
ANNOUNCE_AFTER_SEC = 0.005
# After sh has exited, how long its output is still read before the pipes are closed.
DRAIN_AFTER_EXIT_SEC = 1.0
# Values of ``Executor.isolation``.
PID_NAMESPACE = "pid-namespace"
PROCESS_GROUP = "process-group"
# One read of output beyond the logged part (the default pipe capacity).
_DISCARD_CHUNK = 64 * 1024
# poll() takes milliseconds as a C int: wait in slices no longer than this.
_MAX_POLL_SEC = 3600.0
# Fallback kill: how long to wait for SIGSTOP to take effect before killing anyway.
_STOP_WAIT_SEC = 0.5
_CLONE_NEWPID = 0x20000000
_CAP_SYS_NICE = 23


# ``start_parts``: the wait until ``sh`` is reaped returns the report (output, outcome line).
Report = Callable[[], "Outcome"]
Wait = Callable[[], Report]


class Status(enum.Enum):
    SUCCESS = "success"
    FAILURE = "failure"
    TIMEOUT = "timeout"
    ERROR = "error"


@dataclass(frozen=True)
class Outcome:
    status: Status
    returncode: int | None = None
    stdout: str = ""
    stderr: str = ""


class _Child:
    """A spawned ``sh``; ``returncode`` is set (under the executor lock) once it is reaped."""

    __slots__ = ("isolated", "pid", "pidfd", "poll_delay", "returncode")

    def __init__(self, pid: int, isolated: bool) -> None:
        self.pid = pid
        self.isolated = isolated  # PID 1 of its own namespace
        self.returncode: int | None = None
        self.poll_delay = 0.0005  # only without a pidfd: grows to 50 ms, as Popen.wait does
        try:
            self.pidfd = os.pidfd_open(pid)
        except (AttributeError, OSError):  # kernel < 5.3: fall back to polling waitpid
            self.pidfd = -1


class _Capture:
    """One output pipe: keeps the first ``MAX_LOGGED_OUTPUT`` bytes, counts and drops the rest."""

    __slots__ = ("dropped", "fd", "kept", "scratch")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.kept = bytearray()
        self.dropped = 0
        self.scratch: bytearray | None = None  # reused for the dropped part: no allocations

    def read(self) -> bool:
        """Read once from the (non-blocking) pipe; False at end of file."""
        try:
            room = MAX_LOGGED_OUTPUT - len(self.kept)
            if room > 0:
                data = os.read(self.fd, room)
                self.kept += data
                return bool(data)
            if self.scratch is None:
                self.scratch = bytearray(_DISCARD_CHUNK)
            n = os.readv(self.fd, [self.scratch])
        except BlockingIOError:
            return True
        except OSError:
            return False
        self.dropped += n
        return n > 0

    def text(self) -> str:
        text = self.kept.decode("utf-8", errors="replace").rstrip()
        if self.dropped:
            text += f" … ({self.dropped} more bytes not logged)"
        return text


class _Started:
    """A command that was spawned: its ``sh`` and its two output pipes (read ends); a
    released warm shell's CPU group, removed once ``sh`` is reaped."""

    __slots__ = ("captures", "child", "group")

    def __init__(self, child: _Child, captures: tuple[_Capture, _Capture]) -> None:
        self.child = child
        self.captures = captures
        self.group: ShellGroup | None = None


_Sched = tuple[int, "os.sched_param"]


class _Warm:
    """A warm shell: spawned, waiting to read its release line from ``release``'s pipe."""

    __slots__ = ("cmd", "release", "sched", "started")

    def __init__(
        self, cmd: str, started: _Started, release: int, sched: _Sched | None = None
    ) -> None:
        self.cmd = cmd  # the command text it runs once released
        self.started = started
        self.release = release  # write end; only the commander holds it (close-on-exec)
        # It waits under SCHED_IDLE: the policy to give back at the release (the commander's).
        self.sched = sched

    def alive(self) -> bool:
        """Still waiting: not exited (it cannot have run anything before its release)."""
        child = self.started.child
        if child.pidfd >= 0:
            poller = select.poll()
            poller.register(child.pidfd, select.POLLIN)
            return not poller.poll(0)
        try:
            return os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
        except ChildProcessError:
            return False

    def release_with(self, ip_str: str) -> bool:
        """Hand the shell its address: the command runs. False: the shell is gone (ended).

        If it started up under SCHED_IDLE (``Executor._spawn_warm``), it gets the commander's
        policy back first, and its CPU group loses its idle mark, so the command runs as a
        cold spawned one would. If that fails, the shell is ended unreleased (the caller then
        spawns cold): a command never runs idle."""
        if self.alive():
            group = self.started.group
            try:
                if self.sched is not None:
                    os.sched_setscheduler(self.started.child.pid, *self.sched)
                if group is not None:
                    try:
                        group.wake()
                    except OSError as exc:
                        log.error(f"Could not release a warm shell of {group.name}: {exc}")
                        raise
                # One write far below PIPE_BUF into an empty pipe: all of it or nothing.
                os.write(self.release, f"{ip_str}\n".encode("ascii"))
            except OSError:  # ESRCH, EPIPE: it died just now
                pass
            else:
                os.close(self.release)
                self.release = -1
                return True
        self.end()
        return False

    def end(self) -> None:
        """End it unreleased: end of file on fd 3 (it exits without running anything), and
        SIGKILL so it is gone at once even if still starting up; reap it, close its pipes."""
        if self.release >= 0:
            os.close(self.release)
            self.release = -1
        child = self.started.child
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGKILL)  # never released: nothing else to kill
        with contextlib.suppress(ChildProcessError):
            os.waitpid(child.pid, 0)
        if child.pidfd >= 0:
            os.close(child.pidfd)
            child.pidfd = -1
        for capture in self.started.captures:
            os.close(capture.fd)
        _remove_group(self.started)


class _PidNamespaces:
    """``unshare(CLONE_NEWPID)`` before a spawn and ``setns`` back after it, per thread.

    Python 3.11 has neither ``os.unshare`` nor ``os.setns``, hence ctypes (imported only here,
    so ``--check`` and ``-V`` do not pay for it).
    """

    def __init__(self) -> None:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        self._unshare: Any = libc.unshare
        self._unshare.argtypes = [ctypes.c_int]
        self._setns: Any = libc.setns
        self._setns.argtypes = [ctypes.c_int, ctypes.c_int]
        self._get_errno = ctypes.get_errno
        # The namespace to return to; kept open for the executor's lifetime (a worker may be
        # spawning at any moment), closed by ``release``.
        self.home = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)

    def enter(self) -> None:
        """Children this thread creates from now on are PID 1 of a new namespace."""
        if self._unshare(_CLONE_NEWPID) != 0:
            err = self._get_errno()
            raise OSError(err, f"unshare(CLONE_NEWPID): {os.strerror(err)}")

    def leave(self) -> None:
        """Children this thread creates from now on are in our own namespace again."""
        if self._setns(self.home, _CLONE_NEWPID) != 0:
            err = self._get_errno()
            raise OSError(err, f"setns(CLONE_NEWPID): {os.strerror(err)}")

    def release(self) -> None:
        if self.home >= 0:
            os.close(self.home)
            self.home = -1

    @classmethod
    def probe(cls) -> tuple[_PidNamespaces | None, str]:
        """Usable namespaces, or None and why not.

        The attempt runs in a throwaway thread: should going back fail, only that thread is
        left with a namespace setting for its children.
        """
        try:
            ns = cls()
        except (OSError, AttributeError) as exc:
            return None, str(exc)
        errors: list[OSError] = []

        def attempt() -> None:
            try:
                ns.enter()
                ns.leave()
            except OSError as exc:
                errors.append(exc)

        thread = threading.Thread(target=attempt, name="ruroco-pidns-probe")
        thread.start()
        thread.join()
        if errors:
            ns.release()
            reason = errors[0].strerror or str(errors[0])
            if errors[0].errno == errno.EPERM:
                reason += ", CAP_SYS_ADMIN is missing"
            return None, reason
        return ns, ""


class Executor:
    """Spawns commands and remembers the running ones so a shutdown can kill them.

    ``pid_namespace=False`` skips the namespace probe and forces the process-group fallback;
    it exists so tests can exercise that mode on a host that has CAP_SYS_ADMIN.
    ``shell_groups=False`` likewise keeps warm shells in the commander's CPU group.
    """

    def __init__(self, pid_namespace: bool = True, shell_groups: bool = True) -> None:
        self._lock = threading.Lock()
        self._running: set[_Child] = set()
        self._ns: _PidNamespaces | None = None
        if pid_namespace:
            self._ns, reason = _PidNamespaces.probe()
            if self._ns is None:
                log.info(
                    f"Per-command PID namespaces are unavailable ({reason}): a timeout kills "
                    "the command's process group and its descendants still in its process tree"
                )
        self.isolation = PID_NAMESPACE if self._ns is not None else PROCESS_GROUP
        # The commander never changes its environment: copy it (and find ``sh`` on its PATH)
        # once, not per command (docs/performance.md).
        self._env = dict(os.environ)
        self._sh = _find_sh(self._env.get("PATH", os.defpath))
        self._spawner = Spawner()  # posix_spawn with the GIL released (ruroco.commander.spawn)
        self._sched: _Sched = (os.sched_getscheduler(0), os.sched_getparam(0))
        self._idle_start = _can_leave_sched_idle()
        # An idle CPU group per warm shell where the commander can make them (shellgroup).
        self._groups: ShellGroups | None = None
        self.shell_groups = "off"
        if shell_groups:
            self._groups, reason = ShellGroups.probe()
            self.shell_groups = "idle" if self._groups is not None else f"off ({reason})"
        _close_on_exec_inherited()
        self._warm: WarmShells[_Warm] = WarmShells(self._spawn_warm)
        self.released_warm = 0  # commands started from a warm shell (tests, bench)

    def keep_warm(self, commands: Iterable[Command], enabled: bool = True) -> int:
        """Keep a warm shell for each of ``commands`` (up to ``warm.MAX_WARM_COMMANDS``), none
        when not ``enabled``; others are ended unreleased. Returns how many names keep one."""
        self._warm.configure(commands, enabled)
        return self._warm.wanted()

    def warm_shells(self) -> int:
        """How many command names keep a warm shell."""
        return self._warm.wanted()

    def warm_waiting(self) -> int:
        """How many warm shells wait to be released right now."""
        return self._warm.waiting()

    def run(self, command: Command, ip: bytes) -> Outcome:
        """Start ``command`` and wait for it: ``start(command, ip)()``."""
        return self.start(command, ip)()

    def start(self, command: Command, ip: bytes) -> Callable[[], Outcome]:
        """Spawn ``command`` now; the returned callable waits for it, logs, returns the outcome
        (``start_parts`` with its two parts joined). Never raises."""
        return partial(_joined, self.start_parts(command, ip))

    def start_parts(self, command: Command, ip: bytes) -> Wait:
        """Spawn ``command`` now; return ``wait``. ``wait()`` returns once ``sh`` has exited
        and is reaped (killed at its timeout), and returns ``report``: ``report()`` reads what
        is left of the output, logs the outcome and returns it.

        The commander's dispatcher lets the next request of the name go between the two
        (docs/performance.md, "The commander's path"). Nothing is logged before the spawn, so
        the command starts as early as possible; the waiting part logs the ``Running
        command`` line (a failed spawn logs it here, with the error). Never raises.
        """
        ip_str = ip_text(ip)
        try:
            started = self._release(command, ip_str) or self._start(command, ip_str)
        except Exception as exc:  # never let one command take a worker (or the daemon) down
            _log_running(command, ip_str)
            log.error(f"Error executing {command.cmd} for {ip_str}: {exc}")
            return _error_parts
        return partial(self._wait_exit, command, ip_str, started)

    def kill_all(self) -> int:
        """SIGKILL every running command with all it started; returns how many were signalled."""
        with self._lock:  # reaping holds the lock too, so no pid here can have been reused
            procs = [c for c in self._running if c.returncode is None]
            for child in procs:
                _kill(child)
        return len(procs)

    def close(self) -> None:
        """End the warm shells, unreleased (each run closes its own pipes), and remove what
        is left of their CPU groups."""
        self._warm.close()
        if self._groups is not None:
            self._groups.sweep()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self._warm.close()
        with contextlib.suppress(Exception):
            if self._ns is not None:
                self._ns.release()

    def _release(self, command: Command, ip_str: str) -> _Started | None:
        """Release the warm shell of ``command``: running (and known to ``kill_all``) on
        return. None when there is none for it or it died: spawn cold."""
        while True:  # a dead shell is ended by ``release_with``: try the next one
            warm = self._warm.take(command)
            if warm is None:
                return None
            if warm.release_with(ip_str):
                break
        with self._lock:
            self._running.add(warm.started.child)
        self.released_warm += 1
        return warm.started

    def _start(self, command: Command, ip_str: str) -> _Started:
        """Pipes and spawn; the command is running (and known to ``kill_all``) on return."""
        started = self._start_process(command.cmd, {**self._env, "RUROCO_IP": ip_str})
        with self._lock:
            self._running.add(started.child)
        return started

    def _spawn_warm(self, command: Command) -> _Warm:
        """A warm shell for ``command``: spawned as ``_start`` spawns, plus its release pipe.

        Where it may leave SCHED_IDLE again (``_idle_start``), it takes SCHED_IDLE before it
        execs. On Linux 6.18 that orders its start-up (exec, dynamic linking, sh's
        initialisation) only against its own scheduling group (its session's autogroup, or
        the commander's cgroup where the cpu controller is on), not against the server
        (docs/performance.md, "Back to back: the replacement shell"). The release restores
        ``self._sched``."""
        release_r, release_w = _pipe("release", nonblocking_read=False)
        idle = self._idle_start
        group = self._new_group()
        try:
            env = warm_environment(self._env, command.cmd)
            started = self._start_process(command.cmd, env, release_r, idle)
        except BaseException:
            os.close(release_w)
            if group is not None:
                group.remove()
            raise
        finally:
            os.close(release_r)  # only the shell holds the read end now
        if group is not None:
            try:
                group.enter(started.child.pid)
            except OSError as exc:  # it waits in our group, as without groups
                group.remove()
                log.error(f"Could not move a warm shell of {command.name} to its group: {exc}")
            else:
                started.group = group
        # ``idle_works`` turns False at the spawn whose child could not take the policy (a
        # seccomp filter, say): that one and all later ones start at our priority.
        if idle and self._spawner.idle_works:
            return _Warm(command.cmd, started, release_w, self._sched)
        return _Warm(command.cmd, started, release_w)

    def _new_group(self) -> ShellGroup | None:
        """A new idle CPU group for a warm shell, if the executor makes them; a failure is
        one line, and that shell starts in the commander's group."""
        if self._groups is None:
            return None
        try:
            return self._groups.new()
        except OSError as exc:
            log.error(f"Could not make a CPU group in {self._groups.where}: {exc}")
            return None

    def _start_process(
        self, cmd: str, env: dict[str, str], release: int = -1, idle: bool = False
    ) -> _Started:
        """Output pipes and the spawn of ``sh`` for ``cmd`` (a warm shell when ``release`` is
        the read end of its release pipe)."""
        out_r, out_w = _pipe("stdout")
        try:
            err_r, err_w = _pipe("stderr")
        except BaseException:
            os.close(out_r)
            os.close(out_w)
            raise
        try:
            try:
                child = self._spawn(cmd, env, out_w, err_w, release, idle)
            except IdleRefused:
                # That child exited before its exec; with PID namespaces it was the init of
                # the one entered for it, where no further child can be created (ENOMEM), so
                # the normal spawn enters a namespace of its own again.
                child = self._spawn(cmd, env, out_w, err_w, release)
        except BaseException:
            os.close(out_r)
            os.close(err_r)
            raise
        finally:
            os.close(out_w)  # only the command holds the write ends now: EOF when it is gone
            os.close(err_w)
        return _Started(child, (_Capture(out_r), _Capture(err_r)))

    def _wait_exit(self, command: Command, ip_str: str, started: _Started) -> Report:
        """Wait until ``command``'s ``sh`` is reaped; return the part that reports it.

        The ``Running command`` line waits until the command has had its first moments to
        itself (``ANNOUNCE_AFTER_SEC``, or sooner if it writes or exits): writing a log line,
        and the journal reading it, would compete for the CPU with ``sh`` starting up
        (docs/performance.md). It always comes before the outcome line.
        """
        announced = False

        def announce() -> None:
            nonlocal announced
            if not announced:
                announced = True
                self._warm.refill_later(command.name)  # spawned on the warm thread
                _log_running(command, ip_str)

        child, captures = started.child, started.captures
        try:
            try:
                timed_out = self._wait(child, command.timeout_sec, captures, announce)
            finally:
                if child.pidfd >= 0:
                    os.close(child.pidfd)
                    child.pidfd = -1
        except Exception as exc:  # never let one command take a worker (or the daemon) down
            for capture in captures:
                os.close(capture.fd)
            _remove_group(started)
            announce()
            log.error(f"Error executing {command.cmd} for {ip_str}: {exc}")
            return _error_outcome
        return partial(self._report, command, ip_str, started, timed_out, announce)

    def _report(
        self,
        command: Command,
        ip_str: str,
        started: _Started,
        timed_out: bool,
        announce: Callable[[], None],
    ) -> Outcome:
        """What is left of the output (``DRAIN_AFTER_EXIT_SEC`` at most), the outcome line."""
        child, captures = started.child, started.captures
        try:
            try:
                _drain(captures, DRAIN_AFTER_EXIT_SEC)
            finally:
                for capture in captures:
                    os.close(capture.fd)  # a writer left behind gets EPIPE from now on
                _remove_group(started)  # after the turn: the next request need not wait
            stdout, stderr = captures[0].text(), captures[1].text()
        except Exception as exc:  # as in ``_wait_exit``
            announce()
            log.error(f"Error executing {command.cmd} for {ip_str}: {exc}")
            return Outcome(Status.ERROR)
        if timed_out:
            outcome = Outcome(Status.TIMEOUT, child.returncode, stdout, stderr)
        else:
            status = Status.SUCCESS if child.returncode == 0 else Status.FAILURE
            outcome = Outcome(status, child.returncode, stdout, stderr)
        announce()
        _log_outcome(command, ip_str, outcome)
        return outcome

    def _spawn(
        self,
        cmd: str,
        env: dict[str, str],
        out_w: int,
        err_w: int,
        release: int = -1,
        idle: bool = False,
    ) -> _Child:
        """``sh -c cmd`` with stdin /dev/null and the output pipes, in a session of its own, no
        signal blocked and SIGPIPE/SIGXFSZ at their default, PID 1 of a new PID namespace where
        there are namespaces; a warm shell with ``release`` (>= 0) as fd 3. ``idle``: under
        SCHED_IDLE while the spawner can (``IdleRefused`` if the child could not take it)."""
        ns = self._ns
        if ns is not None:
            try:
                ns.enter()
            except OSError as exc:  # e.g. user.max_pid_namespaces reached: run it anyway
                log.error(f"Could not isolate {cmd} in a PID namespace ({exc.strerror})")
                ns = None
        # ``sh -c cmd`` (a warm shell: ``sh -c SCRIPT`` with cmd in its environment, so other
        # users never see the text: ``ruroco.commander.warm``)
        argv = ["sh", "-c", cmd if release < 0 else WARM_SCRIPT]
        try:
            try:
                pid = self._spawner.spawn(self._sh, argv, env, out_w, err_w, release, idle)
            except OSError as exc:
                raise OSError(f"Could not spawn {cmd}: {exc.strerror}") from exc
        except BaseException:
            if ns is not None:
                ns.leave()  # always: this thread's next child must not land in that namespace
            raise
        if ns is not None:
            try:
                ns.leave()
            except OSError:  # never seen in practice; do not lose the child
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise
        return _Child(pid, isolated=ns is not None)

    def _wait(
        self,
        child: _Child,
        timeout_sec: int,
        captures: tuple[_Capture, ...],
        announce: Callable[[], None] | None = None,
    ) -> bool:
        """Drain output until ``sh`` exits and reap it; True when it was killed at the deadline.

        ``announce`` is called once, at the first event or after ``ANNOUNCE_AFTER_SEC``.
        """
        now = time.monotonic()
        deadline = None if timeout_sec > NO_DEADLINE_AFTER_SEC else now + timeout_sec
        announce_at = now + ANNOUNCE_AFTER_SEC
        timed_out = False
        poller = select.poll()
        readers = {c.fd: c for c in captures}
        for fd in readers:
            poller.register(fd, select.POLLIN)
        if child.pidfd >= 0:
            poller.register(child.pidfd, select.POLLIN)
        reap_at = 0.0  # without a pidfd: when to try waitpid next
        while True:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                with self._lock:  # sh is not reaped: its pid (= the group id) is still ours
                    _kill(child)
                timed_out = True
                deadline = None
            wait = _MAX_POLL_SEC if deadline is None else min(deadline - now, _MAX_POLL_SEC)
            if child.pidfd < 0:
                wait = min(wait, max(0.0, reap_at - now))
            if announce is not None:
                wait = min(wait, max(0.0, announce_at - now))
            reap = False
            events = poller.poll(int(wait * 1000) + 1)
            if announce is not None and (events or time.monotonic() >= announce_at):
                announce()
                announce = None
            for fd, _ in events:
                if fd == child.pidfd:
                    reap = True
                elif not readers[fd].read():
                    poller.unregister(fd)
            if child.pidfd < 0 and time.monotonic() >= reap_at:
                reap = True
                reap_at = time.monotonic() + child.poll_delay
                child.poll_delay = min(child.poll_delay * 2, 0.05)
            if reap and self._try_reap(child):
                return timed_out

    def _try_reap(self, child: _Child) -> bool:
        with self._lock:
            try:
                pid, status = os.waitpid(child.pid, os.WNOHANG)
            except ChildProcessError:  # reaped by someone else: the status is lost
                pid, status = child.pid, 255 << 8
            if pid == 0:
                return False
            child.returncode = os.waitstatus_to_exitcode(status)
            self._running.discard(child)
            return True


def _remove_group(started: _Started) -> None:
    """Remove a warm shell's CPU group once its ``sh`` is reaped."""
    if started.group is not None:
        started.group.remove()
        started.group = None


def _can_leave_sched_idle() -> bool:
    """Whether a warm shell may start under SCHED_IDLE: leaving it again (at the release)
    takes CAP_SYS_NICE or an RLIMIT_NICE of 20 (sched(7)); without, warm shells start at the
    commander's own priority (docs/performance.md, "Warm shells")."""
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_NICE)
        if soft == resource.RLIM_INFINITY or soft >= 20:
            return True
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> _CAP_SYS_NICE & 1)
    except (OSError, ValueError):
        pass
    return False


def _close_on_exec_inherited() -> None:
    """Mark descriptors we inherited (not opened by Python) close-on-exec.

    ``posix_spawn`` has no ``close_fds``; this gives commands the same clean table.
    """
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        fds = list(range(3, 256))
    for fd in fds:
        if fd > 2:
            with contextlib.suppress(OSError):
                os.set_inheritable(fd, False)


def _find_sh(path: str) -> str | None:
    """The ``sh`` that ``posix_spawnp`` would run for this ``PATH``, as an absolute path.

    None (search at each spawn, as ``posix_spawnp`` does) when a relative directory comes
    first or no ``sh`` is found. Searching once saves the failed ``execve`` calls that the
    directories before ``sh``'s cost on every spawn.
    """
    for directory in path.split(os.pathsep):
        if not os.path.isabs(directory):
            return None
        candidate = os.path.join(directory, "sh")
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def _pipe(which: str, nonblocking_read: bool = True) -> tuple[int, int]:
    """A close-on-exec pipe whose read end (ours) never blocks; the write end stays blocking.

    ``nonblocking_read=False``: a release pipe, whose read end is the warm shell's fd 3 (a
    shell's ``read`` must block on it)."""
    try:
        r, w = os.pipe2(os.O_CLOEXEC)
    except OSError as exc:
        raise OSError(f"Could not create {which} pipe: {exc.strerror}") from exc
    if nonblocking_read:
        os.set_blocking(r, False)
    return r, w


def _drain(captures: tuple[_Capture, ...], limit_sec: float) -> None:
    """Read what is left after ``sh`` exited, until end of file or ``limit_sec`` passed."""
    poller = select.poll()
    readers = {c.fd: c for c in captures}
    for fd in readers:
        poller.register(fd, select.POLLIN)
    until = time.monotonic() + limit_sec
    while readers:
        remaining = until - time.monotonic()
        if remaining <= 0:
            return
        for fd, _ in poller.poll(int(remaining * 1000) + 1):
            if not readers[fd].read():
                poller.unregister(fd)
                del readers[fd]


def _kill(child: _Child) -> None:
    """SIGKILL a command that is not reaped yet (caller holds the executor lock)."""
    if child.isolated:  # the kernel kills everything else in the namespace
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGKILL)
    else:
        _kill_tree(child.pid)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, signal.SIGKILL)


def _kill_tree(root: int) -> None:
    """SIGKILL ``root`` and every descendant still in its process tree (fallback mode).

    Stop first, kill after: a stopped process cannot fork or reap, so the pids found stay
    valid and no child is re-parented to init (out of reach) because its parent died before
    it was found. Descendants that were re-parented earlier (double fork) are out of reach.
    """
    stopped: set[int] = set()
    give_up = time.monotonic() + _STOP_WAIT_SEC
    while True:
        # All stopped before the scan means none was in the middle of a fork during it.
        settled = all(_stopped(pid) for pid in stopped)
        found = _tree(root) - stopped
        if not found and (settled or time.monotonic() >= give_up):
            break
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        stopped |= found
        if not found:
            time.sleep(0.001)  # for SIGSTOP to take effect
    for pid in stopped:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _tree(root: int) -> set[int]:
    """``root`` and its descendants, from ``/proc/<pid>/task/<tid>/children``."""
    seen = {root}
    todo = [root]
    while todo:
        pid = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{pid}/task/{tid}/children", "rb") as fh:
                    kids = [int(k) for k in fh.read().split()]
            except OSError:
                continue
            for kid in kids:
                if kid not in seen:
                    seen.add(kid)
                    todo.append(kid)
    return seen


def _stopped(pid: int) -> bool:
    """Stopped, dead or gone: in no case forking any more."""
    try:
        state = stat_fields(pid)[0]
    except (OSError, IndexError):
        return True
    return state in (b"T", b"t", b"Z", b"X")


def _joined(wait: Wait) -> Outcome:
    """``start_parts``'s two parts one after the other."""
    return wait()()


def _error_parts() -> Report:
    """The waiting part of a request whose spawn failed (already logged)."""
    return _error_outcome


def _error_outcome() -> Outcome:
    return Outcome(Status.ERROR)


def _log_running(command: Command, ip_str: str) -> None:
    log.info(f"Running command ({command_hash(command.name)}) {command.cmd} for {ip_str}")


def _log_outcome(command: Command, ip_str: str, outcome: Outcome) -> None:
    stdout, stderr = log.escape_capped(outcome.stdout), log.escape_capped(outcome.stderr)
    body = f"{command.cmd} for {ip_str}\nstdout: {stdout}\nstderr: {stderr}"
    if outcome.status is Status.SUCCESS:
        log.info(f"Execution was successful: {body}")
    elif outcome.status is Status.TIMEOUT:
        log.error(f"Execution timed out after {command.timeout_sec}s and was killed: {body}")
    else:
        rc = outcome.returncode
        how = f"killed by signal {-rc}" if rc is not None and rc < 0 else f"exit status {rc}"
        log.error(f"Execution was not successful ({how}): {body}")
