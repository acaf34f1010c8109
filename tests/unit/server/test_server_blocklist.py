import shutil

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ruroco.server.blocklist import (
    Blocklist,
    BlocklistError,
    decode,
    encode,
    open_at_startup,
    read_file,
)

FF = b"\xff" * 8
MIXED = bytes([0x00, 0x01, 0x7F, 0x80, 0xC8, 0xFF, 0x10, 0x11])
VECTOR_FF = bytes.fromhex(
    "918198ccffccffccffccffccffccffccffccffc410000000000000000017f3598501473c00"
)
VECTOR_MIXED = bytes.fromhex("91819800017fcc80ccc8ccff1011c4100000000000000000000000000000002a")
# What ruroco 0.14.2's server wrote at its start for one key (config_dir "/tmp/bl142/etc"):
# an array of two, the map and the file's own absolute path as a string (here a fixstr).
V0142_KEY = bytes.fromhex("6123c71ee04742a3")
V0142_FLOOR = 0x18ED670E5C344722
VECTOR_V0142 = (
    bytes.fromhex("9281986123ccc71ecce04742cca3c410000000000000000018ed670e5c344722bf")
    + b"/tmp/bl142/etc/blocklist.msgpck"
)


def test_spec_vectors_byte_for_byte():
    assert encode({FF: 1725821510 * 10**9}) == VECTOR_FF
    assert len(VECTOR_FF) == 37
    assert encode({MIXED: 42}) == VECTOR_MIXED
    assert encode({}) == bytes.fromhex("9180")


def test_spec_vectors_decode():
    assert decode(VECTOR_FF) == {FF: 1725821510 * 10**9}
    assert decode(VECTOR_MIXED) == {MIXED: 42}
    assert decode(bytes.fromhex("9180")) == {}


def test_reader_tolerances_of_the_original():
    as_struct_map = msgpack.packb({"map": {tuple(FF): (5).to_bytes(16, "big")}})
    assert decode(as_struct_map) == {FF: 5}
    bin_key_int_value = msgpack.packb([{FF: 7}], use_bin_type=True)
    assert decode(bin_key_int_value) == {FF: 7}
    negative = msgpack.packb([{tuple(FF): -1}], use_bin_type=True)
    assert decode(negative) == {FF: (1 << 128) - 1}


def test_release_0_14_2_file_decodes():
    assert decode(VECTOR_V0142) == {V0142_KEY: V0142_FLOOR}


def test_release_0_14_2_file_is_rewritten_in_the_one_element_form(tmp_path):
    """The path inside is where 0.14.2 saved; we save where the file is, in our format."""
    path = tmp_path / "blocklist.msgpck"
    path.write_bytes(VECTOR_V0142)
    bl = open_at_startup(path, [V0142_KEY], 1)
    assert bl.entries == {V0142_KEY: V0142_FLOOR}
    assert path.read_bytes() == encode({V0142_KEY: V0142_FLOOR})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocklist.msgpck"]


not_a_string = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(1 << 63), (1 << 64) - 1),
    st.floats(allow_nan=False),
    st.binary(max_size=40),
    st.lists(st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(0, 9), max_size=2),
)


@given(not_a_string)
def test_two_elements_need_a_path_string_second(second):
    data = msgpack.packb([{tuple(FF): b"\0" * 16}, second], use_bin_type=True)
    with pytest.raises(BlocklistError, match=r"^Could not create blocklist from vec"):
        decode(data)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage",
        msgpack.packb([{}, {}]),  # extra top-level element
        msgpack.packb([{}, "/p", "/p"]),  # 0.14.2's form with one more element
        msgpack.packb(["/p", {}]),  # 0.14.2's elements swapped
        msgpack.packb([[], "/p"]),  # 0.14.2's form without a map
        msgpack.packb([{(1, 2, 3): b"\0" * 16}, "/p"]),  # 0.14.2's form, short key id
        msgpack.packb([{}, b"/p"], use_bin_type=True),  # path as bin, which 0.14.2 never writes
        bytes.fromhex("9280a1ff"),  # path not UTF-8
        VECTOR_V0142 + b"\x00",  # trailing data after 0.14.2's form
        msgpack.packb([[]]),  # not a map
        msgpack.packb([{(1, 2, 3): b"\0" * 16}]),  # short key id
        msgpack.packb([{tuple(FF): b"\0" * 15}], use_bin_type=True),  # short value
        msgpack.packb([{tuple(FF): "text"}]),
        msgpack.packb([{(256,) * 8: 1}]),
        msgpack.packb({"map": {}, "path": "x"}),
        bytes.fromhex("9180") + b"\x00",  # trailing data
    ],
)
def test_malformed_content_is_fatal(data):
    with pytest.raises(BlocklistError, match=r"^Could not create blocklist from vec"):
        decode(data)


