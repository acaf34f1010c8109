"""``posix_spawn(3)`` of ``sh`` without holding the GIL (docs/performance.md, "Warm shells").

``os.posix_spawn`` holds the GIL for the whole call, and glibc's ``posix_spawn`` returns only
once the child has called ``execve`` (vfork semantics), which takes 0.2–1 ms (measured: another
thread made no progress at all meanwhile). In the commander that stops the accepting thread and
every worker for as long, which matters once spawns happen beside requests: the warm thread
spawns a replacement shell while the next request is being handled. Through ctypes the same
libc call runs with the GIL released, so the other threads go on.

The spawn is the one ``os.posix_spawn(..., setsid=True, setsigmask=(), setsigdef=...)`` made
before: file actions in order (stdin ``/dev/null``, stdout and stderr the pipes, and for a warm
shell its release pipe as fd 3), a session and process group of its own, no blocked signals,
and the signals Python ignores reset to their default action.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import threading
from typing import Any

from ruroco.commander.warm import RELEASE_FD

# glibc's <spawn.h> (musl uses the same values).
_POSIX_SPAWN_SETSIGDEF = 0x04
_POSIX_SPAWN_SETSIGMASK = 0x08
_POSIX_SPAWN_SETSCHEDULER = 0x20
_POSIX_SPAWN_SETSID = 0x80
# Room for posix_spawnattr_t (336 bytes on x86-64 glibc), posix_spawn_file_actions_t (80) and
# sigset_t (128): generous, so no libc build can overrun them.
_OPAQUE = 1024
# Python ignores SIGPIPE and SIGXFSZ; ignored signals survive exec, so reset them as Popen does.
DEFAULT_SIGNALS = tuple(
    s for s in (getattr(signal, "SIGPIPE", None), getattr(signal, "SIGXFSZ", None)) if s
)

_CharArray = Any  # a ctypes ``char *[]``


class IdleRefused(Exception):
    """An ``idle`` spawn's child could not take SCHED_IDLE and exited before its exec: spawn
    again without it (``Spawner.idle_works`` is False from now on)."""


class Spawner:
    """One set of spawn attributes for the executor's lifetime; ``spawn`` is thread-safe (the
    attributes are only read by libc)."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self._spawn: Any = libc.posix_spawn
        self._spawnp: Any = libc.posix_spawnp
        for fn in (self._spawn, self._spawnp):
            fn.argtypes = [
                ctypes.POINTER(ctypes.c_int),
                ctypes.c_char_p,
                ctypes.c_void_p,
                ctypes.c_void_p,
                ctypes.POINTER(ctypes.c_char_p),
                ctypes.POINTER(ctypes.c_char_p),
            ]
            fn.restype = ctypes.c_int
        self._fa_init: Any = libc.posix_spawn_file_actions_init
        self._fa_destroy: Any = libc.posix_spawn_file_actions_destroy
        self._fa_open: Any = libc.posix_spawn_file_actions_addopen
        self._fa_open.argtypes = [
            ctypes.c_void_p,
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_int,
            ctypes.c_uint,
        ]
        self._fa_dup2: Any = libc.posix_spawn_file_actions_adddup2
        self._fa_dup2.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        mask = ctypes.create_string_buffer(_OPAQUE)
        defaults = ctypes.create_string_buffer(_OPAQUE)
        _check(libc.sigemptyset(mask), "sigemptyset")
        _check(libc.sigemptyset(defaults), "sigemptyset")
        for signum in DEFAULT_SIGNALS:
            _check(libc.sigaddset(defaults, int(signum)), "sigaddset")
        flags = _POSIX_SPAWN_SETSID | _POSIX_SPAWN_SETSIGMASK | _POSIX_SPAWN_SETSIGDEF
        self._attr = _attributes(libc, mask, defaults, flags)
        # The same attributes plus SCHED_IDLE, taken by the child before it execs. On Linux
        # 6.18 that orders a warm shell's start-up only against its own scheduling group (its
        # session's autogroup, or the commander's cgroup where the cpu controller is on), not
        # against the server: docs/performance.md, "Back to back: the replacement shell".
        self._idle_attr = _attributes(libc, mask, defaults, flags | _POSIX_SPAWN_SETSCHEDULER)
        # False when the attributes cannot carry SCHED_IDLE, or once a child could not take it
        # (a seccomp filter, say): ``idle`` spawns then start at the caller's policy.
        self.idle_works = _set_idle_policy(libc, self._idle_attr)
        # The last environment encoded and its C array: warm shells of one command share an
        # environment (the commander's, plus the command text), so a command's refills encode
        # it once; other environments replace it.
        self._env_lock = threading.Lock()
        self._env_items: tuple[tuple[str, str], ...] = ()
        self._env_array: _CharArray = None

    def spawn(
        self,
        sh: str | None,
        argv: list[str],
        env: dict[str, str],
        out_w: int,
        err_w: int,
        release: int = -1,
        idle: bool = False,
    ) -> int:
        """Spawn ``argv`` (``sh`` by absolute path, or searched on PATH when None) with stdin
        /dev/null, stdout ``out_w``, stderr ``err_w`` and, if given, ``release`` as fd 3;
        returns the pid. ``idle`` (while ``idle_works``): the child takes SCHED_IDLE before it
        execs. ``OSError`` with the errno of a failed spawn (e.g. ENOENT); ``IdleRefused`` when
        the child could not take SCHED_IDLE (EPERM, EINVAL or ENOSYS before its exec)."""
        if not (idle and self.idle_works):
            return self._spawn_with(self._attr, sh, argv, env, out_w, err_w, release)
        try:
            return self._spawn_with(self._idle_attr, sh, argv, env, out_w, err_w, release)
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EINVAL, errno.ENOSYS):
                raise
            self.idle_works = False  # a seccomp filter, say: no later spawn asks for it
            raise IdleRefused from exc

    def _spawn_with(
        self,
        attr: Any,
        sh: str | None,
        argv: list[str],
        env: dict[str, str],
        out_w: int,
        err_w: int,
        release: int,
    ) -> int:
        fa = ctypes.create_string_buffer(_OPAQUE)
        _check(self._fa_init(fa), "posix_spawn_file_actions_init")
        try:
            _check(self._fa_open(fa, 0, os.fsencode(os.devnull), os.O_RDWR, 0), "addopen stdin")
            _check(self._fa_dup2(fa, out_w, 1), "adddup2 stdout")
            _check(self._fa_dup2(fa, err_w, 2), "adddup2 stderr")
            if release >= 0:  # onto itself (it is fd 3 already): glibc clears close-on-exec
                _check(self._fa_dup2(fa, release, RELEASE_FD), "adddup2 release")
            pid = ctypes.c_int(0)
            call = self._spawnp if sh is None else self._spawn
            # The GIL is released for the call: other threads run while the child execs.
            err = call(
                ctypes.byref(pid),
                os.fsencode(sh or "sh"),
                fa,
                attr,
                _strings([os.fsencode(a) for a in argv]),
                self._environment(env),
            )
        finally:
            self._fa_destroy(fa)
        if err:
            raise OSError(err, os.strerror(err))
        return pid.value

    def _environment(self, env: dict[str, str]) -> _CharArray:
        """``env`` as a C ``KEY=VALUE`` array; the last one is reused while ``env`` holds the
        same items (compared by value, so a changed dict is never served a stale array)."""
        items = tuple(env.items())
        with self._env_lock:
            if items == self._env_items and self._env_array is not None:
                return self._env_array
        array = _strings([os.fsencode(f"{k}={v}") for k, v in items])
        with self._env_lock:
            self._env_items, self._env_array = items, array
        return array


