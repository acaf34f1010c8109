"""In-place floor writes (docs/performance.md): the file always equals a fresh full write."""

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ruroco.server import blocklist as bl
from ruroco.server.blocklist import (
    SECTOR_SIZE,
    Blocklist,
    BlocklistError,
    decode,
    encode,
    read_file,
    value_offsets,
    within_sector,
)

U128 = st.integers(0, (1 << 128) - 1)
# Up to 70 keys: map headers fix16 and map16, files beyond one 512-byte sector.
entries_strategy = st.dictionaries(st.binary(min_size=8, max_size=8), U128, max_size=70)


@given(entries_strategy)
def test_value_offsets_point_at_each_floor_in_the_encoding(entries):
    data = encode(entries)
    for value, off in zip(entries.values(), value_offsets(entries), strict=True):
        assert data[off - 2 : off] == b"\xc4\x10"
        assert data[off : off + 16] == value.to_bytes(16, "big")
    if entries:
        assert value_offsets(entries)[-1] + 16 == len(data)


def test_within_sector():
    assert within_sector(0)
    assert within_sector(SECTOR_SIZE - 16)
    assert not within_sector(SECTOR_SIZE - 15)
    assert not within_sector(SECTOR_SIZE - 1)
    assert within_sector(SECTOR_SIZE)


@settings(max_examples=60, deadline=None)
@given(
    entries_strategy.filter(bool),
    st.lists(st.tuples(st.integers(0, 69), U128), max_size=12),
)
def test_file_after_in_place_updates_equals_a_fresh_full_write(entries, updates):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "blocklist.msgpck"
        blocklist = Blocklist(path, dict(entries))
        blocklist.save()
        assert blocklist.whole_writes == 1
        keys = list(entries)
        offsets = dict(zip(keys, value_offsets(keys), strict=True))
        expected_whole = 1
        for index, value in updates:
            key_id = keys[index % len(keys)]
            old = blocklist.entries[key_id]
            blocklist.entries[key_id] = value
            blocklist.save()
            if value != old and not within_sector(offsets[key_id]):
                expected_whole += 1  # a floor across a sector boundary is never written in place
            assert path.read_bytes() == encode(blocklist.entries)
            assert read_file(path) == blocklist.entries  # the original's reader format
        assert blocklist.whole_writes == expected_whole
        assert blocklist.in_place_writes == len(updates) - (expected_whole - 1)
        blocklist.close()


def _one_key(tmp_path, value=5):
    path = tmp_path / "blocklist.msgpck"
    blocklist = Blocklist(path, {b"\x01" * 8: value})
    blocklist.save()
    return path, blocklist


def test_floor_update_is_one_dsync_write_of_16_bytes(tmp_path, monkeypatch):
    path, blocklist = _one_key(tmp_path)
    calls = []
    real = os.pwritev

    def spy(fd, buffers, offset, flags=0):
        calls.append((bytes(buffers[0]), offset, flags))
        return real(fd, buffers, offset, flags)

    monkeypatch.setattr(bl.os, "pwritev", spy)
    blocklist.entries[b"\x01" * 8] = 6
    blocklist.save()
    assert calls == [((6).to_bytes(16, "big"), 13, os.RWF_DSYNC)]  # 91 81 98 01×8 c4 10
    assert path.read_bytes() == encode({b"\x01" * 8: 6})
    assert (blocklist.whole_writes, blocklist.in_place_writes) == (1, 1)


def test_a_new_or_removed_key_rewrites_the_whole_file(tmp_path):
    path, blocklist = _one_key(tmp_path)
    inode = path.stat().st_ino
    blocklist.entries[b"\x02" * 8] = 9
    blocklist.save()
    assert path.read_bytes() == encode(blocklist.entries)
    assert path.stat().st_ino != inode
    del blocklist.entries[b"\x01" * 8]
    blocklist.save()
    assert decode(path.read_bytes()) == {b"\x02" * 8: 9}
    assert (blocklist.whole_writes, blocklist.in_place_writes) == (3, 0)
    blocklist.entries[b"\x02" * 8] = 10
    blocklist.save()  # in place again, on the new file
    assert (blocklist.whole_writes, blocklist.in_place_writes) == (3, 1)
    assert path.read_bytes() == encode({b"\x02" * 8: 10})


