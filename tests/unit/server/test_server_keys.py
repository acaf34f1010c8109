import base64
import os
from pathlib import Path

import pytest
from server_helpers import FIXTURE_ID, FIXTURE_KEY

from ruroco.errors import RurocoError
from ruroco.protocol import generate_key, key_id_of
from ruroco.server.keys import find_key_files, load_keys, read_key_file


def test_nonexistent_dir_exact_message():
    with pytest.raises(RurocoError) as info:
        find_key_files("/foo/bar/baz")
    assert str(info.value) == (
        'Error reading directory "/foo/bar/baz": No such file or directory (os error 2)'
    )


def test_dir_without_key_files(tmp_path):
    (tmp_path / "test.txt").write_text(FIXTURE_KEY)
    with pytest.raises(RurocoError) as info:
        find_key_files(tmp_path)
    assert str(info.value) == f'Could not find any .key files in "{tmp_path}"'


def test_only_regular_files_with_extension_key(tmp_path):
    (tmp_path / "test.key").write_text(FIXTURE_KEY)
    (tmp_path / "test.txt").write_text(FIXTURE_KEY)
    (tmp_path / ".key").write_text(FIXTURE_KEY)  # a leading dot is not an extension
    (tmp_path / "x.KEY").write_text(FIXTURE_KEY)  # case-sensitive
    (tmp_path / "dir.key").mkdir()
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "nested.key").write_text(FIXTURE_KEY)  # not recursive
    (tmp_path / "dangling.key").symlink_to(tmp_path / "missing")
    assert find_key_files(tmp_path) == [tmp_path / "test.key"]


def test_dotted_names_and_symlinks_count(tmp_path):
    (tmp_path / "a.b.key").write_text(FIXTURE_KEY)
    target = tmp_path / "elsewhere.txt"
    target.write_text(generate_key())
    (tmp_path / "link.key").symlink_to(target)
    assert find_key_files(tmp_path) == [tmp_path / "a.b.key", tmp_path / "link.key"]
    keys = load_keys(find_key_files(tmp_path))
    assert set(keys) == {FIXTURE_ID, key_id_of(target.read_text())}


def test_identical_key_files_are_refused(tmp_path):
    (tmp_path / "a.key").write_text(FIXTURE_KEY)
    (tmp_path / "b.key").write_text(FIXTURE_KEY + "\n")
    with pytest.raises(RurocoError, match=r"^Duplicate key files detected; refusing to start"):
        load_keys(find_key_files(tmp_path))


def test_different_keys_sharing_an_id_are_refused(tmp_path):
    same_id = base64.b64encode(FIXTURE_ID + os.urandom(32)).decode()
    assert key_id_of(same_id) == FIXTURE_ID and same_id != FIXTURE_KEY
    (tmp_path / "a.key").write_text(FIXTURE_KEY)
    (tmp_path / "b.key").write_text(same_id)
    with pytest.raises(RurocoError, match=r"Duplicate key files detected") as info:
        load_keys(find_key_files(tmp_path))
    assert "a.key" in str(info.value) and "b.key" in str(info.value)


def test_key_loaded_with_whitespace_trimmed(tmp_path):
    path = tmp_path / "k.key"
    path.write_text(f"\n  {FIXTURE_KEY}\r\n")
    assert read_key_file(path)[0].key_id == FIXTURE_ID


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("DEADBEEF", "Key too short"),
        ("not base64!", "Could not decode base64 key"),
        ("A" * 44, "Key length must be 32 bytes"),
    ],
)
def test_bad_key_names_the_file_and_never_the_key(tmp_path, content, reason):
    path = tmp_path / "bad.key"
    path.write_text(content)
    with pytest.raises(RurocoError) as info:
        load_keys([path])
    assert str(info.value) == f'Could not load key "{path}": {reason}'


def test_non_utf8_key_file(tmp_path):
    path = tmp_path / "bad.key"
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(RurocoError, match=f'^Could not read key file "{path}"'):
        read_key_file(path)


def test_unreadable_key_file(tmp_path):
    path = tmp_path / "dir.key"
    path.mkdir()
    with pytest.raises(RurocoError, match=r"Could not read key file"):
        read_key_file(Path(path))


def test_secret_never_in_repr(tmp_path):
    path = tmp_path / "k.key"
    path.write_text(FIXTURE_KEY)
    keys = load_keys([path])
    text = repr(keys)
    assert "redacted" in text
    assert "deadbeef" not in text.lower() and "3q2+7w" not in text
    assert os.fspath(path) not in text
