"""The replay counter file: 16 raw bytes, a big-endian u128, one per conf dir.

The format is in docs/files.md, "Counter file".

Only a missing file is seeded. Any other read failure is fatal and leaves the file alone,
because silently reseeding could move a legitimately future-dated counter backwards and turn
every later packet into a replay. Every change is persisted atomically before it is used.

``send`` takes its values through ``Reserved``: when knocks come in series on a conf dir, one
write reserves a range ahead, and ``counter.next`` (page cache only, tied to the boot and to
exactly that write of the file) lets any process, a forked Ansible worker too, hand out the
rest without a write of the counter file (docs/files.md, "Counter reservation").
"""

from __future__ import annotations

import binascii
import os
import stat
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


Identity = tuple[int, int, int, int, int]


def identity(st: os.stat_result) -> Identity:
    """Which write a counter file came from: every atomic write makes a new inode, and a write
    in place (or a rename, chmod, touch) changes its times; so an unchanged identity (with an
    unchanged value) means nobody wrote the file since (docs/files.md, "Counter reservation")."""
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)


class NotOurs(Exception):
    """Why a counter file is refused without reading it (the cause in its error)."""


def read_state(path: str) -> tuple[int, Identity] | None:
    """The stored value and the file's ``identity``; ``None`` only when it does not exist.

    Only a regular file of this user or of root is read (root reads anyone's), never through
    a link: a counter that someone else put there (in a directory they can write) would have
    the client read 16 bytes of any file it can read and write them back, plus one
    (docs/security.md, "The client's files"). ``O_NONBLOCK``: a FIFO is refused, not waited
    on."""
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if os.path.islink(path):
            raise CounterError(f"Could not read counter file {qpath(path)}") from NotOurs(
                "it is a symbolic link, not a regular file of this user"
            )
        raise CounterError(f"Could not read counter file {qpath(path)}") from exc
    try:
        st = os.fstat(fd)
        euid = os.geteuid()
        # A directory of ours fails at the read below, with the OS cause as in the original.
        kind_ok = stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)
        # Root's file is fine too: nobody else could have put it there (``sudo ruroco-client
        # reseed`` in a user's conf dir leaves one; the user's next write takes it back).
        if not kind_ok or (st.st_uid not in (euid, 0) and euid != 0):
            raise CounterError(f"Could not read counter file {qpath(path)}") from NotOurs(
                "it is not a regular file of this user"
            )
        which = identity(st)
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
"""Values a knock reserves with one write when the previous knock on the conf dir in this
boot, by any process, used up its range: the write's cost is shared by 1,000 knocks, and an
unused rest skips 1 µs of counter time (docs/files.md, "Counter reservation", why that is
harmless and cannot reach the server's future limit)."""

BOOT_ID_FILE = "/proc/sys/kernel/random/boot_id"
_LAST_DIGITS = 39  # U128_MAX has 39 digits: the record keeps its length as the value grows
_NOT_READ = b""
_boot_id: bytes | None = _NOT_READ


def boot_id() -> bytes | None:
    """This boot's id (new at every boot, the same in every process); ``None`` without
    procfs, and then no knock shares a range. Read once per process."""
    global _boot_id
    if _boot_id is _NOT_READ:
        try:
            fd = os.open(BOOT_ID_FILE, os.O_RDONLY | os.O_CLOEXEC)
            try:
                text = os.read(fd, 64).strip()
            finally:
                os.close(fd)
        except OSError:
            text = b""
        _boot_id = text or None
    return _boot_id


def next_path(path: str) -> str:
    """``counter.next`` beside the counter file: how far the range the counter file holds has
    been handed out, this boot, kept in the page cache (docs/files.md, "counter.next")."""
    return f"{path}.next"


def _open_next(path: str) -> int | None:
    """The shared reservation's file, created if missing (mode 0600); ``None`` if it cannot
    be opened or is not a regular file of ours that nobody else may write: a link, a FIFO,
    another user's file are never read or written (docs/files.md, "counter.next")."""
    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        fd = os.open(path, flags, 0o600)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o022:
            return fd
    except OSError:
        pass
    os.close(fd)
    return None


