"""The counter file (docs/files.md, "Counter file"): format, seeding, hard errors, overflow."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from localuser import in_fork_as

from ruroco.client.counter import (
    OVERFLOW_MESSAGE,
    U128_MAX,
    Counter,
    counter_path,
    read_counter,
    reseed,
    write_counter,
)
from ruroco.errors import RurocoError, format_error


def test_increment_from_zero(tmp_path: Path) -> None:
    path = str(tmp_path / "counter")
    counter = Counter.create_and_init(path, 0)
    assert counter.value == 0
    assert counter.increment() == 1
    assert Path(path).read_bytes() == (1).to_bytes(16, "big")


def test_increment_at_max_errors_twice_and_writes_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "counter")
    counter = Counter.create_and_init(path, U128_MAX)
    for _ in range(2):
        with pytest.raises(RurocoError) as info:
            counter.increment()
        assert str(info.value) == OVERFLOW_MESSAGE
        assert str(info.value).startswith("counter overflow")
    assert read_counter(path) == U128_MAX
    assert counter.value == U128_MAX


def test_max_minus_one_to_max(tmp_path: Path) -> None:
    path = str(tmp_path / "counter")
    counter = Counter.create_and_init(path, U128_MAX - 1)
    assert counter.increment() == U128_MAX
    assert read_counter(path) == U128_MAX


def test_reseed_overwrites(tmp_path: Path) -> None:
    path = str(tmp_path / "counter")
    write_counter(path, 5)
    assert reseed(path, 99) == 99
    assert read_counter(path) == 99
    before = read_counter(path)
    now = reseed(path)
    assert now == read_counter(path) and now > before


def test_write_into_missing_dir(tmp_path: Path) -> None:
    path = str(tmp_path / "missing" / "counter")
    with pytest.raises(RurocoError, match=r"^Could not write counter file") as info:
        Counter.create_and_init(path, 1)
    assert "No such file or directory" in format_error(info.value)


def test_existing_file_is_read_not_reseeded(tmp_path: Path) -> None:
    path = str(tmp_path / "counter")
    write_counter(path, 11)
    assert Counter.create_and_init(path, 99).value == 11
    assert read_counter(path) == 11


def test_missing_file_is_seeded_and_written(tmp_path: Path) -> None:
    path = str(tmp_path / "counter")
    assert read_counter(path) is None
    assert Counter.create_and_init(path, 1234).value == 1234
    assert Path(path).read_bytes() == (1234).to_bytes(16, "big")


def test_longer_file_only_first_16_bytes_count(tmp_path: Path) -> None:
    path = tmp_path / "counter"
    path.write_bytes((7).to_bytes(16, "big") + b"trailing junk")
    assert Counter.create_and_init(str(path), 99).value == 7


@pytest.mark.parametrize("content", [b"short", b"", b"\x00" * 15])
def test_short_file_is_a_hard_error_and_left_untouched(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "counter"
    path.write_bytes(content)
    with pytest.raises(RurocoError) as info:
        Counter.create_and_init(str(path), 99)
    assert str(info.value) == f'Could not read counter file "{path}"'
    assert "failed to fill whole buffer" in format_error(info.value)
    assert path.read_bytes() == content


def test_directory_in_place_of_file_is_a_hard_error(tmp_path: Path) -> None:
    path = tmp_path / "counter"
    path.mkdir()
    with pytest.raises(RurocoError, match=r"^Could not read counter file") as info:
        Counter.create_and_init(str(path), 99)
    assert format_error(info.value).endswith("    Is a directory (os error 21)")
    assert path.is_dir()


NEEDS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as other users")


def _as_nobody(fn: Callable[[], object]) -> str:
    """Run ``fn()`` in a forked child that dropped to uid/gid 65534; returns its report line."""
    return in_fork_as(65534, 65534, fn)


@NEEDS_ROOT
def test_unreadable_file_non_root_is_a_hard_error_and_unchanged() -> None:
    """Mode 000 read by an unprivileged process (root would read it anyway)."""
    with tempfile.TemporaryDirectory() as raw:  # under /tmp, so nobody can reach it
        os.chmod(raw, 0o777)
        path = Path(raw) / "counter"
        path.write_bytes((11).to_bytes(16, "big"))
        path.chmod(0o644)
        os.chown(path, 65534, 65534)  # nobody's own file (another user's is refused)
        assert _as_nobody(lambda: Counter.create_and_init(str(path), 99).value) == "ok 11"
        path.chmod(0o000)
        report = _as_nobody(lambda: Counter.create_and_init(str(path), 99).value)
        assert report == f'error Could not read counter file "{path}"'
        path.chmod(0o600)
        assert int.from_bytes(path.read_bytes(), "big") == 11


def test_a_link_in_place_of_the_counter_is_refused_and_never_read(tmp_path: Path) -> None:
    """A link would make the client read 16 bytes of any file it can read (a key file, say)
    and write them back, plus one, where the link's owner can read them."""
    secret = tmp_path / "secret.key"
    secret.write_bytes(b"y1Qes85FR+FKssuOrest-of-the-key")
    path = tmp_path / "counter"
    path.symlink_to(secret)
    with pytest.raises(RurocoError) as info:
        Counter.create_and_init(str(path), 99)
    assert format_error(info.value) == (
        f'Error: Could not read counter file "{path}"\n\nCaused by:\n'
        "    it is a symbolic link, not a regular file of this user"
    )
    assert path.is_symlink()
    assert secret.read_bytes() == b"y1Qes85FR+FKssuOrest-of-the-key"


