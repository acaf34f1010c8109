"""Per-key replay floors and their msgpack file (docs/files.md, blocklist.msgpck).

The floor of a key is the highest counter accepted so far (or the startup time for a new
key); a counter at or below it is a replay. The file layout is the original's rmp-serde
compact encoding, so a ``blocklist.msgpck`` moves between us and its development line as is:
``[ { [b0, …, b7]: bin8(16-byte big-endian u128), … } ]``. Release 0.14.2's file, which adds
the file's path as a second element, is read too; it is never written (see ``_struct_field_map``).

The floors in memory are one dict, shared by the ``Blocklist`` (which writes it) and the
server's sans-IO ``Decision`` (which raises a floor when it accepts a packet). The server
saves the dict *before* the command is forwarded: if the write fails, the decision rolls the
floor back and nothing runs, so a crash can never make an already executed packet
acceptable again.

How a save reaches the disk (docs/files.md, blocklist.msgpck; the power-loss argument is in
docs/performance.md): while the key set and its order are those of the file on disk, every
value sits at a fixed offset, so a save overwrites only the 16 bytes of each changed floor
in place, with ``RWF_DSYNC`` (the write returns once data and device cache are flushed).
Anything else (a new or removed key, a file replaced or deleted behind our back, a floor
whose 16 bytes would straddle a 512-byte sector, a failed write) takes the whole-file atomic
replace, after which in-place writes resume on the new file. Either way the file equals
``encode(entries)`` byte for byte.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable
from pathlib import Path

import msgpack

from ruroco.errors import RurocoError, os_reason, qpath
from ruroco.fs import write_atomic
from ruroco.limits import U128_MAX
from ruroco.protocol import KEY_ID_SIZE
from ruroco.trust import Trust

_U128_MOD = 1 << 128
# The unit a disk writes whole or not at all (the smallest logical sector); an in-place floor
# must lie inside one, so a power loss mid-write leaves the old or the new floor, never a mix.
SECTOR_SIZE = 512
_VALUE_SIZE = 16
_RWF_DSYNC: int | None = getattr(os, "RWF_DSYNC", None)


class BlocklistError(RurocoError):
    """The blocklist file cannot be read, decoded or written."""


def encode(entries: dict[bytes, int]) -> bytes:
    """The exact bytes the original writes (key ids as arrays of small ints, values bin8)."""
    packed: bytes = msgpack.packb(
        [{tuple(key_id): value.to_bytes(16, "big") for key_id, value in entries.items()}],
        use_bin_type=True,
    )
    return packed


def value_offsets(key_ids: Iterable[bytes]) -> list[int]:
    """Where each key's 16 floor bytes start in ``encode`` of a map with these keys, in order.

    Mirrors ``encode``: ``91``, the map header, then per entry ``98`` + 8 small ints (one
    byte each below 0x80, ``cc`` + byte otherwise) and ``c4 10`` before the value.
    """
    ids = list(key_ids)
    n = len(ids)
    pos = 1 + (1 if n < 16 else 3 if n < 1 << 16 else 5)
    offsets = []
    for key_id in ids:
        pos += 1 + sum(1 if b < 0x80 else 2 for b in key_id) + 2
        offsets.append(pos)
        pos += _VALUE_SIZE
    return offsets


def within_sector(offset: int) -> bool:
    """True when the 16 bytes at ``offset`` lie inside one ``SECTOR_SIZE`` sector."""
    return offset // SECTOR_SIZE == (offset + _VALUE_SIZE - 1) // SECTOR_SIZE


def _key_id(raw: object) -> bytes:
    if isinstance(raw, bytes) and len(raw) == KEY_ID_SIZE:
        return raw
    if (
        isinstance(raw, tuple)
        and len(raw) == KEY_ID_SIZE
        and all(type(b) is int and 0 <= b <= 255 for b in raw)
    ):
        return bytes(raw)
    raise ValueError("key id must be 8 bytes")


def _counter(raw: object) -> int:
    if isinstance(raw, bytes) and len(raw) == 16:
        return int.from_bytes(raw, "big")
    if type(raw) is int and -(1 << 127) <= raw <= U128_MAX:
        return raw % _U128_MOD  # negative ints are read as two's complement, as rmp-serde does
    raise ValueError("counter must be a 16-byte bin or an integer")


def _struct_field_map(top: object) -> object:
    """The ``map`` field of the original's struct: as the array each version writes, or as
    the map its reader also takes.

    The development line writes ``[map]``; release 0.14.2 also serialized the file's own path,
    ``[map, "/abs/path/blocklist.msgpck"]``, so a 0.14.2 server moved to ours keeps its floors
    (and its clients their counters). The path is ignored: 0.14.2 saves to the path it read,
    we always to the configured ``blocklist_dir``, so a moved file is written where it lies.
    Only a string is taken there, as 0.14.2 writes; anything else still fails closed.
    """
    if isinstance(top, dict):
        if set(top) != {"map"}:
            raise ValueError("struct map must have exactly the field 'map'")
        return top["map"]
    if isinstance(top, tuple):
        if len(top) == 1:
            return top[0]
        if len(top) == 2 and isinstance(top[1], str):
            return top[0]
    raise ValueError(
        "top level must be an array of one element (or of two, the map and a path string)"
    )


def decode(data: bytes) -> dict[bytes, int]:
    """Parse what the original (or we) wrote, with the original reader's tolerances."""
    try:
        top = msgpack.unpackb(data, raw=False, use_list=False, strict_map_key=False)
        mapping = _struct_field_map(top)
        if not isinstance(mapping, dict):
            raise ValueError("blocklist map must be a map")
        return {_key_id(k): _counter(v) for k, v in mapping.items()}
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise BlocklistError(f"Could not create blocklist from vec: {exc}") from None


