"""Per-key replay floors and their msgpack file (docs/files.md, blocklist.msgpck).

The floor of a key is the highest counter accepted so far (or the startup time for a new
key); a counter at or below it is a replay. The file layout is the original's rmp-serde
compact encoding, so a ``blocklist.msgpck`` moves between the implementations unchanged:
``[ { [b0, …, b7]: bin8(16-byte big-endian u128), … } ]``.

The floors in memory are one dict, shared by the ``Blocklist`` (which writes it) and the
server's sans-IO ``Decision`` (which raises a floor when it accepts a packet). The server
saves the dict *before* the command is forwarded: if the write fails, the decision rolls the
floor back and nothing runs, so a crash can never make an already executed packet
acceptable again.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import msgpack

from ruroco.errors import RurocoError, os_reason, qpath
from ruroco.fs import write_atomic
from ruroco.limits import U128_MAX
from ruroco.protocol import KEY_ID_SIZE
from ruroco.trust import Trust

_U128_MOD = 1 << 128


class BlocklistError(RurocoError):
    """The blocklist file cannot be read, decoded or written."""


def encode(entries: dict[bytes, int]) -> bytes:
    """The exact bytes the original writes (key ids as arrays of small ints, values bin8)."""
    packed: bytes = msgpack.packb(
        [{tuple(key_id): value.to_bytes(16, "big") for key_id, value in entries.items()}],
        use_bin_type=True,
    )
    return packed


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


def decode(data: bytes) -> dict[bytes, int]:
    """Parse what the original (or we) wrote, with the original reader's tolerances."""
    try:
        top = msgpack.unpackb(data, raw=False, use_list=False, strict_map_key=False)
        if isinstance(top, dict):
            if set(top) != {"map"}:
                raise ValueError("struct map must have exactly the field 'map'")
            mapping = top["map"]
        elif isinstance(top, tuple) and len(top) == 1:
            mapping = top[0]
        else:
            raise ValueError("top level must be an array of one element")
        if not isinstance(mapping, dict):
            raise ValueError("blocklist map must be a map")
        return {_key_id(k): _counter(v) for k, v in mapping.items()}
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise BlocklistError(f"Could not create blocklist from vec: {exc}") from None


# Far beyond any real key set (about 30 bytes per key), small enough to read at once.
MAX_FILE_SIZE = 16 << 20


def read_file(path: Path, trusted: Trust | None = None) -> dict[bytes, int]:
    """The entries stored at ``path``; a missing file is an empty blocklist.

    Read through ``ruroco.trust``: a link to ``/dev/zero`` or a FIFO planted by whoever owns
    the directory must not hang or exhaust ``--check``, which runs as root.
    """
    try:
        data = (trusted or Trust.of_process()).read_file(path, "blocklist", MAX_FILE_SIZE)[0]
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise BlocklistError(
            f"Could not read blocklist from path {qpath(path)}: {os_reason(exc)}"
        ) from None
    return decode(data)


class Blocklist:
    """In-memory floors bound to their file; ``save`` writes every floor at once."""

    __slots__ = ("entries", "path")

    def __init__(self, path: Path, entries: dict[bytes, int] | None = None) -> None:
        self.path = path
        self.entries: dict[bytes, int] = {} if entries is None else entries

    @classmethod
    def load(cls, path: str | os.PathLike[str], trusted: Trust | None = None) -> Blocklist:
        p = Path(path)
        return cls(p, read_file(p, trusted))

    def save(self) -> None:
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

    def seed_if_absent(self, key_ids: Iterable[bytes], floor: int) -> int:
        """Give keys without a floor the startup time; returns how many were added."""
        added = 0
        for key_id in key_ids:
            if key_id not in self.entries:
                self.entries[key_id] = floor
                added += 1
        return added


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