def test_a_reordered_key_set_rewrites_the_whole_file(tmp_path):
    a, b = b"\x01" * 8, b"\xff" * 8
    path = tmp_path / "blocklist.msgpck"
    blocklist = Blocklist(path, {a: 1, b: 2})
    blocklist.save()
    blocklist.entries.clear()
    blocklist.entries.update({b: 2, a: 3})
    blocklist.save()
    assert path.read_bytes() == encode({b: 2, a: 3})
    assert blocklist.whole_writes == 2


def test_a_deleted_file_is_written_again(tmp_path):
    path, blocklist = _one_key(tmp_path)
    path.unlink()
    blocklist.save()  # nothing changed, but the file is gone: as before, a save restores it
    assert read_file(path) == {b"\x01" * 8: 5}
    blocklist.entries[b"\x01" * 8] = 7
    path.unlink()
    blocklist.save()
    assert read_file(path) == {b"\x01" * 8: 7}


def test_a_replaced_file_is_not_written_through_the_old_descriptor(tmp_path):
    path, blocklist = _one_key(tmp_path)
    other = tmp_path / "other"
    other.write_bytes(encode({b"\x01" * 8: 1}))
    os.replace(other, path)
    blocklist.entries[b"\x01" * 8] = 8
    blocklist.save()
    assert path.read_bytes() == encode({b"\x01" * 8: 8})
    assert blocklist.whole_writes == 2


def test_a_failing_in_place_write_falls_back_to_the_whole_write(tmp_path, monkeypatch):
    path, blocklist = _one_key(tmp_path)

    def broken(*_args):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(bl.os, "pwritev", broken)
    blocklist.entries[b"\x01" * 8] = 11
    blocklist.save()
    assert path.read_bytes() == encode({b"\x01" * 8: 11})
    assert blocklist.whole_writes == 2


def test_a_short_in_place_write_falls_back_to_the_whole_write(tmp_path, monkeypatch):
    path, blocklist = _one_key(tmp_path)
    monkeypatch.setattr(bl.os, "pwritev", lambda *_args: 0)
    blocklist.entries[b"\x01" * 8] = 12
    blocklist.save()
    assert path.read_bytes() == encode({b"\x01" * 8: 12})


def test_an_unwritable_floor_is_still_a_blocklist_error(tmp_path):
    _, blocklist = _one_key(tmp_path)
    blocklist.entries[b"\x01" * 8] = 1 << 128
    with pytest.raises(BlocklistError, match=r"^Error serializing blocklist"):
        blocklist.save()


def test_a_failed_whole_write_keeps_failing_until_the_directory_works(tmp_path):
    directory = tmp_path / "d"
    directory.mkdir()
    path = directory / "blocklist.msgpck"
    blocklist = Blocklist(path, {b"\x01" * 8: 1})
    blocklist.save()
    path.unlink()
    directory.rmdir()
    blocklist.entries[b"\x01" * 8] = 2
    with pytest.raises(BlocklistError, match=r"^Error persisting blocklist"):
        blocklist.save()
    directory.mkdir()
    blocklist.save()
    assert read_file(path) == {b"\x01" * 8: 2}


def test_close_releases_the_descriptor(tmp_path):
    _, blocklist = _one_key(tmp_path)
    fd = blocklist._disk.fd
    os.fstat(fd)
    blocklist.close()
    with pytest.raises(OSError):
        os.fstat(fd)
    blocklist.entries[b"\x01" * 8] = 6
    blocklist.save()
    assert blocklist.whole_writes == 2
