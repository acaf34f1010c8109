"""The root commander against a local attacker: directories and files it must not trust.

Each attack is carried out for real by an unprivileged user (fixture ``attacker``) on real
files; on the code before the hardening each of these either created or chowned a root file
through a planted link or ran a command file that another user could change.
"""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from commander_helpers import CommanderProcess, write_commands, write_config
from localuser import planted_link, run_as

from ruroco.ipc import MAX_SOCKET_PATH


def commander(
    config: Path, commands: Path, *extra: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the commander to completion (the refusals exit at once; a start would not)."""
    return subprocess.run(
        [
            sys.executable,
            *("-m", "ruroco.commander", "-c", str(config), "--commands", str(commands)),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=cwd,
    )


def files(where: Path, socket_dir: Path, **config: object) -> tuple[Path, Path]:
    keys: dict[str, object] = {
        "config_dir": str(where),
        "socket_dir": str(socket_dir),
        "socket_user": "",
        "socket_group": "",
    }
    keys.update(config)
    return write_config(where, **keys), write_commands(where, {"default": "true"})


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_lock_link_planted_by_another_user_creates_nothing(
    tmp_path: Path, shared_dir: Path, attacker_dir: Path, attacker: pwd.struct_passwd
) -> None:
    victim = shared_dir / "victim"  # e.g. /etc/nologin: root creating it locks users out
    run_as(attacker, "ln", "-s", str(victim), str(attacker_dir / "commander.lock"))
    config, commands = files(tmp_path, attacker_dir)
    line = one_error_line(commander(config, commands))
    assert f'Refusing socket_dir "{attacker_dir}"' in line
    assert f"owned by uid {attacker.pw_uid}, not by root" in line
    assert not os.path.lexists(victim)
    assert sorted(p.name for p in attacker_dir.iterdir()) == ["commander.lock"]


def test_socket_link_planted_by_another_user_chowns_nothing(
    tmp_path: Path, shared_dir: Path, attacker_dir: Path, attacker: pwd.struct_passwd
) -> None:
    victim = shared_dir / "shadow"
    victim.write_text("root only\n")
    victim.chmod(0o600)
    run_as(attacker, "ln", "-s", str(victim), str(attacker_dir / "ruroco.socket"))
    config, commands = files(tmp_path, attacker_dir, socket_user=attacker.pw_name)
    one_error_line(commander(config, commands))
    st = victim.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o600)


@pytest.mark.parametrize(
    ("mode", "who"), [(0o775, "its group"), (0o757, "others"), (0o1777, "group and others")]
)
def test_socket_dir_writable_by_others_is_refused(
    tmp_path: Path, shared_dir: Path, mode: int, who: str
) -> None:
    socket_dir = shared_dir / "run"
    socket_dir.mkdir()
    socket_dir.chmod(mode)
    config, commands = files(tmp_path, socket_dir)
    line = one_error_line(commander(config, commands))
    assert f"is writable by {who} (mode {mode:04o})" in line
    check = commander(config, commands, "--check")
    assert check.returncode == 1 and f"writable by {who}" in check.stderr
    assert list(socket_dir.iterdir()) == []


def test_an_ancestor_writable_by_others_is_refused(
    tmp_path: Path, shared_dir: Path, attacker_dir: Path
) -> None:
    """Whoever can rename a parent can swap the whole directory under the commander."""
    socket_dir = attacker_dir / "run"  # root-owned 0755, but inside the attacker's dir
    socket_dir.mkdir(mode=0o755)
    config, commands = files(tmp_path, socket_dir)
    line = one_error_line(commander(config, commands))
    assert f'directory "{attacker_dir}" is owned by uid' in line


def test_link_to_a_trusted_socket_dir_is_resolved_once(
    tmp_path: Path, shared_dir: Path, attacker_dir: Path, attacker: pwd.struct_passwd
) -> None:
    """The configured path may be a link; the commander works in what it pointed to at start."""
    real = shared_dir / "run"
    real.mkdir(mode=0o755)
    link = shared_dir / "run-link"
    link.symlink_to(real)
    config, commands = files(tmp_path, link, socket_user=attacker.pw_name)
    proc = CommanderProcess(real, config, commands)
    try:
        proc.wait_ready()
        st = os.lstat(real / "ruroco.socket")
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o204
        assert st.st_uid == attacker.pw_uid
        link.unlink()
        link.symlink_to(attacker_dir)  # re-pointing the link later changes nothing
        proc.send("default")
        assert proc.stop() == 0
    finally:
        proc.kill()
    assert not os.path.lexists(real / "ruroco.socket")  # removed on stop, as before
    assert list(attacker_dir.iterdir()) == []


def test_socket_is_staged_privately_and_a_stale_link_is_replaced_not_followed(
    tmp_path: Path, shared_dir: Path
) -> None:
    socket_dir = shared_dir / "run"
    socket_dir.mkdir(mode=0o755)
    victim = shared_dir / "victim"
    victim.write_text("x")
    victim.chmod(0o600)
    (socket_dir / "ruroco.socket").symlink_to(victim)
    leftover = socket_dir / ".ruroco.d"  # from a commander killed between bind and rename
    leftover.mkdir()
    (leftover / "s").write_text("stale")
    config, commands = files(tmp_path, socket_dir)
    proc = CommanderProcess(socket_dir, config, commands)
    try:
        proc.wait_ready()
        assert stat.S_ISSOCK(os.lstat(socket_dir / "ruroco.socket").st_mode)
        names = sorted(p.name for p in socket_dir.iterdir() if not p.name.startswith("commander-"))
        assert names == ["commander.lock", "ruroco.socket"]  # (commander-* are its output)
        assert stat.S_IMODE(victim.stat().st_mode) == 0o600 and victim.read_text() == "x"
    finally:
        proc.kill()


def test_lock_file_that_is_a_link_is_not_followed(tmp_path: Path, shared_dir: Path) -> None:
    """Even in a trusted directory a leftover link named like the lock is never opened."""
    socket_dir = shared_dir / "run"
    socket_dir.mkdir(mode=0o755)
    (socket_dir / "commander.lock").symlink_to(shared_dir / "victim")
    config, commands = files(tmp_path, socket_dir)
    line = one_error_line(commander(config, commands))
    assert "Lock file unavailable" in line
    assert not os.path.lexists(shared_dir / "victim")


@pytest.mark.parametrize("which", ["commands", "config"])
@pytest.mark.parametrize("mode", [0o666, 0o646, 0o664])
def test_command_and_config_files_others_can_write_are_refused(
    tmp_path: Path, which: str, mode: int
) -> None:
    config, commands = files(tmp_path, tmp_path / "run")
    target = commands if which == "commands" else config
    target.chmod(mode)
    line = one_error_line(commander(config, commands))
    assert f'"{target}": it is writable by' in line and f"(mode {mode:04o})" in line
    check = commander(config, commands, "--check")
    assert check.returncode == 1 and f'"{target}": it is writable by' in check.stderr
    assert not (tmp_path / "run").exists()


def test_commands_link_to_a_file_of_another_user_is_refused(
    tmp_path: Path, shared_dir: Path, attacker_dir: Path, attacker: pwd.struct_passwd
) -> None:
    evil = attacker_dir / "commands.toml"
    run_as(attacker, "sh", "-c", f"printf '[commands]\\ndefault = \"id\"\\n' > {evil}")
    evil.chmod(0o644)
    config, _ = files(tmp_path, tmp_path / "run")
    link = tmp_path / "commands.toml"
    link.unlink()
    link.symlink_to(evil)
    for extra in ((), ("--check",)):
        result = commander(config, link, *extra)
        assert result.returncode == 1, result.stdout
        assert f"owned by uid {attacker.pw_uid}, not by root" in result.stderr


def test_socket_path_too_long_and_socket_dir_a_file_fail_check_and_start_in_one_line(
    tmp_path: Path,
) -> None:
    long_dir = tmp_path / ("d" * (MAX_SOCKET_PATH - len(str(tmp_path)) - len("/ruroco.socket")))
    assert len(str(long_dir / "ruroco.socket")) == MAX_SOCKET_PATH + 1
    a_file = tmp_path / "not-a-dir"
    a_file.write_text("")
    for socket_dir, needle in ((long_dir, "Unix sockets allow at most 107"), (a_file, "not")):
        config, commands = files(tmp_path, socket_dir)
        check = commander(config, commands, "--check")
        assert check.returncode == 1 and needle in check.stderr, check.stderr
        assert needle in one_error_line(commander(config, commands))
    assert not long_dir.exists()


@pytest.mark.parametrize("key", ["config_dir", "socket_dir", "socket_user", "socket_group"])
def test_nul_in_a_config_string_is_one_error_line_naming_file_and_key(
    tmp_path: Path, key: str
) -> None:
    config, commands = files(tmp_path, tmp_path / "run")
    text = config.read_text().splitlines()
    text = [line for line in text if not line.startswith(f"{key} =")]
    config.write_text("\n".join([*text, f'{key} = "a\\u0000b"']) + "\n")
    for extra in ((), ("--check",)):
        result = commander(config, commands, *extra)
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert f'"{config}": {key} must not contain a NUL character' in result.stderr
        assert len(result.stderr.splitlines()) == 1


def test_socket_dir_link_planted_in_a_sticky_directory_is_refused(
    tmp_path: Path, shared_dir: Path, attacker: pwd.struct_passwd
) -> None:
    """Resolving the path ourselves bypasses fs.protected_symlinks, so we apply its rule."""
    sticky, rootdir = planted_link(shared_dir, attacker, "ruroco")
    config, commands = files(tmp_path, sticky / "ruroco")
    expected = f'link "{sticky}/ruroco" is owned by uid {attacker.pw_uid} in a directory others'
    assert expected in one_error_line(commander(config, commands))
    check = commander(config, commands, "--check")
    assert check.returncode == 1 and expected in check.stderr
    assert list(rootdir.iterdir()) == []


def test_a_relative_socket_dir_through_a_link_planted_in_the_cwd_is_refused(
    tmp_path: Path, shared_dir: Path, attacker: pwd.struct_passwd
) -> None:
    """A relative path is joined to the working directory, not resolved there first: resolving
    followed the attacker's link before the check saw it (a hostile-user review: root
    created its lock and socket in a directory the attacker chose, from a start in /tmp)."""
    sticky, rootdir = planted_link(shared_dir, attacker, "rel")
    config, commands = files(tmp_path, Path("rel"))
    expected = f'link "{sticky}/rel" is owned by uid {attacker.pw_uid} in a directory others'
    check = commander(config, commands, "--check", cwd=sticky)
    assert check.returncode == 1 and expected in check.stderr
    assert expected in one_error_line(commander(config, commands, cwd=sticky))
    assert list(rootdir.iterdir()) == []


def test_missing_socket_dir_under_a_directory_others_can_write_creates_nothing(
    tmp_path: Path, shared_dir: Path
) -> None:
    open_dir = shared_dir / "ww"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    config, commands = files(tmp_path, open_dir / "new" / "sub")
    expected = f'directory "{open_dir}" is writable by group and others (mode 0777)'
    check = commander(config, commands, "--check")
    assert check.returncode == 1 and expected in check.stderr
    assert expected in one_error_line(commander(config, commands))
    assert list(open_dir.iterdir()) == []  # refused before root created anything there


def test_a_staging_directory_left_with_anything_inside_is_cleared(
    tmp_path: Path, shared_dir: Path
) -> None:
    socket_dir = shared_dir / "run"
    socket_dir.mkdir(mode=0o755)
    (socket_dir / ".ruroco.d" / "sub" / "deeper").mkdir(parents=True)
    (socket_dir / ".ruroco.d" / "sub" / "link").symlink_to(shared_dir)
    config, commands = files(tmp_path, socket_dir)
    proc = CommanderProcess(socket_dir, config, commands)
    try:
        proc.wait_ready()
        assert not os.path.lexists(socket_dir / ".ruroco.d")
        assert shared_dir.is_dir() and socket_dir.is_dir()  # the link was not followed
    finally:
        proc.kill()


def test_a_socket_dir_socket_user_cannot_reach_is_named_by_check_and_start(
    tmp_path: Path, shared_dir: Path, attacker: pwd.struct_passwd
) -> None:
    """Everything passed and every knock was then dropped by the server with "Permission
    denied" (found trying the docs as a new operator): the commander knows socket_user, so it
    says so, as a warning (an ACL or capability the mode bits do not show may let it in)."""
    socket_dir = shared_dir / "run"
    socket_dir.mkdir(mode=0o700)
    config, commands = files(tmp_path, socket_dir, socket_user=attacker.pw_name)
    message = (
        f'socket_user "{attacker.pw_name}" cannot reach socket_dir "{socket_dir}": '
        f'directory "{socket_dir}" (mode 0700, uid 0, gid 0) does not let it through, so the '
        "server could hand over no request"
    )
    check = commander(config, commands, "--check")
    assert (check.returncode, check.stderr) == (0, f"Warning: {config}: {message}\n")
    proc = CommanderProcess(socket_dir, config, commands)
    try:
        proc.wait_ready()
        assert f"Warning: {message}" in proc.stdout + proc.stderr
    finally:
        assert proc.stop() == 0
    socket_dir.chmod(0o755)
    assert commander(config, commands, "--check").stderr == ""