def test_a_fifo_in_place_of_the_counter_is_refused_without_waiting(tmp_path: Path) -> None:
    path = tmp_path / "counter"
    os.mkfifo(path)
    with pytest.raises(RurocoError) as info:
        Counter.create_and_init(str(path), 99)
    assert format_error(info.value).endswith("    it is not a regular file of this user")


@NEEDS_ROOT
def test_another_users_counter_is_refused() -> None:
    """A counter file another (non-root) user put into a directory they can write: its value
    is theirs."""
    with tempfile.TemporaryDirectory() as raw:
        os.chmod(raw, 0o777)
        path = Path(raw) / "counter"
        path.write_bytes((11).to_bytes(16, "big"))
        path.chmod(0o644)
        os.chown(path, 65533, 65533)  # some other user's, readable by nobody
        report = _as_nobody(lambda: Counter.create_and_init(str(path), 99).value)
        assert report == f'error Could not read counter file "{path}"'
        assert int.from_bytes(path.read_bytes(), "big") == 11


@NEEDS_ROOT
def test_a_counter_root_wrote_in_a_users_conf_dir_is_read_and_taken_back() -> None:
    """``sudo ruroco-client reseed`` in a user's conf dir leaves a root-owned counter: only
    root could have put it there, so the user reads it, and the user's next write makes the
    file theirs again."""
    with tempfile.TemporaryDirectory() as raw:
        os.chmod(raw, 0o755)
        conf = Path(raw) / "conf"
        conf.mkdir(mode=0o700)
        os.chown(conf, 65534, 65534)
        path = conf / "counter"
        path.write_bytes((11).to_bytes(16, "big"))  # root's, 0644
        path.chmod(0o644)
        assert _as_nobody(lambda: Counter.create_and_init(str(path), 99).value) == "ok 11"

        def take() -> int:
            counter = Counter.create_and_init(str(path), 99)
            counter.take(1)
            return counter.value

        assert _as_nobody(take) == "ok 12"
        assert path.stat().st_uid == 65534


def test_counter_path_ends_with_counter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert counter_path(tmp_path) == str(tmp_path / "counter")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rel").mkdir()
    assert counter_path("rel") == str(tmp_path.resolve() / "rel" / "counter")
    assert counter_path("rel").endswith("counter")


def test_write_is_atomic_without_leftovers(tmp_path: Path) -> None:
    path = str(tmp_path / "counter")
    counter = Counter.create_and_init(path, 10)
    for _ in range(5):
        counter.increment()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counter"]
    assert read_counter(path) == 15


@settings(deadline=None)
@given(st.integers(min_value=0, max_value=U128_MAX))
def test_roundtrip(value: int) -> None:
    with tempfile.TemporaryDirectory() as raw:
        path = os.path.join(raw, "counter")
        write_counter(path, value)
        assert os.path.getsize(path) == 16
        assert read_counter(path) == value
        assert Counter.create_and_init(path, 0).value == value


@settings(deadline=None)
@given(st.integers().filter(lambda v: v < 0 or v > U128_MAX))
def test_out_of_range_values_are_refused(value: int) -> None:
    with tempfile.TemporaryDirectory() as raw:
        path = os.path.join(raw, "counter")
        with pytest.raises(RurocoError):
            write_counter(path, value)
        assert not os.path.exists(path)
