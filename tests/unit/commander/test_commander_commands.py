"""commands.toml (docs/files.md): both entry forms, timeouts, whole-file failure, no echo."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tomltext import toml_str

from ruroco.commander.commands import Command, load_commands
from ruroco.errors import qpath
from ruroco.protocol import command_hash
from ruroco.tomlconfig import ConfigError

SECRET = "ufw allow from 10.9.8.7 SECRET-RULE"


def _load(tmp_path: Path, text: str) -> dict[int, Command]:
    path = tmp_path / "commands.toml"
    path.write_text(text, encoding="utf-8")
    return load_commands(path)


def test_string_and_table_forms(tmp_path: Path) -> None:
    commands = _load(
        tmp_path,
        "[commands]\n"
        'default = "touch /tmp/x"\n'
        'slow = { cmd = "sleep 5", timeout_sec = 1 }\n'
        'plain_table = { cmd = "echo hi" }\n'
        "[commands.sub]\n"
        'cmd = "true"\n'
        "timeout_sec = 0\n"
        'comment = "extra keys are ignored"\n',
    )
    assert commands == {
        command_hash("default"): Command("default", "touch /tmp/x", 30),
        command_hash("slow"): Command("slow", "sleep 5", 1),
        command_hash("plain_table"): Command("plain_table", "echo hi", 30),
        command_hash("sub"): Command("sub", "true", 0),
    }


def test_known_hashes_and_verbatim_names(tmp_path: Path) -> None:
    commands = _load(
        tmp_path, '[commands]\nopen_port = "a"\nclose_port = "b"\n" open_port " = "c"\n"" = "d"\n'
    )
    assert commands[11210312939868804362].cmd == "a"
    assert commands[2779867342034640440].cmd == "b"
    assert commands[command_hash(" open_port ")].cmd == "c"  # no trimming
    assert commands[16476032584258269876].cmd == "d"  # the empty name is a name


def test_empty_table_and_other_top_level_keys(tmp_path: Path) -> None:
    assert _load(tmp_path, 'note = "ignored"\n[commands]\n') == {}


def test_huge_timeout_is_accepted(tmp_path: Path) -> None:
    commands = _load(
        tmp_path, '[commands]\nx = { cmd = "true", timeout_sec = 9223372036854775807 }\n'
    )
    assert commands[command_hash("x")].timeout_sec == 2**63 - 1


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("", "missing [commands] table"),
        (f"commands = {toml_str(SECRET)}", "`commands` must be a table"),
        (f"[commands]\nok = {toml_str(SECRET)}\nbad = 5", 'entry "bad"'),
        (f"[commands]\nok = {toml_str(SECRET)}\nbad = [1]", 'entry "bad"'),
        (
            f"[commands]\nbad = {{ command = {toml_str(SECRET)} }}",
            'entry "bad" needs a string `cmd`',
        ),
        ("[commands]\nbad = { cmd = 5 }", 'entry "bad" needs a string `cmd`'),
        (f"[commands]\nbad = {{ cmd = {toml_str(SECRET)}, timeout_sec = -1 }}", "timeout_sec"),
        (f"[commands]\nbad = {{ cmd = {toml_str(SECRET)}, timeout_sec = 1.5 }}", "timeout_sec"),
        (f"[commands]\nbad = {{ cmd = {toml_str(SECRET)}, timeout_sec = true }}", "timeout_sec"),
        (f'[commands]\nbad = {{ cmd = {toml_str(SECRET)}, timeout_sec = "3" }}', "timeout_sec"),
        (f"[commands]\nok = {toml_str(SECRET)}\nbroken = ", "Could not parse commands file"),
    ],
)
def test_bad_files_fail_whole_and_never_echo(tmp_path: Path, body: str, problem: str) -> None:
    path = tmp_path / "commands.toml"
    path.write_text(body + "\n")
    with pytest.raises(ConfigError) as err:
        load_commands(path)
    message = str(err.value)
    assert problem in message
    assert str(path) in message
    assert "SECRET" not in message and "10.9.8.7" not in message
    assert "\n" not in message


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r'^Could not read ".*missing.toml": No such file'):
        load_commands(tmp_path / "missing.toml")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "commands.toml"
    path.write_bytes(b'[commands]\nx = "\xff"\n')
    with pytest.raises(ConfigError, match="not valid UTF-8"):
        load_commands(path)


entries = st.dictionaries(
    st.text(max_size=40),
    st.tuples(
        st.text(
            st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=60
        ),
        st.none() | st.integers(min_value=0, max_value=2**63 - 1),
    ),
    max_size=8,
)


@settings(deadline=None)
@given(entries)
def test_any_names_and_commands_roundtrip(spec: dict[str, tuple[str, int | None]]) -> None:
    lines = ["[commands]"]
    for name, (cmd, timeout) in spec.items():
        if timeout is None:
            lines.append(f"{toml_str(name)} = {toml_str(cmd)}")
        else:
            lines.append(f"{toml_str(name)} = {{ cmd = {toml_str(cmd)}, timeout_sec = {timeout} }}")
    with tempfile.TemporaryDirectory() as tmp:
        commands = _load(Path(tmp), "\n".join(lines) + "\n")
    assert len(commands) == len(spec)
    for name, (cmd, timeout) in spec.items():
        assert commands[command_hash(name)] == Command(
            name, cmd, 30 if timeout is None else timeout
        )


bad_values = st.one_of(
    st.integers(),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.lists(st.integers(), max_size=3),
    st.integers(max_value=-1).map(lambda n: {"cmd": "x", "timeout_sec": n}),
)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, str):
        return toml_str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


@settings(deadline=None)
@given(st.text(max_size=20).filter(lambda n: "SECRET" not in n), bad_values)
def test_any_bad_entry_fails_and_names_it(name: str, value: object) -> None:
    text = f"[commands]\nfine = {toml_str(SECRET)}\n{toml_str(name)} = {_toml_value(value)}\n"
    if name == "fine":
        text = text.replace("fine =", "fine2 =")
    with tempfile.TemporaryDirectory() as tmp, pytest.raises(ConfigError) as err:
        _load(Path(tmp), text)
    assert "SECRET" not in str(err.value)
    assert f"entry {qpath(name if name != 'fine' else 'fine2')}" in str(err.value)


@settings(deadline=None)
@given(st.text(max_size=20), st.text(max_size=20), st.booleans())
def test_a_command_with_nul_is_refused_in_both_forms(
    before: str, after: str, table_form: bool
) -> None:
    cmd = f"{before}\0{after}"
    value = f"{{ cmd = {toml_str(cmd)} }}" if table_form else toml_str(cmd)
    with tempfile.TemporaryDirectory() as tmp, pytest.raises(ConfigError) as caught:
        _load(Path(tmp), f"[commands]\nx = {value}\n")
    assert 'entry "x" has a command containing a NUL character' in str(caught.value)
