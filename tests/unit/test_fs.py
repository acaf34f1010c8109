"""Atomic writes (docs/files.md, Atomic writes), path resolution and chown helpers."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from ruroco.errors import RurocoError
from ruroco.fs import lookup_ids, make_dirs_beneath, resolve_path, write_atomic


def test_write_atomic_creates_overwrites_and_leaves_no_tmp(tmp_path: Path) -> None:
    target = tmp_path / "state"
    write_atomic(target, b"one")
    write_atomic(target, b"two", mode=0o755)
    assert target.read_bytes() == b"two"
    assert stat.S_IMODE(target.stat().st_mode) == 0o755
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state"]


def test_the_temp_file_never_has_a_wider_mode_than_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another user who opens the temp file while it has the data keeps reading it through
    that descriptor after any later chmod: the mode must be right from the open on."""
    seen: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:  # observes the temp file once it holds all the data
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode):
            seen.append(stat.S_IMODE(st.st_mode))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    old_umask = os.umask(0o022)
    try:
        write_atomic(tmp_path / "secret", b"data", mode=0o600)
    finally:
        os.umask(old_umask)
    assert seen == [0o600]
    assert stat.S_IMODE((tmp_path / "secret").stat().st_mode) == 0o600


def test_a_link_planted_at_the_temp_name_is_not_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(b"keep")
    monkeypatch.setattr("ruroco.fs.time.time_ns", lambda: 7)
    (tmp_path / "state.7.tmp").symlink_to(elsewhere)
    with pytest.raises(RurocoError, match=r"^open "):
        write_atomic(tmp_path / "state", b"new")
    assert elsewhere.read_bytes() == b"keep"
    assert not (tmp_path / "state").exists()
    assert (tmp_path / "state.7.tmp").is_symlink()  # the failed open removes nothing


def test_write_atomic_missing_parent_fails_with_open(tmp_path: Path) -> None:
    with pytest.raises(RurocoError, match=r"^open "):
        write_atomic(tmp_path / "missing" / "file", b"x")


def test_failed_rename_keeps_old_content_and_cleans_tmp(tmp_path: Path) -> None:
    target = tmp_path / "dir-in-the-way"
    target.mkdir()
    (target / "child").write_text("keep")
    with pytest.raises(RurocoError, match="rename"):
        write_atomic(target, b"new")
    assert (target / "child").read_text() == "keep"
    assert [p.name for p in tmp_path.iterdir()] == ["dir-in-the-way"]


def test_resolve_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_path("/foo/../bar") == Path("/foo/../bar")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "link")
    assert resolve_path("link") == (tmp_path / "real").resolve()
    assert resolve_path("does-not-exist") == tmp_path / "does-not-exist"


def test_lookup_ids() -> None:
    assert lookup_ids("root", "root") == (0, 0)
    assert lookup_ids(" ", "") == (-1, -1)
    with pytest.raises(RurocoError, match="Could not find user no-such-user-xyz"):
        lookup_ids("no-such-user-xyz", "")
    with pytest.raises(RurocoError, match="Could not find group no-such-group-xyz"):
        lookup_ids("", "no-such-group-xyz")


def test_make_dirs_beneath_creates_each_missing_directory_with_its_mode(tmp_path: Path) -> None:
    make_dirs_beneath(str(tmp_path), ["a", "b", "c"], 0o750)
    for path in (tmp_path / "a", tmp_path / "a" / "b", tmp_path / "a" / "b" / "c"):
        st = os.lstat(path)
        assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o750
    make_dirs_beneath(str(tmp_path), ["a", "b", "c"], 0o750)  # all there: nothing to do


@pytest.mark.parametrize("at", [0, 1])
def test_make_dirs_beneath_never_follows_a_link_in_the_way(tmp_path: Path, at: int) -> None:
    """A link where a directory is to be made (planted after the trust check, in a sticky
    directory) fails the walk; nothing is created where it points (a hostile-user review:
    ``Path.mkdir(parents=True)`` made root's directory there)."""
    victim = tmp_path / "victim"
    victim.mkdir()
    base = tmp_path / "base"
    (base / "a").mkdir(parents=True)
    names = ["a", "link", "sub"] if at else ["link", "sub"]
    (base / "a" if at else base).joinpath("link").symlink_to(victim)
    with pytest.raises(OSError):
        make_dirs_beneath(str(base), names, 0o755)
    assert list(victim.iterdir()) == []