def _attributes(libc: Any, mask: Any, defaults: Any, flags: int) -> Any:
    """A ``posix_spawnattr_t`` with that signal mask, those signals at their default, ``flags``."""
    attr = ctypes.create_string_buffer(_OPAQUE)
    _check(libc.posix_spawnattr_init(attr), "posix_spawnattr_init")
    _check(libc.posix_spawnattr_setsigmask(attr, mask), "posix_spawnattr_setsigmask")
    _check(libc.posix_spawnattr_setsigdefault(attr, defaults), "posix_spawnattr_setsigdefault")
    _check(libc.posix_spawnattr_setflags(attr, ctypes.c_short(flags)), "setflags")
    return attr


class _GlibcSpawnAttr(ctypes.Structure):
    """The start of glibc's ``posix_spawnattr_t`` (<spawn.h>; musl's has the same offsets)."""

    _fields_ = [
        ("flags", ctypes.c_short),
        ("pgrp", ctypes.c_int),
        ("sd", ctypes.c_ubyte * 128),
        ("ss", ctypes.c_ubyte * 128),
        ("priority", ctypes.c_int),
        ("policy", ctypes.c_int),
    ]


def _set_idle_policy(libc: Any, attr: Any) -> bool:
    """Make ``attr`` ask for SCHED_IDLE (priority 0); False when it cannot be done.

    ``posix_spawnattr_setschedpolicy`` refuses SCHED_IDLE (glibc accepts only SCHED_OTHER,
    SCHED_FIFO and SCHED_RR, with EINVAL), but the child passes the stored policy to
    ``sched_setscheduler`` as it is. So the policy is stored directly, at the field's offset in
    the structure, and only where that offset is proven first: the field must follow two
    policies set through the API, and the API must read SCHED_IDLE back afterwards.
    """
    view = _GlibcSpawnAttr.from_buffer(attr)
    for policy in (os.SCHED_FIFO, os.SCHED_OTHER):
        if libc.posix_spawnattr_setschedpolicy(attr, policy) != 0 or view.policy != policy:
            return False
    param = ctypes.c_int(0)  # struct sched_param: the priority, 0 for SCHED_IDLE
    if libc.posix_spawnattr_setschedparam(attr, ctypes.byref(param)) != 0:
        return False
    view.policy = os.SCHED_IDLE
    stored = ctypes.c_int(-1)
    if libc.posix_spawnattr_getschedpolicy(attr, ctypes.byref(stored)) != 0:
        return False
    return stored.value == os.SCHED_IDLE


def _strings(items: list[bytes]) -> _CharArray:
    """A NULL-terminated ``char *[]`` (the bytes objects stay referenced by the array)."""
    return (ctypes.c_char_p * (len(items) + 1))(*items, None)


def _check(result: int, what: str) -> None:
    """libc's spawn helpers return 0 or an errno value (sigemptyset/sigaddset: 0 or -1)."""
    if result != 0:
        err = result if result > 0 else ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
