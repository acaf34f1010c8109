"""``ruroco-commander --check`` (Ansible ``validate:``) and other CLI behaviour."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from commander_helpers import write_commands, write_config

SECRET_CMD = "ufw allow from 10.9.8.7 SECRET"


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ruroco.commander", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


def _files(tmp_path: Path, **config: object) -> tuple[Path, Path]:
    keys: dict[str, object] = {"config_dir": str(tmp_path / "never-created")}
    keys.update(config)
    return write_config(tmp_path, **keys), write_commands(
        tmp_path, {"open_port": SECRET_CMD, "close_port": ("true", 5), "x": "y"}
    )


def test_check_ok_prints_summary_and_touches_nothing(tmp_path: Path) -> None:
    config, commands = _files(tmp_path, socket_user="root", socket_group="root")
    before = sorted(p.name for p in tmp_path.iterdir())
    result = cli("--check", "-c", str(config), "--commands", str(commands))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1
    assert "(3 commands)" in result.stdout
    assert result.stderr == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no lock, no socket, no dir
    assert SECRET_CMD not in result.stdout


def test_check_bad_commands_names_file_and_entry_not_content(tmp_path: Path) -> None:
    config, _ = _files(tmp_path, socket_user="", socket_group="")
    bad = tmp_path / "bad-commands.toml"
    bad.write_text(f'[commands]\nfine = "{SECRET_CMD}"\nbroken = {{ timeout_sec = 3 }}\n')
    result = cli("--check", "-c", str(config), "--commands", str(bad))
    assert result.returncode == 1
    assert str(bad) in result.stderr and '"broken"' in result.stderr
    assert "SECRET" not in result.stderr + result.stdout
    assert result.stdout == ""


def test_check_reports_every_broken_file(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('socket_user = "SECRET-USER"\n= broken\n')
    commands = tmp_path / "commands.toml"
    commands.write_text("[not_commands]\n")
    result = cli("--check", "-c", str(config), "--commands", str(commands))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 2
    assert str(config) in lines[0] and str(commands) in lines[1]
    assert "SECRET" not in result.stderr
    assert "missing [commands] table" in lines[1]


def test_check_unknown_socket_user_and_group(tmp_path: Path) -> None:
    config, commands = _files(tmp_path, socket_user="no-such-user-xyz", socket_group="")
    result = cli("--check", "-c", str(config), "--commands", str(commands))
    assert result.returncode == 1
    assert "Could not find user no-such-user-xyz" in result.stderr
    assert str(config) in result.stderr
    config, commands = _files(tmp_path, socket_user="", socket_group="no-such-group-xyz")
    result = cli("--check", "-c", str(config), "--commands", str(commands))
    assert result.returncode == 1
    assert "Could not find group no-such-group-xyz" in result.stderr


def test_check_with_default_ruroco_user_requires_it(tmp_path: Path) -> None:
    import pwd

    config, commands = _files(tmp_path)  # socket_user/group default to "ruroco"
    result = cli("--check", "-c", str(config), "--commands", str(commands))
    try:
        pwd.getpwnam("ruroco")
    except KeyError:
        assert result.returncode == 1 and "Could not find user ruroco" in result.stderr
    else:
        assert result.returncode == 0


def test_check_only_the_file_given(tmp_path: Path) -> None:
    """Each file can be validated before the other exists (Ansible templates them in turn)."""
    config, commands = _files(tmp_path, socket_user="", socket_group="")
    only_config = cli("--check", "-c", str(config))
    assert only_config.returncode == 0, only_config.stderr
    assert "config" in only_config.stdout and "commands" not in only_config.stdout
    only_commands = cli("--check", "--commands", str(commands))
    assert only_commands.returncode == 0, only_commands.stderr
    assert "(3 commands)" in only_commands.stdout and "config " not in only_commands.stdout


def test_check_without_files_checks_both_defaults() -> None:
    result = cli("--check")
    if result.returncode == 0:  # a real, valid installation
        assert "/etc/ruroco/config.toml" in result.stdout
        assert "/etc/ruroco/commands.toml" in result.stdout
    else:
        assert result.returncode == 1
        assert "/etc/ruroco/" in result.stderr


def test_check_single_command_summary(tmp_path: Path) -> None:
    commands = write_commands(tmp_path, {"only": "true"})
    result = cli("--check", "--commands", str(commands))
    assert result.returncode == 0
    assert result.stdout.strip().endswith("(1 command)")


def test_relative_paths(tmp_path: Path) -> None:
    _files(tmp_path, socket_user="", socket_group="")
    result = cli("--check", "-c", "config.toml", "--commands", "commands.toml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr


def test_help_and_usage_errors() -> None:
    help_result = cli("-h")
    assert help_result.returncode == 0
    for option in ("--config", "--commands", "--check", "--version"):
        assert option in help_result.stdout
    assert "/etc/ruroco/config.toml" in help_result.stdout
    bad = cli("--no-such-option")
    assert bad.returncode == 2
    assert "No such option" in bad.stderr


def test_short_option_equals_value_is_the_path_as_in_the_original(tmp_path: Path) -> None:
    """clap reads ``-c=PATH`` as ``PATH``; click read ``=PATH``."""
    config, commands = _files(tmp_path, socket_user="", socket_group="")
    result = cli("--check", f"-c={config}", f"--commands={commands}")
    assert result.returncode == 0, result.stderr
    missing = cli(f"-c={tmp_path / 'nope.toml'}")
    assert missing.returncode == 1
    assert missing.stderr.startswith(f'Error: Could not read "{tmp_path / "nope.toml"}"')


def test_an_option_given_twice_is_a_usage_error_as_in_the_original(tmp_path: Path) -> None:
    config, commands = _files(tmp_path, socket_user="", socket_group="")
    for args in (
        ("--check", "-c", str(config), "--config", str(config)),
        ("--check", "--commands", str(commands), f"--commands={commands}"),
        ("--check", "--check", "-c", str(config)),
    ):
        result = cli(*args)
        assert result.returncode == 2, args
        assert result.stderr.rstrip().endswith("cannot be used multiple times."), result.stderr


def test_run_mode_reports_bad_commands_cleanly(tmp_path: Path) -> None:
    config, _ = _files(tmp_path, socket_user="", socket_group="")
    bad = tmp_path / "bad.toml"
    bad.write_text("[commands]\nx = 5\n")
    result = cli("-c", str(config), "--commands", str(bad))
    assert result.returncode == 1
    assert result.stderr.startswith("Error: Could not parse commands file")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "never-created").exists()


def test_check_names_the_warm_shells(tmp_path: Path) -> None:
    """docs/performance.md, "Warm shells": on or off, and for how many of the commands."""
    config, commands = _files(tmp_path, socket_user="root", socket_group="root")
    result = cli("--check", "-c", str(config), "--commands", str(commands))
    assert "ok (warm shells: on, for all 3 command(s))" in result.stdout, result.stderr
    assert "warm shells: on)" in cli("--check", "-c", str(config)).stdout
    many = write_commands(tmp_path, {f"c{i}": "true" for i in range(70)})
    result = cli("--check", "-c", str(config), "--commands", str(many))
    assert "warm shells: on, for the first 64 of 70 commands" in result.stdout, result.stderr
    off = write_config(
        tmp_path,
        config_dir=str(tmp_path / "x"),
        socket_user="root",
        socket_group="root",
        warm_shells=False,
    )
    assert "ok (warm shells: off)" in cli("--check", "-c", str(off)).stdout
