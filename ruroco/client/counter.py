"""The replay counter file: 16 raw bytes, a big-endian u128, one per conf dir.

The format is in docs/files.md, "Counter file".

Only a missing file is seeded. Any other read failure is fatal and leaves the file alone,
because silently reseeding could move a legitimately future-dated counter backwards and turn
every later packet into a replay. Every change is persisted atomically before it is used.

``send`` takes its values through ``Reserved``: a process that knocks again reserves a range
ahead with one write and hands the rest out from memory while the file still holds that
range's end (docs/files.md, "Counter reservation").
"""

from __future__ import annotations

import os
import time

from ruroco.errors import RurocoError, qpath
from ruroco.fs import write_atomic
from ruroco.limits import U128_MAX

COUNTER_FILE = "counter"
COUNTER_SIZE = 16
OVERFLOW_MESSAGE = (
    f"counter overflow: value has reached u128::MAX ({U128_MAX}) and cannot be incremented"
)


class CounterError(RurocoError):
    """The counter file cannot be read or written, or the counter is exhausted."""


def counter_path(conf_dir: str | os.PathLike[str]) -> str:
    """``resolve_path(conf_dir)/counter``; absolute dirs skip resolve_path (a no-op for them)."""
    text = os.fspath(conf_dir)
    if os.path.isabs(text):
        return os.path.join(text, COUNTER_FILE)
    from ruroco.fs import resolve_path

    return os.path.join(os.fspath(resolve_path(text)), COUNTER_FILE)


def encode(value: int) -> bytes:
    return value.to_bytes(COUNTER_SIZE, "big")


def read_counter(path: str) -> int | None:
    """The stored value, or ``None`` only when the file does not exist (ENOENT)."""
    state = read_state(path)
    return None if state is None else state[0]


Identity = tuple[int, int, int, int]


def identity(st: os.stat_result) -> Identity:
    """Which write a counter file came from: every atomic write makes a new inode, and a write
    in place (or a rename, chmod, touch) changes its times; so an unchanged identity means
    nobody wrote the file since it was taken (docs/files.md, "Counter reservation")."""
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)