entries_strategy = st.dictionaries(
    st.binary(min_size=8, max_size=8), st.integers(0, (1 << 128) - 1), max_size=40
)


@given(entries_strategy)
def test_encode_decode_roundtrip(entries):
    assert decode(encode(entries)) == entries


@given(entries_strategy, st.text(max_size=300))
def test_both_forms_decode_to_the_same_floors(entries, stored_path):
    """0.14.2's file is ours with ``92`` for ``91`` and the path appended (any length of it)."""
    one = encode(entries)
    two = b"\x92" + one[1:] + msgpack.packb(stored_path, use_bin_type=True)
    assert decode(one) == decode(two) == entries


@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_fail_cleanly(data):
    try:
        result = decode(data)
    except BlocklistError:
        return
    assert all(len(k) == 8 and 0 <= v < 1 << 128 for k, v in result.items())


def test_save_writes_the_shared_floor_dict(tmp_path):
    floors = {FF: 42}
    bl = Blocklist(tmp_path / "b", floors)
    floors[FF] = 100  # the server's Decision raises floors in this same dict
    bl.save()
    assert read_file(tmp_path / "b") == {FF: 100}


def test_save_writes_every_floor_and_reload_keeps_them(tmp_path):
    path = tmp_path / "blocklist.msgpck"
    bl = Blocklist(path)
    bl.entries[FF] = 10
    bl.save()
    bl.entries[FF] = 11
    bl.save()
    assert Blocklist.load(path).entries == {FF: 11}
    assert path.read_bytes() == encode({FF: 11})
    assert [p.name for p in tmp_path.iterdir()] == ["blocklist.msgpck"]  # no temp leftovers


def test_missing_file_is_empty(tmp_path):
    assert Blocklist.load(tmp_path / "nope.msgpck").entries == {}
    assert not (tmp_path / "nope.msgpck").exists()


def test_garbage_file(tmp_path):
    path = tmp_path / "blocklist.msgpck"
    path.write_bytes(b"\xc1garbage")
    with pytest.raises(BlocklistError, match=r"^Could not create blocklist from vec"):
        Blocklist.load(path)


def test_unreadable_file(tmp_path):
    path = tmp_path / "blocklist.msgpck"
    path.mkdir()  # reading a directory fails even for root
    with pytest.raises(BlocklistError, match=f'^Could not read blocklist from path "{path}"'):
        read_file(path)


def test_save_into_deleted_dir_fails_and_leaves_memory_alone(tmp_path):
    """Rolling a floor back is the Decision's job (tests/unit/server/test_server_decision.py)."""
    state = tmp_path / "state"
    state.mkdir()
    bl = Blocklist(state / "blocklist.msgpck", {FF: 5})
    shutil.rmtree(state)
    bl.entries[FF] = 6
    with pytest.raises(BlocklistError, match=r"^Error persisting blocklist"):
        bl.save()
    assert bl.entries == {FF: 6}
    assert not state.exists()


def test_seed_if_absent_does_not_overwrite(tmp_path):
    bl = Blocklist(tmp_path / "b", {FF: 5})
    assert bl.seed_if_absent([FF, MIXED], 1000) == 1
    assert bl.entries == {FF: 5, MIXED: 1000}


def test_startup_creates_file_and_seeds_new_keys(tmp_path):
    path = tmp_path / "blocklist.msgpck"
    bl = open_at_startup(path, [FF], 123)
    assert bl.entries == {FF: 123}
    assert read_file(path) == {FF: 123}


def test_startup_keeps_existing_floors_and_entries_of_deleted_keys(tmp_path):
    path = tmp_path / "blocklist.msgpck"
    path.write_bytes(encode({FF: 999, MIXED: 7}))
    bl = open_at_startup(path, [FF, b"\x01" * 8], 500)
    assert bl.entries == {FF: 999, MIXED: 7, b"\x01" * 8: 500}
    assert read_file(path) == bl.entries


def test_startup_with_empty_key_set_still_writes_the_file(tmp_path):
    path = tmp_path / "blocklist.msgpck"
    open_at_startup(path, [], 1)
    assert path.read_bytes() == bytes.fromhex("9180")


def test_startup_fails_on_unwritable_dir(tmp_path):
    with pytest.raises(BlocklistError, match=r"Error persisting blocklist"):
        open_at_startup(tmp_path / "missing" / "blocklist.msgpck", [FF], 1)
