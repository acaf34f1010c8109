"""Conf dir resolution and the CLI's config-level behaviour."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from client_helpers import CLIENT, client_env, run_client

from ruroco.client.confdir import conf_dir_path, ensure_conf_dir, resolve_conf_dir
from ruroco.client.sender import SendRequest
from ruroco.errors import RurocoError


def test_env_var_wins_and_is_used_verbatim(tmp_path: Path) -> None:
    env = {"RUROCO_CONF_DIR": "relative/dir", "HOME": str(tmp_path)}
    assert conf_dir_path(env) == "relative/dir"


def test_home_fallback_contains_ruroco(tmp_path: Path) -> None:
    path = conf_dir_path({"HOME": str(tmp_path)})
    assert path == str(tmp_path / ".config" / "ruroco")
    assert "ruroco" in path


def test_no_home_uses_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert conf_dir_path({}) == str(tmp_path)


def test_resolve_creates_the_directory_recursively(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "c"
    assert resolve_conf_dir({"RUROCO_CONF_DIR": str(target)}) == str(target)
    assert target.is_dir()
    assert ensure_conf_dir(target) == str(target)  # existing is fine


def test_a_new_conf_dir_is_the_users_alone(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        ensure_conf_dir(tmp_path / "home" / ".config" / "ruroco")
    finally:
        os.umask(old)
    assert (tmp_path / "home" / ".config" / "ruroco").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "home").stat().st_mode & 0o777 == 0o755  # only the conf dir itself


@pytest.mark.parametrize("mode", [0o777, 0o1777, 0o1733])
def test_a_conf_dir_every_user_can_write_is_refused(tmp_path: Path, mode: int) -> None:
    """Anyone could put a lock, counter or counter.next there first (and hold the lock)."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(mode)
    with pytest.raises(RurocoError) as info:
        ensure_conf_dir(shared)
    assert str(info.value) == (
        f'Config dir "{shared}" can be written by every user (mode {mode:o}): use a directory'
        " of your own (RUROCO_CONF_DIR)"
    )
    assert list(shared.iterdir()) == []


def test_an_empty_conf_dir_in_a_shared_working_directory_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "tmp"
    shared.mkdir()
    shared.chmod(0o1777)
    monkeypatch.chdir(shared)
    with pytest.raises(RurocoError, match=r"can be written by every user \(mode 1777\)"):
        ensure_conf_dir("")
    monkeypatch.chdir(tmp_path)
    assert ensure_conf_dir("") == ""


def test_cli_without_home_in_a_shared_directory_refuses(tmp_path: Path) -> None:
    import subprocess

    shared = tmp_path / "tmp"
    shared.mkdir()
    shared.chmod(0o1777)
    env = client_env(tmp_path)
    del env["RUROCO_CONF_DIR"]
    env.pop("HOME", None)
    result = subprocess.run(
        [CLIENT, "reseed"], env=env, cwd=shared, capture_output=True, text=True, timeout=20
    )
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f'Error: Config dir "{shared}" can be written by every user (mode 1777): use a'
        " directory of your own (RUROCO_CONF_DIR)\n"
    )
    assert list(shared.iterdir()) == []


def test_uncreatable_dir_is_an_error() -> None:
    with pytest.raises(RurocoError, match=r"^Could not create config dir"):
        resolve_conf_dir({"RUROCO_CONF_DIR": "/etc/hostname/ruroco_xyz"})


def test_dir_that_is_a_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(RurocoError, match=r"^Could not create config dir"):
        ensure_conf_dir(tmp_path / "file")


def test_link_to_a_directory_is_used_and_a_dangling_link_is_an_error(tmp_path: Path) -> None:
    """An existing directory takes one ``stat``: through a link too, as ``makedirs`` would
    accept it; a link to nothing is refused as before, and nothing is created for it."""
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert ensure_conf_dir(tmp_path / "link") == str(tmp_path / "link")
    assert (tmp_path / "link").is_symlink()
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(RurocoError, match=r"^Could not create config dir"):
        ensure_conf_dir(tmp_path / "dangling")
    assert not (tmp_path / "nowhere").exists()


def test_cli_uses_env_conf_dir(tmp_path: Path) -> None:
    conf = tmp_path / "x" / "conf"
    result = run_client("reseed", conf_dir=conf)
    assert result.returncode == 0, result.stderr
    assert (conf / "client.lock").is_file()
    assert (conf / "counter").is_file()


def test_cli_home_fallback(tmp_path: Path) -> None:
    env = client_env(tmp_path)
    del env["RUROCO_CONF_DIR"]
    env["HOME"] = str(tmp_path / "home")
    result = run_client("reseed", conf_dir=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "home" / ".config" / "ruroco" / "counter").is_file()


def test_cli_without_home_uses_cwd(tmp_path: Path) -> None:
    import subprocess

    env = client_env(tmp_path)
    del env["RUROCO_CONF_DIR"]
    env.pop("HOME", None)
    result = subprocess.run(
        [CLIENT, "reseed"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=20
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "counter").is_file()
    assert (tmp_path / "client.lock").is_file()


def test_cli_uncreatable_conf_dir_exits_1(tmp_path: Path) -> None:
    result = run_client("gen", conf_dir=Path("/etc/hostname/ruroco_xyz"))
    assert result.returncode == 1
    assert result.stderr.startswith('Error: Could not create config dir "/etc/hostname/ruroco_xyz"')
    assert result.stdout == ""


def test_help_is_a_help_exit(tmp_path: Path) -> None:
    for args in (["--help"], ["-h"], ["send", "--help"], ["gen", "-h"], ["reseed", "--help"]):
        result = run_client(*args, conf_dir=tmp_path / "conf")
        assert result.returncode == 0, args
        assert "Usage:" in result.stdout
    assert not (tmp_path / "conf").exists()  # help does not touch the conf dir


def test_version_flag(tmp_path: Path) -> None:
    for flag in ("-V", "--version"):
        result = run_client(flag, conf_dir=tmp_path)
        assert result.returncode == 0
        assert result.stdout.startswith("ruroco-client ")


def test_send_request_defaults() -> None:
    req = SendRequest(address="127.0.0.1:80", key_file="k")
    assert (req.command, req.permissive, req.ip, req.ipv4, req.ipv6, req.send_delay_ms) == (
        "default",
        False,
        None,
        False,
        False,
        50,
    )
    assert os.fspath(req.key_file) == "k"
