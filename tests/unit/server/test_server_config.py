from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ruroco.ipaddr import parse_ip
from ruroco.server.config import ServerConfig, load_config
from ruroco.tomlconfig import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_minimal_config_gives_all_defaults(tmp_path):
    config = load_config(write(tmp_path, 'ips = ["127.0.0.1"]\n'))
    assert config == ServerConfig(ips=(parse_ip("127.0.0.1"),))
    assert config.address is None
    assert config.config_dir == Path("/etc/ruroco")
    assert config.blocklist_dir is None and config.socket_dir is None
    assert config.max_requests_per_second == 2
    assert config.max_requests_per_second_global == 100
    assert config.max_clock_skew_seconds == 3600
    assert config.blocklist_path() == Path("/etc/ruroco/blocklist.msgpck")
    assert config.socket_path() == Path("/etc/ruroco/ruroco.socket")


def test_all_keys_parsed_and_commander_keys_ignored(tmp_path):
    config = load_config(
        write(
            tmp_path,
            'ips = ["127.0.0.1", "::1"]\naddress = "127.0.0.1:1234"\nconfig_dir = "/a"\n'
            'blocklist_dir = "/b"\nsocket_dir = "/c"\nmax_requests_per_second = 7\n'
            "max_requests_per_second_global = 9\nmax_clock_skew_seconds = 60\n"
            'socket_user = "x"\nsocket_group = "y"\nallow_non_routable_ips = true\n',
        )
    )
    assert config.ips == (parse_ip("127.0.0.1"), parse_ip("::1"))
    assert config.address == "127.0.0.1:1234"
    assert config.blocklist_path() == Path("/b/blocklist.msgpck")
    assert config.socket_path() == Path("/c/ruroco.socket")
    assert config.key_dir() == Path("/a")
    assert (config.max_requests_per_second, config.max_requests_per_second_global) == (7, 9)
    assert config.max_clock_skew_seconds == 60


def test_mapped_ipv4_is_normalized(tmp_path):
    config = load_config(write(tmp_path, 'ips = ["::ffff:127.0.0.1"]\n'))
    assert config.ips == (parse_ip("127.0.0.1"),)


def test_empty_ips_is_legal(tmp_path):
    assert load_config(write(tmp_path, "ips = []\n")).ips == ()


@pytest.mark.parametrize("bad", ["not_an_ip", "10.0.0.0/8", "[::1]", "fe80::1%eth0", "01.2.3.4"])
def test_bad_ip_entry_fails_the_load(tmp_path, bad):
    with pytest.raises(ConfigError, match=r"ips\[1\] is not a single IP address"):
        load_config(write(tmp_path, f'ips = ["127.0.0.1", "{bad}"]\n'))


def test_missing_ips_is_a_parse_error(tmp_path):
    with pytest.raises(ConfigError, match=r"Could not parse server config .*ips is required"):
        load_config(write(tmp_path, 'foo = "bar"\n'))


def test_invalid_toml_names_the_file_and_hides_content(tmp_path):
    path = write(tmp_path, 'ips = ["127.0.0.1"]\nsecret_command = "rm -rf / && echo"\n[[[\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f'Could not parse server config "{path}"')
    assert "rm -rf" not in str(info.value)


def test_missing_file_exact_message():
    with pytest.raises(ConfigError) as info:
        load_config("/tmp/path/does/not/exist")
    assert str(info.value) == (
        'Could not read "/tmp/path/does/not/exist": No such file or directory (os error 2)'
    )


@pytest.mark.parametrize(
    "line",
    [
        'max_requests_per_second = "2"',
        "max_requests_per_second = -1",
        "max_requests_per_second_global = 4294967296",
        "max_clock_skew_seconds = 1.5",
        "address = 5",
        "ips = 1",
        'ips = ["127.0.0.1", 2]',
        "config_dir = []",
    ],
)
def test_wrong_types_and_ranges_fail(tmp_path, line):
    with pytest.raises(ConfigError, match=r"Could not parse server config"):
        text = f"{line}\n" if line.startswith("ips") else f'ips = ["127.0.0.1"]\n{line}\n'
        load_config(write(tmp_path, text))


def test_relative_dirs_resolve_against_cwd(tmp_path, monkeypatch):
    (tmp_path / "conf").mkdir()
    monkeypatch.chdir(tmp_path)
    config = load_config(write(tmp_path, 'ips = []\nconfig_dir = "conf"\n'))
    assert config.key_dir() == tmp_path / "conf"
    assert config.socket_path() == tmp_path / "conf" / "ruroco.socket"


@given(st.text(max_size=60))
def test_any_ip_text_either_loads_or_gives_a_config_error(tmp_path_factory, text):
    tmp = tmp_path_factory.mktemp("cfg")
    escaped = text.encode("unicode_escape").decode("ascii").replace('"', '\\"')
    path = write(tmp, f'ips = ["{escaped}"]\n')
    try:
        config = load_config(path)
    except ConfigError as exc:
        assert "Could not parse server config" in str(exc)
    else:
        assert config.ips == (parse_ip(text),)
