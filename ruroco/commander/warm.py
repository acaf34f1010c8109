"""Warm shells: ``sh`` per configured command, spawned ahead and waiting to be released
(docs/performance.md, "Warm shells"; docs/deviations.md #24).

Starting ``sh`` (fork, exec, dynamic linking, shell start-up) is most of a knock's latency, and
fwknopd pays it too; it is the one cost that need not be on the critical path. So for each
command name the executor keeps ``SHELLS_PER_COMMAND`` ``sh`` spawned exactly as it spawns a
command (same environment, cwd, output pipes, PID namespace, signals, session), but with one
more descriptor: fd 3, the read end of a pipe whose write end only the commander holds
(close-on-exec). The shell's script is ``SCRIPT``, the same for every command: it blocks
reading one line from fd 3, closes fd 3, exports what it read as ``RUROCO_IP`` and ``eval``s
the command text, which it finds in the variable ``COMMAND_VARIABLE`` and unsets first (same
``$0``, ``$#`` = 0, no other variable set).

The text travels in the environment, not in argv, because a waiting shell may wait for days:
every local user can read any process's argv (``ps``), while ``/proc/PID/environ`` is
readable by root only, and ``commands.toml`` is root's (docs/security.md, "Commands").

* **Release**: the commander writes the validated ``ip_text`` and a newline, and closes its end.
  Nothing else from a request reaches the shell; the command text comes from commands.toml.
* **End**: the commander closes its end without writing: ``read`` meets end of file and the
  shell exits without running anything. That is also what happens when the commander dies
  (``kill -9``): the kernel closes the write end, and no shell outlives it idle.
* A shell that died before its release (killed) is noticed at the release, which then falls
  back to a cold spawn, so the fast path is never needed for correctness. The text is parsed
  only once released (by ``eval``), so a syntax error fails there, as it would cold.
* A text that starts with ``-`` or ``+`` never gets a warm shell (``takes_warm``): ``sh -c``
  reads it as options, ``eval`` would run it.

This module keeps the pool (which names want a shell, which shell waits for which name) and is
independent of how a shell is spawned, released or ended: ``ruroco.commander.executor`` does
that with the same code as a cold spawn. Only commands get warm shells, never grants (they run
``nft`` without a shell).
"""

from __future__ import annotations

import resource
import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Generic, Protocol, TypeVar

from ruroco import log
from ruroco.commander.commands import Command

# At most this many command names keep warm shells (the first ones in commands.toml); the
# others are spawned at request time. Each warm shell is one idle ``sh`` (docs/performance.md)
# and holds ``FDS_PER_SHELL`` descriptors in the commander (two output pipes, the release
# pipe, a pidfd); warm shells never take more than half of the commander's descriptor limit
# (``cap``), so requests and running commands keep the other half.
MAX_WARM_COMMANDS = 64
FDS_PER_SHELL = 4
# Warm shells per command name: the one a request releases, and spares for the requests that
# come right after it. A released shell's replacement is spawned once its command has run and
# takes 0.5-1 ms to be handed over (glibc's posix_spawn returns after the child's exec, which
# runs under SCHED_IDLE), about a knock's round trip back to back. With one shell per command
# release -> byte was ~530 us back to back, against ~220-290 us with two; with two, 3-4 % of
# back-to-back knocks still found none started and spawned cold (~1 ms more), with three
# 0.4 % (docs/performance.md, "Warm shells").
SHELLS_PER_COMMAND = 3
# The descriptor the shell reads its release line from.
RELEASE_FD = 3
# Where a warm shell finds its command text (in its environment, set only by the spawn).
COMMAND_VARIABLE = "RUROCO_WARM_COMMAND"
# Read the release line (or end of file: exit without running anything), close fd 3, export
# the address, run the command text. ``IFS=`` only applies to ``read`` (a regular builtin);
# the argument of ``eval`` is expanded before it runs, so the text is still there when
# ``unset`` removes the variable: no variable but RUROCO_IP is left set, none is passed on.
SCRIPT = (
    f"IFS= read -r RUROCO_IP <&{RELEASE_FD} || exit 0; exec {RELEASE_FD}<&-; export RUROCO_IP; "
    f'eval "unset {COMMAND_VARIABLE}; ${COMMAND_VARIABLE}"'
)