def _record_key(boot: bytes, which: Identity, ceiling: int) -> bytes:
    """What a record belongs to: this boot and the counter file holding ``ceiling`` with
    identity ``which``; a record is valid only while both are exactly as now."""
    return b"%s %d %d %d %d %d %d " % (boot, *which, ceiling)


def _record(key: bytes, last: int) -> bytes:
    body = b"%s%0*d" % (key, _LAST_DIGITS, last)
    return b"%s %08x\n" % (body, binascii.crc32(body))


def _load_last(fd: int, key: bytes) -> int | None:
    """The last value handed out of the range ``key`` names, if the file is a whole record of
    it; ``None`` for anything else (empty, torn, garbled, another boot or counter file)."""
    try:
        data = os.pread(fd, 1024, 0)
    except OSError:
        return None
    digits = data[len(key) : -10]
    if (
        len(data) != len(key) + _LAST_DIGITS + 10
        or not data.startswith(key)
        or not digits.isdigit()
        or data[-10:] != b" %08x\n" % binascii.crc32(data[:-10])
    ):
        return None
    return int(digits)


def _store(fd: int, record: bytes) -> bool:
    """Write ``record`` over the file in place (no fsync: it lives in the page cache, and a
    crash changes the boot id); ``False`` unless all of it was written."""
    try:
        if os.pwrite(fd, record, 0) != len(record):
            return False
        if os.fstat(fd).st_size != len(record):
            os.ftruncate(fd, len(record))
    except OSError:
        return False
    return True


class Reserved:
    """The counter of one conf dir during one ``send``; the caller holds the client lock.

    Created, it reads the file (seeding a missing one, errors as ``Counter``). ``next`` hands
    out the next value of the range the file holds, as ``counter.next`` records it for this
    boot and exactly this file (any process's range); otherwise it reserves afresh from the
    file's value and persists the range's end before returning (docs/files.md, "Counter
    reservation"). ``reserve_ahead`` False (``ruroco-client send``) takes from an open range
    but never opens one, so a row of such knocks leaves the file at the last value used.
    """

    __slots__ = ("ahead", "identity", "last", "path", "value")

    def __init__(self, path: str, seed: int | None = None, reserve_ahead: bool = True) -> None:
        self.path = path
        self.ahead = RESERVE_AHEAD if reserve_ahead else 1
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
        """A fresh value; ``want`` (>= 1) says how many this ``send`` still needs, so a knock
        that must write writes once for all its destinations."""
        if want < 1:
            raise ValueError("want at least one value")
        boot, fd, key = boot_id(), None, b""
        if boot is not None and self.identity is not None:
            fd = _open_next(next_path(self.path))
            key = _record_key(boot, self.identity, self.value)
        try:
            last = None if fd is None else _load_last(fd, key)
            if (
                fd is not None
                and last is not None
                and last < self.value  # the range has a value left
                and _store(fd, _record(key, last + 1))  # recorded as used before it is
            ):
                self.last = last + 1
                return self.last
            if self.value >= U128_MAX:
                raise CounterError(OVERFLOW_MESSAGE)
            # The previous knock used up its range (still this file, this boot): knocks come
            # in series here, so reserve ahead; otherwise take only what this send needs.
            ahead = max(want, self.ahead) if last == self.value else want
            ceiling = min(self.value + ahead, U128_MAX)
            write_counter(self.path, ceiling)
            first = self.value + 1
            self.value, self.identity = ceiling, _identity_after_write(self.path)
            if fd is not None and boot is not None and self.identity is not None:
                _store(fd, _record(_record_key(boot, self.identity, ceiling), first))
            self.last = first
            return first
        finally:
            if fd is not None:
                os.close(fd)

    def __repr__(self) -> str:
        return f"Reserved(path={qpath(self.path)}, value={self.value}, last={self.last})"


def _identity_after_write(path: str) -> Identity | None:
    """The identity of the file just written; ``None`` (no record will match) if it cannot
    be read, which only costs the next knock a write."""
    try:
        return identity(os.stat(path))
    except OSError:
        return None


def reseed(path: str, value: int | None = None) -> int:
    """Unconditionally overwrite the counter with ``value`` (default: now in ns)."""
    value = time.time_ns() if value is None else value
    write_counter(path, value)
    return value
