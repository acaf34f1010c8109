"""The replay counter file: 16 raw bytes, a big-endian u128, one per conf dir.

The format is in docs/files.md, "Counter file".

Only a missing file is seeded. Any other read failure is fatal and leaves the file alone,
because silently reseeding could move a legitimately future-dated counter backwards and turn
every later packet into a replay. Every change is persisted atomically before it is used.
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
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CounterError(f"Could not read counter file {qpath(path)}") from exc
    try:
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
    return int.from_bytes(data, "big")


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


def reseed(path: str, value: int | None = None) -> int:
    """Unconditionally overwrite the counter with ``value`` (default: now in ns)."""
    value = time.time_ns() if value is None else value
    write_counter(path, value)
    return value
