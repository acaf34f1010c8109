"""Config errors name the file and key and never echo the content (docs/deviations.md #5)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ruroco.tomlconfig import ConfigError, Table, read_toml

SECRET = "super-secret-command --token abc123"


def test_missing_file_message() -> None:
    with pytest.raises(ConfigError) as info:
        read_toml("/tmp/path/does/not/exist", "server config")
    assert str(info.value) == (
        'Could not read "/tmp/path/does/not/exist": No such file or directory (os error 2)'
    )


def test_parse_error_names_file_but_not_content(tmp_path: Path) -> None:
    path = tmp_path / "commands.toml"
    path.write_text(f'[commands]\nopen = "{SECRET}"\nbroken = \n')
    with pytest.raises(ConfigError) as info:
        read_toml(path, "commands")
    assert str(path) in str(info.value) and "line 3" in str(info.value)
    assert SECRET not in str(info.value)


def test_deep_nesting_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.toml"
    path.write_text("a = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match="nesting too deep"):
        read_toml(path, "server config")


def test_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_bytes(b"a = '\xff'\n")
    with pytest.raises(ConfigError, match="not valid UTF-8"):
        read_toml(path, "server config")


def test_typed_getters(tmp_path: Path) -> None:
    t = Table({"s": "x", "i": 5, "b": True, "l": ["a"], "bad": SECRET}, tmp_path / "c", "cfg")
    assert t.text("s") == "x" and t.text("missing", "d") == "d"
    assert t.integer("i", 0, maximum=10) == 5 and t.integer("missing", 7) == 7
    assert t.flag("b", False) is True
    assert t.str_list("l") == ["a"]
    assert t.path_value("s") == Path("x")
    for call in (
        lambda: t.integer("bad", 0),
        lambda: t.flag("i", False),
        lambda: t.text("i"),
        lambda: t.str_list("s"),
        lambda: t.integer("i", 0, maximum=4),
        lambda: t.integer("b", 0),
        lambda: t.text("missing", required=True),
    ):
        with pytest.raises(ConfigError) as info:
            call()
        assert SECRET not in str(info.value) and str(tmp_path / "c") in str(info.value)


@given(st.binary(max_size=300))
def test_any_bytes_load_or_raise_config_error(data: bytes) -> None:
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".toml") as fh:
        fh.write(data)
        fh.flush()
        with contextlib.suppress(ConfigError):
            assert isinstance(read_toml(fh.name, "cfg"), dict)
