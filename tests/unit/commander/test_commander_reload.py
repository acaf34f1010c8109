"""What a commander reload applies and what it names (``ruroco.commander.reload``); the real
process is in tests/e2e/test_e2e_commander_reload.py."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ruroco.commander.commands import CommandFile, parse_command_file
from ruroco.commander.config import CommanderConfig
from ruroco.commander.reload import (
    LIVE,
    RESTART_ONLY,
    applied,
    live_changes,
    needs_restart,
    restart_line,
    summary,
)

BASE = CommanderConfig(config_dir=Path("/etc/ruroco"))
#: one changed value per setting
CHANGED = {
    "socket_dir": Path("/run/elsewhere"),
    "socket_user": "nobody",
    "socket_group": "nogroup",
    "max_concurrent_commands": 4,
    "pid_namespace": False,
    "allow_non_routable_ips": True,
    "warm_shells": False,
    "warm_shell_groups": False,
}


def test_every_setting_is_either_live_or_restart_only() -> None:
    fields = {f.name for f in dataclasses.fields(CommanderConfig)} - {"config_dir"}
    assert set(RESTART_ONLY) | set(LIVE) == fields
    assert not set(RESTART_ONLY) & set(LIVE)


@given(st.sets(st.sampled_from(sorted(CHANGED))))
def test_changed_settings_are_sorted_into_restart_and_live(names: set[str]) -> None:
    new = dataclasses.replace(BASE, **{n: CHANGED[n] for n in names})
    restart = needs_restart(BASE, new)
    assert set(restart) == names & set(RESTART_ONLY)
    assert list(restart) == [n for n in RESTART_ONLY if n in names]  # in a fixed order
    assert set(live_changes(BASE, new)) == names & set(LIVE)
    running = applied(BASE, new)
    for name in RESTART_ONLY:
        assert getattr(running, name) == getattr(BASE, name)
    for name in LIVE:
        assert getattr(running, name) == getattr(new, name)


def test_config_dir_counts_only_as_the_socket_directory_it_defaults() -> None:
    moved = dataclasses.replace(BASE, config_dir=Path("/etc/other"))
    assert needs_restart(BASE, moved) == ("config_dir",)
    pinned = dataclasses.replace(BASE, socket_dir=Path("/run/ruroco"))
    assert needs_restart(pinned, dataclasses.replace(pinned, config_dir=Path("/x"))) == ()
    same = dataclasses.replace(BASE, socket_dir=Path("/etc/ruroco"))  # the default, spelt out
    assert needs_restart(BASE, same) == ()
    assert needs_restart(BASE, dataclasses.replace(BASE, socket_dir=Path("/run"))) == (
        "socket_dir",
    )


def test_restart_line_names_the_file_and_the_settings() -> None:
    line = restart_line("/etc/ruroco/config.toml", ("socket_dir", "pid_namespace"))
    assert line.startswith('Reload of "/etc/ruroco/config.toml": socket_dir, pid_namespace ')
    assert "restart" in line and "\n" not in line


def commands(text: str) -> CommandFile:
    return parse_command_file(tomllib.loads(text), "commands.toml")


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            '[commands]\na = "x"\nb = "y"\n',
            '[commands]\nb = "y"\nc = "z"\n',
            '2 command(s), 1 added ("c"), 1 removed ("a"), 0 changed; no grants;',
        ),
        (
            '[commands]\na = "x"\nb = "y"\n',
            '[commands]\na = { cmd = "x", timeout_sec = 5 }\nb = "y2"\n',
            '2 command(s), 0 added, 0 removed, 2 changed ("a", "b"); no grants;',
        ),
        (
            '[grants.ssh]\nports = ["tcp/22"]\ntimeout_sec = 60\n'
            '[grants.web]\nports = ["tcp/80"]\ntimeout_sec = 60\n',
            '[grants.ssh]\nports = ["tcp/22"]\ntimeout_sec = 30\n'
            '[grants.dns]\nports = ["udp/53"]\ntimeout_sec = 60\n',
            '0 command(s), 0 added, 0 removed, 0 changed; 2 grant(s), 1 added ("dns"), '
            '1 removed ("web"), 1 changed ("ssh"), 3 live grant(s) kept;',
        ),
    ],
)
def test_summary_says_what_was_added_removed_and_changed(old: str, new: str, expected: str) -> None:
    line = summary(
        "/etc/ruroco/commands.toml",
        "/etc/ruroco/config.toml",
        commands(old),
        commands(new),
        3,
        ("allow_non_routable_ips",),
        0.0012,
    )
    assert line.startswith('Reloaded "/etc/ruroco/commands.toml" and "/etc/ruroco/config.toml": ')
    assert expected in line, line
    assert line.endswith("; settings changed: allow_non_routable_ips; took 1.2 ms")


def test_summary_of_a_reload_that_changed_nothing() -> None:
    same = commands('[commands]\na = "x"\n')
    line = summary("c.toml", "f.toml", same, same, None, (), 0.0)
    assert line == (
        'Reloaded "c.toml" and "f.toml": 1 command(s), 0 added, 0 removed, 0 changed; '
        "no grants; settings changed: none; took 0.0 ms"
    )
