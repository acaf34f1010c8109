"""The key sets of ``ruroco.configkeys`` against what the parsers really read, and the typo
warnings of both ``--check`` (a misspelt key was ignored by both daemons, silently)."""

from __future__ import annotations

import datetime
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from ruroco.commander.config import parse_config
from ruroco.configkeys import COMMAND_ENTRY, COMMANDER, SERVER
from ruroco.errors import RurocoError
from ruroco.server.config import load_config
from ruroco.tomlconfig import Table

# A value no setting takes (a TOML date-time): a key that is read fails on it, one that is
# ignored does not.
BAD = datetime.datetime(1979, 5, 27, 7, 32, tzinfo=datetime.UTC)


def _server_reads(key: str, tmp_path: Path) -> bool:
    config = tmp_path / f"{key}.toml"
    lines = [] if key == "ips" else ['ips = ["127.0.0.1"]']
    config.write_text("\n".join([*lines, f"{key} = 1979-05-27T07:32:00Z", ""]))
    try:
        load_config(config)
    except RurocoError as exc:
        assert key in str(exc)
        return True
    return False


def _commander_reads(key: str) -> bool:
    try:
        parse_config({key: BAD}, "config.toml")
    except RurocoError as exc:
        assert key in str(exc)
        return True
    return False


@pytest.mark.parametrize("key", sorted(SERVER | COMMANDER | {"max_request_per_second"}))
def test_each_daemon_reads_exactly_its_keys(key: str, tmp_path: Path) -> None:
    assert _server_reads(key, tmp_path) == (key in SERVER)
    assert _commander_reads(key) == (key in COMMANDER)


def test_every_key_a_parser_reads_is_in_its_set(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The other direction: a key a parser reads but the sets miss would be warned about as a
    typo in a correct file (review). Every top-level key the parsers ask for is recorded."""
    asked: list[str] = []
    for name in ("text", "flag", "integer", "str_list"):
        original = getattr(Table, name)

        def record(self: Table, key: str, *args: object, _original=original, **kw: object):
            if self.data is top:
                asked.append(key)
            return _original(self, key, *args, **kw)

        monkeypatch.setattr(Table, name, record)
    config = tmp_path / "config.toml"
    config.write_text('ips = ["127.0.0.1"]\n[keys.laptop]\ncommands = ["default"]\n')
    top = tomllib.loads(config.read_text())
    monkeypatch.setattr("ruroco.server.config.read_toml", lambda *a: top)
    load_config(config)
    assert set(asked) | {"keys"} == SERVER  # [keys.<stem>] is read as a table
    asked.clear()
    top = {}
    parse_config(top, "config.toml")
    assert set(asked) == COMMANDER


@pytest.mark.parametrize("key", sorted(COMMAND_ENTRY))
def test_a_command_entry_reads_exactly_cmd_and_timeout_sec(key: str) -> None:
    from ruroco.commander.commands import parse_commands

    entry: dict[str, object] = {"cmd": "true", key: BAD}
    with pytest.raises(RurocoError, match=key):
        parse_commands({"commands": {"c": entry}}, "commands.toml")
    parse_commands({"commands": {"c": {"cmd": "true", "timeout": BAD}}}, "commands.toml")


def _run(tool: str, *argv: str) -> subprocess.CompletedProcess[str]:
    binary = Path(sys.executable).parent / tool
    return subprocess.run(
        [str(binary), *argv], capture_output=True, text=True, timeout=30, check=False
    )


def test_both_checks_warn_about_a_key_neither_daemon_reads(tmp_path: Path) -> None:
    """Found trying the docs as a new operator: ``max_request_per_second = 5`` and
    ``timeout = 5`` in a command entry passed every check and changed nothing."""
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "k.key").write_text("///////////erb7v3q2+796tvu/erb7v3q2+796tvu/erb7v3q2+7w==")
    (etc / "k.key").chmod(0o600)
    config = etc / "config.toml"
    config.write_text(
        f'ips = ["127.0.0.1"]\nconfig_dir = "{etc}"\nblocklist_dir = "{tmp_path}"\n'
        f'socket_dir = "{tmp_path}/run"\nsocket_user = ""\nsocket_group = ""\n'
        "max_request_per_second = 5\npid_namespaces = false\n"
    )
    commands = etc / "commands.toml"
    commands.write_text('[commands]\ndefault = { cmd = "true", timeout = 5 }\n')
    commands.chmod(0o600)
    typo = "is not a setting of ruroco-server or ruroco-commander and is ignored (a typo?)"
    server = _run("ruroco-server", "--check", "-c", str(config))
    assert server.returncode == 0, server.stderr
    assert server.stderr.splitlines() == [
        f"Warning: \"{config}\": 'max_request_per_second' {typo}",
        f"Warning: \"{config}\": 'pid_namespaces' {typo}",
    ]
    commander = _run("ruroco-commander", "--check", "-c", str(config), "--commands", str(commands))
    assert commander.returncode == 0, commander.stderr
    assert commander.stderr.splitlines() == [
        f"Warning: \"{config}\": 'max_request_per_second' {typo}",
        f"Warning: \"{config}\": 'pid_namespaces' {typo}",
        f'Warning: "{commands}": entry "default" has \'timeout\', which is not a setting of '
        "a command (cmd, timeout_sec) and is ignored (a typo?)",
    ]