def read_state(path: str) -> tuple[int, Identity] | None:
    """The stored value and the file's ``identity``; ``None`` only when it does not exist."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CounterError(f"Could not read counter file {qpath(path)}") from exc
    try:
        which = identity(os.fstat(fd))
        data = b""
        while len(data) < COUNTER_SIZE:  # read_exact: only the first 16 bytes count
            chunk = os.read(fd, COUNTER_SIZE - len(data))
            if not chunk:
                raise CounterError(f"Could not read counter file {qpath(path)}") from EOFError(
                    "failed to fill whole buffer"
                )
            data += chunk
    except OSError as exc:
        raise CounterError(f"Could not read counter file {qpath(path)}") from exc
    finally:
        os.close(fd)
    return int.from_bytes(data, "big"), which


def write_counter(path: str, value: int) -> None:
    if not 0 <= value <= U128_MAX:
        raise CounterError(f"Counter value {value} does not fit in 128 bits")
    try:
        write_atomic(path, encode(value))
    except RurocoError as exc:
        raise CounterError(f"Could not write counter file {qpath(path)}") from exc


class Counter:
    """The in-memory value of one counter file; every increment is on disk before it is used."""

    __slots__ = ("path", "value")

    def __init__(self, path: str, value: int) -> None:
        self.path = path
        self.value = value

    @classmethod
    def create_and_init(cls, path: str, seed: int | None = None) -> Counter:
        """Load ``path``; seed it with ``seed`` (default: now in ns) only if it does not exist."""
        value = read_counter(path)
        if value is None:
            value = time.time_ns() if seed is None else seed
            write_counter(path, value)
        return cls(path, value)

    def increment(self) -> int:
        """Advance by one and persist; the new value is returned only once it is on disk."""
        if self.value >= U128_MAX:
            raise CounterError(OVERFLOW_MESSAGE)
        write_counter(self.path, self.value + 1)
        self.value += 1
        return self.value

    def take(self, n: int) -> int:
        """Reserve the next ``n`` values with one write; returns the first of them.

        ``connect`` knocks over both address families at once: two values, one fsync'd
        write, so its short hold of the client lock stays one write long."""
        if n < 1:
            raise ValueError("take at least one value")
        if self.value > U128_MAX - n:
            raise CounterError(OVERFLOW_MESSAGE)
        write_counter(self.path, self.value + n)
        first = self.value + 1
        self.value += n
        return first

    def __repr__(self) -> str:
        return f"Counter(path={qpath(self.path)}, value={self.value})"


RESERVE_AHEAD = 1000
"""Values a process reserves with one write once it knocks a second time on a conf dir: the
write's cost is shared by 1,000 knocks, and an unused rest skips 1 µs of counter time
(docs/files.md, "Counter reservation", why that is harmless and cannot reach the server's
future limit)."""


class _Reservation:
    """Values ``last + 1 … ceiling`` that this process may still hand out, valid only while
    the file holds ``ceiling`` from the write with ``identity`` (ours)."""

    __slots__ = ("ceiling", "identity", "last", "pid")

    def __init__(self, last: int, ceiling: int, which: Identity | None) -> None:
        self.last = last
        self.ceiling = ceiling
        self.identity = which
        self.pid = os.getpid()


# Per counter path, this process's reservation; an entry also records that the process has
# knocked on that path before. A forked child starts without any: parent and child would
# otherwise hand out the same values (the pid check covers forks that bypass os.fork).
_reservations: dict[str, _Reservation] = {}


def forget_reservations() -> None:
    """Drop every reservation of this process (a forked child's first act; tests)."""
    _reservations.clear()


os.register_at_fork(after_in_child=forget_reservations)


class Reserved:
    """The counter of one conf dir during one ``send``; the caller holds the client lock.

    Created, it reads the file (seeding a missing one, errors as ``Counter``). ``next`` hands
    out a value from this process's reservation if the file is still exactly as its
    reservation write left it, i.e. no other client has taken a value since; otherwise it
    reserves afresh from the file's value and persists the range's end before returning.
    """

    __slots__ = ("identity", "last", "path", "value")

    def __init__(self, path: str, seed: int | None = None) -> None:
        self.path = path
        self.identity: Identity | None
        state = read_state(path)
        if state is None:
            self.value = time.time_ns() if seed is None else seed
            write_counter(path, self.value)
            self.identity = _identity_after_write(path)
        else:  # the file as this send found (or left) it
            self.value, self.identity = state
        self.last = self.value  # the last value this send handed out (the file's before one)

    def next(self, want: int = 1) -> int:
        """A fresh value; ``want`` (>= 1) says how many this ``send`` still needs, so a first
        knock writes once for all its destinations and nothing more."""
        if want < 1:
            raise ValueError("want at least one value")
        held = _reservations.get(self.path)
        mine = held is not None and held.pid == os.getpid()
        if (
            held is not None
            and mine
            and held.last < held.ceiling == self.value
            and held.identity == self.identity
        ):
            held.last += 1
            self.last = held.last
            return held.last
        if self.value >= U128_MAX:
            raise CounterError(OVERFLOW_MESSAGE)
        ahead = max(want, RESERVE_AHEAD) if mine else want
        ceiling = min(self.value + ahead, U128_MAX)
        write_counter(self.path, ceiling)
        first = self.value + 1
        self.value, self.identity = ceiling, _identity_after_write(self.path)
        _reservations[self.path] = _Reservation(first, ceiling, self.identity)
        self.last = first
        return first

    def __repr__(self) -> str:
        return f"Reserved(path={qpath(self.path)}, value={self.value}, last={self.last})"


def _identity_after_write(path: str) -> Identity | None:
    """The identity of the file just written; ``None`` (no reservation will match) if it
    cannot be read, which only costs the next knock a write."""
    try:
        return identity(os.stat(path))
    except OSError:
        return None


def reseed(path: str, value: int | None = None) -> int:
    """Unconditionally overwrite the counter with ``value`` (default: now in ns)."""
    value = time.time_ns() if value is None else value
    write_counter(path, value)
    return value