def cap(depth: int) -> int:
    """How many command names may keep ``depth`` warm shells each: ``MAX_WARM_COMMANDS``, or
    fewer where half of RLIMIT_NOFILE's soft limit would not hold their descriptors."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_WARM_COMMANDS
    return max(0, min(MAX_WARM_COMMANDS, soft // 2 // (FDS_PER_SHELL * depth)))


def takes_warm(cmd: str) -> bool:
    """Whether a warm shell runs ``cmd`` as ``sh -c cmd`` would. Not a text that starts with
    ``-`` or ``+``: ``sh -c -x`` reads it as options (and fails), ``eval`` would run it."""
    return not cmd.startswith(("-", "+"))


def environment(env: dict[str, str], cmd: str) -> dict[str, str]:
    """The environment of a warm shell for the command text ``cmd`` (``sh -c SCRIPT``)."""
    return {**env, COMMAND_VARIABLE: cmd}


class Shell(Protocol):
    """What the pool needs of a warm shell: the command text it would run, and an end."""

    @property
    def cmd(self) -> str: ...

    def end(self) -> None:
        """Close the release pipe unwritten, make sure the shell is gone, reap it."""


S = TypeVar("S", bound=Shell)


class WarmShells(Generic[S]):
    """Which command names want warm shells, the shells waiting for each, and the thread that
    spawns them.

    ``take`` runs at a request (the accepting thread or a worker), ``refill_later`` after a
    release, ``configure`` and ``close`` on the commander's loop. Spawning happens on a thread of
    its own (``ruroco-warm``), so neither a request nor the worker that waits for a released
    command (and keeps its name's next request queued until it is done) ever waits for a spawn.
    A lock guards the tables; spawning and ending happen outside it.
    """

    def __init__(self, spawn: Callable[[Command], S], depth: int = SHELLS_PER_COMMAND) -> None:
        self._spawn = spawn
        self.depth = depth
        self._cond = threading.Condition()
        self._wanted: dict[str, Command] = {}
        self._shells: dict[str, deque[S]] = {}
        self._spawning: dict[str, int] = {}
        self._todo: dict[str, None] = {}  # names to refill, in order
        self._thread: threading.Thread | None = None

    def configure(self, commands: Iterable[Command], enabled: bool = True) -> None:
        """Want warm shells for the first ``cap`` of ``commands`` (none when not ``enabled``):
        shells of names no longer wanted, or whose command text changed, are ended unreleased
        now; missing ones are spawned by the warm thread."""
        wanted: dict[str, Command] = {}
        if enabled:
            limit = cap(self.depth)
            for command in commands:
                if len(wanted) >= limit:
                    break
                if not takes_warm(command.cmd):
                    continue
                wanted[command.name] = command
        with self._cond:
            self._wanted = wanted
            stale = [
                name
                for name, shells in self._shells.items()
                if name not in wanted or wanted[name].cmd != shells[0].cmd
            ]
            ended = [shell for name in stale for shell in self._shells.pop(name)]
        for shell in ended:
            shell.end()
        for name in wanted:
            self.refill_later(name)

    def wanted(self) -> int:
        """How many command names keep warm shells."""
        with self._cond:
            return len(self._wanted)

    def waiting(self) -> int:
        """How many warm shells wait right now."""
        with self._cond:
            return sum(len(shells) for shells in self._shells.values())

    def take(self, command: Command) -> S | None:
        """The oldest warm shell of ``command``'s name if it would run the same text; the caller
        now owns it (releases or ends it). None: spawn cold."""
        with self._cond:
            shells = self._shells.get(command.name)
            if not shells or shells[0].cmd != command.cmd:
                return None
            shell = shells.popleft()
            if not shells:
                del self._shells[command.name]
            return shell

    def refill_later(self, name: str) -> None:
        """Have the warm thread bring ``name`` back to ``depth`` shells (if it wants any)."""
        with self._cond:
            if name not in self._wanted:
                return
            self._todo[name] = None
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ruroco-warm", daemon=True)
                try:
                    self._thread.start()
                except RuntimeError as exc:  # no thread: requests spawn cold
                    self._thread = None
                    self._todo.clear()
                    log.error(f"Could not start the warm shell thread: {exc}")
                    return
            self._cond.notify()

    def close(self) -> None:
        """End every warm shell, unreleased, and stop the warm thread (a spawn under way is
        ended by it); nothing is spawned until the next ``configure``."""
        with self._cond:
            self._wanted = {}
            self._todo.clear()
            ended = [shell for shells in self._shells.values() for shell in shells]
            self._shells.clear()
            thread = self._thread
            self._cond.notify_all()
        for shell in ended:
            shell.end()
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _run(self) -> None:
        """The warm thread: refill names as they are queued; ends when nothing is wanted."""
        while True:
            with self._cond:
                while not self._todo and self._wanted:
                    self._cond.wait()
                if not self._wanted:
                    self._thread = None
                    return
                name = next(iter(self._todo))
                del self._todo[name]
            self._refill(name)

    def _refill(self, name: str) -> None:
        """Spawn warm shells for ``name`` until it has ``depth`` (counting those being
        spawned); nothing if it wants none. A failed spawn is one log line, and the name is
        tried again at its next request."""
        while True:
            with self._cond:
                command = self._wanted.get(name)
                have = len(self._shells.get(name, ())) + self._spawning.get(name, 0)
                if command is None or have >= self.depth:
                    return
                self._spawning[name] = self._spawning.get(name, 0) + 1
            shell: S | None = None
            kept = False
            try:
                shell = self._spawn(command)
            except Exception as exc:  # the request path does not depend on it: cold spawns work
                log.error(f"Could not keep a warm shell for command {name}: {exc}")
            finally:
                with self._cond:
                    self._spawning[name] -= 1
                    if not self._spawning[name]:
                        del self._spawning[name]
                    want = self._wanted.get(name)
                    if shell is not None and want is not None and want.cmd == shell.cmd:
                        self._shells.setdefault(name, deque()).append(shell)
                        kept = True
            if not kept:  # failed, or a reload or close came in between
                if shell is not None:
                    shell.end()
                return
