"""Commander view of config.toml (docs/files.md): optional keys, defaults, no content echo."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tomltext import toml_str

from ruroco.commander.config import (
    DEFAULT_MAX_CONCURRENT_COMMANDS,
    CommanderConfig,
    load_config,
)
from ruroco.tomlconfig import ConfigError


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, ""))
    assert config == CommanderConfig()
    assert config.config_dir == Path("/etc/ruroco")
    assert config.socket_dir is None
    assert (config.socket_user, config.socket_group) == ("ruroco", "ruroco")
    assert config.allow_non_routable_ips is False
    assert config.max_concurrent_commands == DEFAULT_MAX_CONCURRENT_COMMANDS == 32
    assert config.socket_path() == Path("/etc/ruroco/ruroco.socket")


def test_shared_fields_read_and_server_fields_ignored(tmp_path: Path) -> None:
    config = load_config(
        _write(
            tmp_path,
            'ips = ["127.0.0.1"]\naddress = "[::]:34020"\nblocklist_dir = "/var/lib/ruroco"\n'
            'foo = "bar"\nconfig_dir = "/srv/r"\nsocket_user = " alice "\nsocket_group = ""\n'
            "allow_non_routable_ips = true\nmax_concurrent_commands = 4\n"
            "max_requests_per_second = 2\n[unrelated]\nx = 1\n",
        )
    )
    assert config == CommanderConfig(
        config_dir=Path("/srv/r"),
        socket_user="alice",  # trimmed
        socket_group="",
        allow_non_routable_ips=True,
        max_concurrent_commands=4,
    )
    assert config.socket_path() == Path("/srv/r/ruroco.socket")


def test_socket_dir_wins_over_config_dir(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, 'config_dir = "/etc/x"\nsocket_dir = "/run/ruroco"\n'))
    assert config.socket_dir == Path("/run/ruroco")
    assert config.socket_path() == Path("/run/ruroco/ruroco.socket")


def test_relative_socket_dir_resolves_against_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "sock").mkdir()
    monkeypatch.chdir(tmp_path)
    config = load_config(_write(tmp_path, 'socket_dir = "sock"\n'))
    assert config.socket_path() == tmp_path.resolve() / "sock" / "ruroco.socket"


def test_missing_file_exact_message() -> None:
    with pytest.raises(ConfigError) as err:
        load_config("/tmp/path/does/not/exist")
    assert str(err.value) == (
        'Could not read "/tmp/path/does/not/exist": No such file or directory (os error 2)'
    )


def test_syntax_error_names_file_not_content(tmp_path: Path) -> None:
    path = _write(tmp_path, 'socket_user = "topsecret-value"\nthis is not toml\n')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert str(path) in message
    assert "topsecret" not in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("allow_non_routable_ips = 1", "allow_non_routable_ips"),
        ('allow_non_routable_ips = "yes"', "allow_non_routable_ips"),
        ("socket_user = 5", "socket_user"),
        ("socket_group = true", "socket_group"),
        ("config_dir = [1]", "config_dir"),
        ('max_concurrent_commands = "3"', "max_concurrent_commands"),
        ("max_concurrent_commands = 0", "max_concurrent_commands"),
        ("max_concurrent_commands = 1025", "max_concurrent_commands"),
        ("max_concurrent_commands = 2.5", "max_concurrent_commands"),
    ],
)
def test_type_errors_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        load_config(_write(tmp_path, text + "\n"))


NO_NUL = st.characters(blacklist_categories=("Cs",), blacklist_characters="\0")


@settings(deadline=None)
@given(
    user=st.text(NO_NUL, max_size=20),
    group=st.text(NO_NUL, max_size=20),
    allow=st.booleans(),
    parallel=st.integers(min_value=1, max_value=1024),
    directory=st.text(NO_NUL, min_size=1, max_size=30).map(lambda s: "/" + s),
)
def test_roundtrip_any_values(
    user: str, group: str, allow: bool, parallel: int, directory: str
) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.toml"
        path.write_text(
            f"socket_user = {toml_str(user)}\nsocket_group = {toml_str(group)}\n"
            f"allow_non_routable_ips = {str(allow).lower()}\n"
            f"max_concurrent_commands = {parallel}\nsocket_dir = {toml_str(directory)}\n",
            encoding="utf-8",
        )
        config = load_config(path)
    assert config.socket_user == user.strip()
    assert config.socket_group == group.strip()
    assert config.allow_non_routable_ips is allow
    assert config.max_concurrent_commands == parallel
    assert config.socket_dir == Path(directory)
    assert os.fspath(config.socket_path()).endswith("ruroco.socket")


def test_warm_shell_groups_default_on_and_can_be_turned_off(tmp_path: Path) -> None:
    """docs/files.md: ``warm_shell_groups``, a boolean, on unless set to false."""
    assert load_config(_write(tmp_path, "")).warm_shell_groups is True
    off = load_config(_write(tmp_path, "warm_shell_groups = false\n"))
    assert off.warm_shell_groups is False and off.warm_shells is True
    with pytest.raises(ConfigError, match="warm_shell_groups"):
        load_config(_write(tmp_path, "warm_shell_groups = 1\n"))


def test_warm_shells_default_on_and_can_be_turned_off(tmp_path: Path) -> None:
    """docs/files.md: ``warm_shells``, a boolean, on unless set to false."""
    assert load_config(_write(tmp_path, "")).warm_shells is True
    assert load_config(_write(tmp_path, "warm_shells = false\n")).warm_shells is False
    with pytest.raises(ConfigError, match="warm_shells"):
        load_config(_write(tmp_path, 'warm_shells = "no"\n'))