# Far beyond any real key set (about 30 bytes per key), small enough to read at once.
MAX_FILE_SIZE = 16 << 20


def read_file(path: Path, trusted: Trust | None = None) -> dict[bytes, int]:
    """The entries stored at ``path``; a missing file is an empty blocklist.

    Read through ``ruroco.trust``: a link or a FIFO planted by whoever owns the directory must
    not hang, exhaust or inform ``--check``, which runs as root. The server writes the file by
    rename, so a link there is refused whatever it points to.
    """
    trust = trusted or Trust.of_process()
    try:
        data = trust.read_file(path, "blocklist", MAX_FILE_SIZE, link_ok=False)[0]
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise BlocklistError(
            f"Could not read blocklist from path {qpath(path)}: {os_reason(exc)}"
        ) from None
    return decode(data)


class _OnDisk:
    """The file the last whole write produced: an open descriptor and what it holds."""

    __slots__ = ("dev", "fd", "ino", "offsets", "values")

    def __init__(self, fd: int, dev: int, ino: int, entries: dict[bytes, int]) -> None:
        self.fd = fd
        self.dev = dev
        self.ino = ino
        # key id -> offset of its floor; None when that floor cannot be written in place
        self.offsets: dict[bytes, int | None] = {
            key_id: off if within_sector(off) else None
            for key_id, off in zip(entries, value_offsets(entries), strict=True)
        }
        self.values = dict(entries)  # what the file holds, per key, in the file's order

    def close(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1


class Blocklist:
    """In-memory floors bound to their file; ``save`` makes the file hold every floor."""

    __slots__ = ("_disk", "entries", "in_place_writes", "path", "whole_writes")

    def __init__(self, path: Path, entries: dict[bytes, int] | None = None) -> None:
        self.path = path
        self.entries: dict[bytes, int] = {} if entries is None else entries
        self._disk: _OnDisk | None = None
        self.in_place_writes = 0  # saves done by overwriting floors (for tests and the bench)
        self.whole_writes = 0  # saves done by replacing the file

    @classmethod
    def load(cls, path: str | os.PathLike[str], trusted: Trust | None = None) -> Blocklist:
        p = Path(path)
        return cls(p, read_file(p, trusted))

    def save(self) -> None:
        """Persist every floor before returning (durably: see the module docstring)."""
        disk = self._disk
        if disk is not None:
            try:
                if self._save_in_place(disk):
                    self.in_place_writes += 1
                    return
            except OSError:
                pass  # whatever went wrong, the whole write below decides (and reports)
            self._forget_disk()
        self._save_whole()
        self.whole_writes += 1

    def close(self) -> None:
        """Release the file's descriptor; the next ``save`` writes the whole file again."""
        self._forget_disk()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self._forget_disk()

    def _forget_disk(self) -> None:
        if self._disk is not None:
            self._disk.close()
            self._disk = None

    def _save_in_place(self, disk: _OnDisk) -> bool:
        """Overwrite the changed floors in the open file; False when only a whole write can."""
        entries = self.entries
        on_disk = disk.values
        if len(entries) != len(on_disk) or _RWF_DSYNC is None:
            return False
        changed = []
        offsets = disk.offsets
        for (key_id, value), disk_key in zip(entries.items(), on_disk, strict=True):
            if key_id != disk_key:  # another key set or order: other offsets
                return False
            if value != on_disk[key_id]:
                offset = offsets[key_id]
                if offset is None or type(value) is not int or not 0 <= value <= U128_MAX:
                    return False
                changed.append((key_id, value, offset))
        # Still our file? A file deleted or replaced by someone else gets written whole again,
        # as every save did before in-place writes.
        st = os.stat(self.path, follow_symlinks=False)
        if st.st_ino != disk.ino or st.st_dev != disk.dev:
            return False
        for key_id, value, offset in changed:
            data = value.to_bytes(_VALUE_SIZE, "big")
            if os.pwritev(disk.fd, [data], offset, _RWF_DSYNC) != _VALUE_SIZE:
                return False
            on_disk[key_id] = value
        return True

    def _save_whole(self) -> None:
        try:
            data = encode(self.entries)
        except (ValueError, TypeError, OverflowError) as exc:
            raise BlocklistError(f"Error serializing blocklist: {exc}") from None
        try:
            write_atomic(self.path, data)
        except RurocoError as exc:
            cause = exc.__cause__
            detail = os_reason(cause) if isinstance(cause, OSError) else ""
            raise BlocklistError(
                f"Error persisting blocklist {qpath(self.path)}: {exc}"
                + (f": {detail}" if detail else "")
            ) from exc
        self._disk = _reopen(self.path, data, self.entries)

    def seed_if_absent(self, key_ids: Iterable[bytes], floor: int) -> int:
        """Give keys without a floor the startup time; returns how many were added."""
        added = 0
        for key_id in key_ids:
            if key_id not in self.entries:
                self.entries[key_id] = floor
                added += 1
        return added


def _reopen(path: Path, data: bytes, entries: dict[bytes, int]) -> _OnDisk | None:
    """The file just written, opened for in-place floors; None (whole writes only) if it is
    not exactly what was written or cannot be opened."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and st.st_size == len(data) and _pread_all(fd, data):
            return _OnDisk(fd, st.st_dev, st.st_ino, entries)
    except OSError:
        pass
    os.close(fd)
    return None


def _pread_all(fd: int, expected: bytes) -> bool:
    got = bytearray()
    while len(got) <= len(expected):
        chunk = os.pread(fd, len(expected) + 1 - len(got), len(got))
        if not chunk:
            break
        got += chunk
    return got == expected


def remove_stale_temp_files(path: Path) -> int:
    """Delete ``<blocklist>.<digits>.tmp`` files a killed server left behind; returns how many.

    Only names that ``write_atomic`` makes for this file are touched, and only while the
    server lock is held, so no live write of another server can be removed.
    """
    prefix = f"{path.name}."
    removed = 0
    try:
        names = os.listdir(path.parent)
    except OSError:
        return 0
    for name in names:
        middle = name[len(prefix) : -len(".tmp")]
        if name.startswith(prefix) and name.endswith(".tmp") and middle.isdigit():
            try:
                os.unlink(path.parent / name)
                removed += 1
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise BlocklistError(
                    f"Could not remove stale temporary file {qpath(path.parent / name)}: "
                    f"{os_reason(exc)}"
                ) from None
    return removed


def open_at_startup(
    path: Path, key_ids: Iterable[bytes], now_ns: int, trusted: Trust | None = None
) -> Blocklist:
    """Load (or start empty), save, seed unknown keys with one timestamp, save again."""
    blocklist = Blocklist.load(path, trusted)
    blocklist.save()
    if blocklist.seed_if_absent(key_ids, now_ns):
        blocklist.save()
    return blocklist
