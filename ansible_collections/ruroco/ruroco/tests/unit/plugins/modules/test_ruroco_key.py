# Copyright: ruroco contributors
# MIT License (see LICENSE or https://opensource.org/license/mit)
"""ruroco_key driven through main() on real files; the key must never reach the output."""

from __future__ import annotations

import base64
import json
import os
import stat

import pytest
from ansible.module_utils.testing import patch_module_args
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.ruroco.ruroco.plugins.module_utils import keyfile
from ansible_collections.ruroco.ruroco.plugins.modules import ruroco_key
from ruroco import protocol

FIXTURE = "///////////erb7v3q2+796tvu/erb7v3q2+796tvu/erb7v3q2+7w=="
OTHER = base64.b64encode(bytes(range(1, 41))).decode("ascii")


def run(capsys, **args):
    """Run the module; return its JSON result and the raw stdout (to search for secrets)."""
    with patch_module_args(args), pytest.raises(SystemExit):
        ruroco_key.main()
    out = capsys.readouterr().out
    return json.loads(out), out


def run_result(capsys, **args):
    return run(capsys, **args)[0]


def mode_of(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_creates_private_valid_key(tmp_path, capsys):
    """A missing file gets a new 56-character key with mode 0600; only its id is returned."""
    path = tmp_path / "server.key"
    result, out = run(capsys, path=str(path))
    text = path.read_text()
    assert result["changed"] is True
    assert len(text) == 56 and text.endswith("==")
    assert result["key_id"] == protocol.parse_key(text).key_id.hex()
    assert mode_of(path) == 0o600
    assert text not in out and text[8:48] not in out
    assert not [p for p in tmp_path.iterdir() if p.name != "server.key"]


def test_second_run_leaves_valid_key_alone(tmp_path, capsys):
    """An existing valid key is neither regenerated nor rewritten."""
    path = tmp_path / "k.key"
    first = run_result(capsys, path=str(path), mode="0400")
    content, inode = path.read_text(), os.stat(path).st_ino
    second = run_result(capsys, path=str(path), mode="0400")
    assert second["changed"] is False
    assert second["key_id"] == first["key_id"]
    assert path.read_text() == content and os.stat(path).st_ino == inode
    assert mode_of(path) == 0o400


def test_existing_key_with_newline_counts_as_valid(tmp_path, capsys):
    """Surrounding whitespace is trimmed as ruroco does, so such a file is not rewritten."""
    path = tmp_path / "k.key"
    path.write_text("  " + FIXTURE + "\n")
    result = run_result(capsys, path=str(path), key=FIXTURE)
    assert result == {**result, "changed": False, "key_id": "ff" * 8}
    assert path.read_text() == "  " + FIXTURE + "\n"


def test_places_given_key_without_showing_it(tmp_path, capsys):
    """A given key is written canonically and is absent from the output, also in diff mode."""
    path = tmp_path / "k.key"
    result, out = run(capsys, path=str(path), key="\t" + FIXTURE + "\n", _ansible_diff=True)
    assert path.read_text() == FIXTURE
    assert result["key_id"] == "ffffffffffffffff"
    assert result["diff"]["after"]["key_id"] == "ffffffffffffffff"
    assert result["diff"]["before"] == {"state": "absent"}
    assert FIXTURE not in out and "erb7v3q2" not in out


def test_given_key_replaces_a_different_valid_key(tmp_path, capsys):
    """The file converges to the given key; the diff names both ids."""
    path = tmp_path / "k.key"
    path.write_text(OTHER)
    result = run_result(capsys, path=str(path), key=FIXTURE, _ansible_diff=True)
    assert result["changed"] is True
    assert path.read_text() == FIXTURE
    assert result["diff"]["before"]["key_id"] == bytes(range(1, 9)).hex()
    assert result["diff"]["after"]["key_id"] == "ff" * 8


def test_invalid_file_fails_and_is_kept(tmp_path, capsys):
    """A file that is not a key fails with ruroco's reason and is not touched."""
    path = tmp_path / "k.key"
    path.write_text("DEADBEEF")
    result = run_result(capsys, path=str(path))
    assert result["failed"] is True
    assert "does not hold a valid ruroco key (Key too short)" in result["msg"]
    assert "force=true" in result["msg"]
    assert path.read_text() == "DEADBEEF"


def test_force_replaces_invalid_file(tmp_path, capsys):
    """force=true replaces an invalid file with a new valid key."""
    path = tmp_path / "k.key"
    path.write_bytes(b"\xff\xfe not utf-8")
    result = run_result(capsys, path=str(path), force=True)
    assert result["changed"] is True
    assert protocol.parse_key(path.read_text()).key_id.hex() == result["key_id"]


def test_invalid_given_key_fails_without_echo(tmp_path, capsys):
    """A bad key option is rejected with a reason but never echoed, and nothing is written."""
    path = tmp_path / "k.key"
    secret = base64.b64encode(b"s" * 32).decode("ascii")  # id plus only 24 key bytes
    result, out = run(capsys, path=str(path), key=secret)
    assert result["failed"] is True
    assert result["msg"] == "Option key is not a valid ruroco key: Key length must be 32 bytes"
    assert secret not in out
    assert not path.exists()


def test_check_mode_creates_nothing(tmp_path, capsys):
    """Check mode reports a change for a missing key but writes no file and shows no key id."""
    path = tmp_path / "k.key"
    result = run_result(capsys, path=str(path), _ansible_check_mode=True, _ansible_diff=True)
    assert result["changed"] is True
    assert "key_id" not in result
    assert result["diff"]["after"] == {"key_id": "<new key>"}
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_check_mode_reports_mode_change_without_applying(tmp_path, capsys):
    """A mode difference on a valid key is reported in check mode and left as is."""
    path = tmp_path / "k.key"
    path.write_text(FIXTURE)
    os.chmod(path, 0o644)
    result = run_result(capsys, path=str(path), mode="0600", _ansible_check_mode=True)
    assert result["changed"] is True
    assert mode_of(path) == 0o644


def test_owner_and_group_are_applied(tmp_path, capsys):
    """owner and group from the file arguments are applied to the key file."""
    path = tmp_path / "k.key"
    result = run_result(capsys, path=str(path), owner="nobody", group="nogroup", mode="0440")
    st_ = os.stat(path)
    assert result["changed"] is True
    assert (st_.st_uid, st_.st_gid) == (65534, 65534)
    assert mode_of(path) == 0o440


def test_directory_and_missing_parent_fail(tmp_path, capsys):
    """A directory at path, or a missing parent directory, fails with a one-line reason."""
    as_dir = run_result(capsys, path=str(tmp_path))
    assert as_dir["failed"] is True and "is a directory" in as_dir["msg"]
    missing = run_result(capsys, path=str(tmp_path / "no" / "k.key"))
    assert missing["failed"] is True and "does not exist" in missing["msg"]


def test_check_mode_with_missing_parent_reports_a_change(tmp_path, capsys):
    """In a dry run an earlier task would have created the directory, as with copy/template."""
    result = run_result(capsys, path=str(tmp_path / "no" / "k.key"), _ansible_check_mode=True)
    assert result["changed"] is True and "failed" not in result
    assert not (tmp_path / "no").exists()


def test_replacing_keeps_existing_mode_private(tmp_path, capsys):
    """Replacing an invalid key keeps the old file's restrictive mode when none is given."""
    path = tmp_path / "k.key"
    path.write_text("junk")
    os.chmod(path, 0o400)
    run(capsys, path=str(path), force=True)
    assert mode_of(path) == 0o400


def _outcome(parser, text):
    try:
        return ("ok", parser(text))
    except (keyfile.InvalidKey, protocol.ProtocolError) as exc:
        return ("error", str(exc))


B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="


@given(
    st.one_of(
        st.text(max_size=80),
        st.text(alphabet=B64 + " \n\t\u3000", max_size=64),
        st.binary(min_size=0, max_size=48).map(lambda b: base64.b64encode(b).decode()),
    )
)
def test_stdlib_parser_agrees_with_ruroco_protocol(text):
    """The module's stdlib parser accepts and rejects exactly what ruroco.protocol does."""

    def reference(t):
        key = protocol.parse_key(t)
        return key.key_id

    mine = _outcome(lambda t: keyfile.parse_key(t)[0], text)
    assert mine == _outcome(reference, text)


def test_generated_keys_parse_in_ruroco_protocol():
    """generate_key output is a valid 56-character key to ruroco and round-trips via encode_key."""
    for _i in range(20):
        text = keyfile.generate_key()
        assert len(text) == 56 and text.endswith("==")
        key_id, secret = keyfile.parse_key(text)
        assert protocol.parse_key(text).key_id == key_id
        assert keyfile.encode_key(key_id, secret) == text


def test_returns_key_id_as_the_server_logs_it(tmp_path, capsys):
    """key_id_log is the id in the server log's form: uppercase hex, unpadded, comma-separated."""
    path = tmp_path / "k.key"
    key_id = bytes([0x1A, 0xDF, 0x00, 0x0F, 0xFF, 0x10, 0x01, 0xA0])
    text = base64.b64encode(key_id + b"k" * 32).decode("ascii")
    result = run_result(capsys, path=str(path), key=text)
    assert result["key_id"] == "1adf000fff1001a0"
    assert result["key_id_log"] == "[1A, DF, 0, F, FF, 10, 1, A0]"
    assert result["key_id_log"] == protocol.hex_list(key_id)


@given(st.binary(min_size=8, max_size=8))
def test_key_id_log_agrees_with_ruroco_protocol(key_id):
    """The module's key id form is exactly ruroco.protocol.hex_list, which the server logs."""
    assert keyfile.key_id_log(key_id) == protocol.hex_list(key_id)


def test_regenerate_always_rotates_the_key(tmp_path, capsys):
    """regenerate=always writes a new key on every run and reports a change, never the key."""
    path = tmp_path / "k.key"
    path.write_text(FIXTURE)
    seen = {FIXTURE}
    for _i in range(3):
        result, out = run(capsys, path=str(path), regenerate="always", _ansible_diff=True)
        text = path.read_text()
        assert result["changed"] is True
        assert text not in seen
        seen.add(text)
        assert result["key_id"] == protocol.parse_key(text).key_id.hex()
        assert result["diff"]["after"] == {"key_id": result["key_id"]}
        assert text not in out and text[8:48] not in out
    assert mode_of(path) == 0o644  # an existing file keeps its mode unless mode is given


def test_regenerate_always_in_check_mode_writes_nothing(tmp_path, capsys):
    """A dry-run rotation reports the change and leaves the key in place."""
    path = tmp_path / "k.key"
    path.write_text(FIXTURE)
    result = run_result(capsys, path=str(path), regenerate="always", _ansible_check_mode=True, _ansible_diff=True)
    assert result["changed"] is True and "key_id" not in result
    assert result["diff"]["before"] == {"key_id": "ff" * 8}
    assert result["diff"]["after"] == {"key_id": "<new key>"}
    assert path.read_text() == FIXTURE


def test_regenerate_always_replaces_an_invalid_file(tmp_path, capsys):
    """Rotation replaces whatever is there, also a file that is not a key."""
    path = tmp_path / "k.key"
    path.write_text("junk")
    result = run_result(capsys, path=str(path), regenerate="always")
    assert result["changed"] is True
    assert protocol.parse_key(path.read_text()).key_id.hex() == result["key_id"]


@pytest.mark.parametrize("extra", [dict(regenerate="always"), dict(state="absent")])
def test_key_with_rotation_or_absent_is_rejected(tmp_path, capsys, extra):
    """A given key contradicts rotation and removal; the key is not echoed and nothing changes."""
    path = tmp_path / "k.key"
    path.write_text(OTHER)
    result, out = run(capsys, path=str(path), key=FIXTURE, **extra)
    assert result["failed"] is True
    assert "cannot be used with state=absent or regenerate=always" in result["msg"]
    assert FIXTURE not in out and "erb7v3q2" not in out
    assert path.read_text() == OTHER


def test_absent_removes_the_key_file(tmp_path, capsys):
    """state=absent removes the file and says which key id was there; a second run is a no-op."""
    path = tmp_path / "k.key"
    path.write_text(FIXTURE)
    result, out = run(capsys, path=str(path), state="absent", _ansible_diff=True)
    assert result["changed"] is True and not path.exists()
    assert result["diff"]["before"] == {"key_id": "ff" * 8}
    assert result["diff"]["after"] == {"state": "absent"}
    assert "key_id" not in result
    assert FIXTURE not in out and "erb7v3q2" not in out
    again = run_result(capsys, path=str(path), state="absent")
    assert again["changed"] is False


def test_absent_in_check_mode_keeps_the_file(tmp_path, capsys):
    """A dry-run removal reports the change, with an honest diff, and removes nothing."""
    path = tmp_path / "k.key"
    path.write_text("junk")
    result = run_result(capsys, path=str(path), state="absent", _ansible_check_mode=True, _ansible_diff=True)
    assert result["changed"] is True
    assert result["diff"]["before"] == {"key_id": "<not a valid key>"}
    assert path.read_text() == "junk"
    missing = run_result(capsys, path=str(tmp_path / "none.key"), state="absent", _ansible_check_mode=True)
    assert missing["changed"] is False


def test_absent_with_missing_directory_is_a_no_op(tmp_path, capsys):
    """No directory means no key: nothing to remove, not an error."""
    result = run_result(capsys, path=str(tmp_path / "no" / "k.key"), state="absent")
    assert result["changed"] is False and "failed" not in result


def test_absent_refuses_a_directory(tmp_path, capsys):
    """A directory at path is not removed."""
    result = run_result(capsys, path=str(tmp_path), state="absent")
    assert result["failed"] is True and "is a directory" in result["msg"]
    assert tmp_path.is_dir()
