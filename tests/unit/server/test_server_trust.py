"""The server's own findings from the security review, each against real files and processes:
one blocklist per server, files others could change, stale temp files, NUL bytes, and
``--check`` refusing what start refuses, in one line."""

from __future__ import annotations

import ast
import os
import pwd
import signal
import subprocess
from pathlib import Path

import pytest
from localuser import in_fork_as, planted_link, run_as
from server_helpers import write_setup
from test_server_cli import BIN, clean_env, cli

from ruroco.protocol import generate_key
from ruroco.server.blocklist import read_file
from ruroco.server.check import check as server_check
from ruroco.server.server import serve


def free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [BIN, "-c", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=clean_env(RUROCO_LISTEN_ADDRESS=f"127.0.0.1:{free_port()}"),
        )


def wait_running(proc: subprocess.Popen[bytes], log: Path) -> None:
    import time

    deadline = time.monotonic() + 20
    while "Running server on" not in log.read_text():
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.02)


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def test_second_server_on_the_same_blocklist_exits_naming_the_lock(tmp_path: Path) -> None:
    """Two servers with one blocklist_dir would each accept the same packet once."""
    config = write_setup(tmp_path)
    first = start(config, tmp_path / "first.log")
    try:
        wait_running(first, tmp_path / "first.log")
        second = subprocess.run(
            [BIN, "-c", str(config)],
            capture_output=True,
            text=True,
            timeout=30,
            env=clean_env(RUROCO_LISTEN_ADDRESS=f"127.0.0.1:{free_port()}"),
        )
        line = one_error_line(second)
        assert f'Server already running (lock at "{tmp_path}/state/server.lock")' in line
        assert first.poll() is None
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(15) == 0
    # once the first has stopped, the lock is free again
    again = start(config, tmp_path / "again.log")
    try:
        wait_running(again, tmp_path / "again.log")
    finally:
        again.kill()
        again.wait(15)


def test_stale_temp_files_of_a_killed_server_are_removed_and_nothing_else(
    tmp_path: Path,
) -> None:
    config = write_setup(tmp_path)
    state = tmp_path / "state"
    stale = [state / "blocklist.msgpck.1764582000123456789.tmp", state / "blocklist.msgpck.1.tmp"]
    kept = [state / "blocklist.msgpck.x1.tmp", state / "other.1.tmp", state / "blocklist.msgpck"]
    for path in stale + kept[:2]:
        path.write_bytes(b"partial")
    log = tmp_path / "server.log"
    proc = start(config, log)
    try:
        wait_running(proc, log)
        assert not any(p.exists() for p in stale)
        assert all(p.exists() for p in kept)
        assert "Removed 2 stale temporary blocklist file(s)" in log.read_text()
        assert read_file(state / "blocklist.msgpck")  # the real file was written and decodes
    finally:
        proc.kill()
        proc.wait(15)


WHO = {0o666: "group and others", 0o646: "others", 0o620: "its group"}


@pytest.mark.parametrize("mode", sorted(WHO))
def test_key_file_others_can_write_is_refused_by_start_and_check(tmp_path: Path, mode: int) -> None:
    config = write_setup(tmp_path)
    key = tmp_path / "etc" / "ruroco.key"
    key.chmod(mode)
    expected = f'Refusing key file "{key}": it is writable by {WHO[mode]} (mode {mode:04o})'
    assert expected in one_error_line(cli("-c", str(config)))
    check = cli("--check", "-c", str(config))
    assert check.returncode == 1 and f"Error: {expected}" in check.stderr.splitlines()
    assert not (tmp_path / "state" / "blocklist.msgpck").exists()


def test_key_file_others_can_read_is_a_warning_in_check_and_in_the_log(tmp_path: Path) -> None:
    config = write_setup(tmp_path)
    key = tmp_path / "etc" / "ruroco.key"
    key.chmod(0o644)
    check = cli("--check", "-c", str(config))
    assert check.returncode == 0
    warning = f'Warning: Key file "{key}" is readable by every user on this host (mode 0644)'
    assert check.stderr.startswith(warning) and len(check.stderr.splitlines()) == 1
    log = tmp_path / "server.log"
    proc = start(config, log)
    try:
        wait_running(proc, log)
        assert f'ERROR ] Key file "{key}" is readable by every user' in log.read_text()
    finally:
        proc.kill()
        proc.wait(15)


def test_a_link_to_a_key_file_others_can_write_is_refused(tmp_path: Path) -> None:
    config = write_setup(tmp_path)
    key = tmp_path / "etc" / "ruroco.key"
    target = tmp_path / "elsewhere.key"
    key.rename(target)
    target.chmod(0o666)
    key.symlink_to(target)
    assert "it is writable by group and others" in one_error_line(cli("-c", str(config)))


@pytest.mark.parametrize("mode", [0o777, 0o1777, 0o757, 0o775])
def test_blocklist_dir_others_can_write_is_refused(tmp_path: Path, mode: int) -> None:
    config = write_setup(tmp_path)
    state = tmp_path / "state"
    state.chmod(mode)
    line = one_error_line(cli("-c", str(config)))
    who = {0o757: "others", 0o775: "its group"}.get(mode, "group and others")
    assert f'Refusing blocklist_dir "{state}": it is writable by {who} (mode {mode:04o})' in line
    check = cli("--check", "-c", str(config))
    assert check.returncode == 1 and "Refusing blocklist_dir" in check.stderr
    assert list(state.iterdir()) == []  # no lock, no blocklist written


def test_server_config_others_can_write_is_refused(tmp_path: Path) -> None:
    config = write_setup(tmp_path)
    config.chmod(0o646)
    for args in (("-c", str(config)), ("--check", "-c", str(config))):
        result = cli(*args)
        assert result.returncode == 1
        assert f'Refusing server config "{config}": it is writable by others' in result.stderr


@pytest.mark.parametrize("key", ["config_dir", "blocklist_dir", "socket_dir", "address"])
def test_nul_in_a_path_or_address_is_one_error_line(tmp_path: Path, key: str) -> None:
    config = write_setup(tmp_path)
    lines = [ln for ln in config.read_text().splitlines() if not ln.startswith(f"{key} =")]
    config.write_text("\n".join([*lines, f'{key} = "127.0.0.1\\u0000:80"']) + "\n")
    expected = f'"{config}": {key} must not contain a NUL character'
    for args in (("-c", str(config)), ("--check", "-c", str(config))):
        result = cli(*args)
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert expected in result.stderr and len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize(
    ("address", "needle"),
    [
        ("127.0.0.1:99999", "invalid port value"),
        ("no-such-host.invalid:80", "Could not UdpSocket bind"),
        ("127.0.0.1", "invalid socket address"),
    ],
)
def test_check_refuses_an_address_start_cannot_bind(
    tmp_path: Path, address: str, needle: str
) -> None:
    config = write_setup(tmp_path, extra=f'address = "{address}"\n')
    check = cli("--check", "-c", str(config))
    assert check.returncode == 1 and needle in check.stderr, check.stderr
    env = clean_env()
    start_result = subprocess.run(
        [BIN, "-c", str(config)], capture_output=True, text=True, timeout=60, env=env
    )
    assert needle in one_error_line(start_result)


def test_check_and_start_refuse_a_socket_path_too_long_for_unix_sockets(tmp_path: Path) -> None:
    config = write_setup(tmp_path)
    long_dir = "/run/" + "r" * 100
    lines = [ln for ln in config.read_text().splitlines() if not ln.startswith("socket_dir =")]
    config.write_text("\n".join([*lines, f'socket_dir = "{long_dir}"']) + "\n")
    needle = "Unix sockets allow at most 107"
    check = cli("--check", "-c", str(config))
    assert check.returncode == 1 and needle in check.stderr
    assert needle in one_error_line(cli("-c", str(config)))
    assert not os.path.exists(tmp_path / "state" / "blocklist.msgpck")


def test_key_dir_others_can_write_is_refused_so_no_key_can_be_planted(
    tmp_path: Path, shared_dir: Path, attacker: pwd.struct_passwd
) -> None:
    config = write_setup(tmp_path)
    keys = shared_dir / "keys"
    keys.mkdir()
    keys.chmod(0o1777)
    (tmp_path / "etc" / "ruroco.key").rename(keys / "admin.key")
    evil = generate_key()  # written by the attacker, as if they had made it
    run_as(attacker, "sh", "-c", f"printf %s {evil} > {keys}/evil.key; chmod 600 {keys}/evil.key")
    text = config.read_text().replace(f'config_dir = "{tmp_path}/etc"', f'config_dir = "{keys}"')
    config.write_text(text)
    expected = f'Refusing config_dir "{keys}": it is writable by group and others (mode 1777)'
    assert expected in one_error_line(cli("-c", str(config)))
    check = cli("--check", "-c", str(config))
    assert check.returncode == 1 and expected in check.stderr


def test_blocklist_dir_of_another_user_is_refused(
    tmp_path: Path, attacker_dir: Path, attacker: pwd.struct_passwd
) -> None:
    """Its owner could replace the blocklist between two starts and reset the replay floor."""
    config = write_setup(tmp_path)
    text = config.read_text().replace(
        f'blocklist_dir = "{tmp_path}/state"', f'blocklist_dir = "{attacker_dir}"'
    )
    config.write_text(text)
    line = one_error_line(cli("-c", str(config)))
    assert f"is owned by uid {attacker.pw_uid}, not by root or this service" in line
    assert list(attacker_dir.iterdir()) == []


@pytest.mark.parametrize("plant", ["dev-zero", "fifo"])
def test_check_as_root_does_not_hang_or_exhaust_on_a_planted_blocklist(
    tmp_path: Path, plant: str
) -> None:
    config = write_setup(tmp_path)
    blocklist = tmp_path / "state" / "blocklist.msgpck"
    if plant == "fifo":
        os.mkfifo(blocklist)
    else:
        blocklist.symlink_to("/dev/zero")
    check = cli("--check", "-c", str(config))  # cli() has a 30 s timeout
    assert check.returncode == 1 and "Traceback" not in check.stderr
    assert "blocklist" in check.stderr


@pytest.mark.parametrize("target", ["/root/.ruroco-test-exists", "/root/.ruroco-test-absent"])
def test_a_blocklist_link_is_refused_whatever_it_points_to(tmp_path: Path, target: str) -> None:
    """The blocklist directory's owner (the service account) can plant a link there; root's
    ``--check`` (the role's validate step) must not follow it: before, a root-only file that
    exists gave a decode error and one that does not gave OK, which told the planter what
    exists where it cannot look (hostile-user review). Start refuses it alike."""
    Path("/root/.ruroco-test-exists").write_bytes(b"\x81\xa1a\x01 not a blocklist")
    try:
        config = write_setup(tmp_path)
        blocklist = tmp_path / "state" / "blocklist.msgpck"
        blocklist.symlink_to(target)
        expected = f'Error: Refusing blocklist "{blocklist}": it is a link'
        check = cli("--check", "-c", str(config))
        assert (check.returncode, check.stdout, check.stderr) == (1, "", expected + "\n")
        assert one_error_line(cli("-c", str(config))) == expected
        assert os.path.islink(blocklist)  # nothing written through it or over it
    finally:
        Path("/root/.ruroco-test-exists").unlink()


def test_a_hard_link_in_the_blocklists_place_is_refused(tmp_path: Path) -> None:
    """A hard link to a root-only file is no symbolic link, but the same oracle (review of
    the fix above; needs fs.protected_hardlinks off for the service account to make one).
    The server's own file has one link: it is written by rename."""
    secret = Path("/root/.ruroco-test-hardlinked")
    secret.write_bytes(b"\x81\xa1a\x01 not a blocklist")
    secret.chmod(0o600)
    try:
        config = write_setup(tmp_path)
        blocklist = tmp_path / "state" / "blocklist.msgpck"
        os.link(secret, blocklist)
        expected = (
            f'Error: Refusing blocklist "{blocklist}": it has 2 links '
            "(a file written by rename has 1)"
        )
        check = cli("--check", "-c", str(config))
        assert (check.returncode, check.stderr) == (1, expected + "\n")
        assert one_error_line(cli("-c", str(config))) == expected
    finally:
        secret.unlink()


def test_a_link_planted_in_a_sticky_directory_is_not_followed(
    tmp_path: Path, shared_dir: Path, attacker: pwd.struct_passwd
) -> None:
    """A link in /tmp-like directories redirects the server's socket only if we follow it."""
    sticky, _ = planted_link(shared_dir, attacker, "sock")
    config = write_setup(tmp_path)
    text = config.read_text().replace(
        f'socket_dir = "{tmp_path}/run"', f'socket_dir = "{sticky}/sock"'
    )
    config.write_text(text)
    expected = (
        f'link "{sticky}/sock" is owned by uid {attacker.pw_uid} in a directory others can write'
    )
    assert expected in one_error_line(cli("-c", str(config)))


def _check_as(user: pwd.struct_passwd, config: Path) -> tuple[list[str], list[str]]:
    """``ruroco-server --check``'s problems and warnings, run as ``user`` (in a fork)."""
    report = in_fork_as(user.pw_uid, user.pw_gid, lambda: repr(_check(config)))
    assert report.startswith("ok "), report
    problems, warnings = ast.literal_eval(report[3:])
    return problems, warnings


def _check(config: Path) -> tuple[list[str], list[str]]:
    result = server_check(config)
    return result.problems, result.warnings


def test_check_as_the_service_account_refuses_what_start_cannot_write(
    shared_dir: Path, attacker: pwd.struct_passwd
) -> None:
    """Run as the account the server runs as, ``--check`` said OK for a blocklist_dir that
    account cannot write, and start then failed on ``server.lock`` (found trying the docs as a
    new operator). It now refuses what start refuses, and says why."""
    config = write_setup(shared_dir / "s")
    for path in (config.parent, *config.parent.iterdir()):
        os.chown(path, attacker.pw_uid, attacker.pw_gid)
    state = shared_dir / "s" / "state"  # root's, mode 0755: the account cannot write it
    problems, _ = _check_as(attacker, config)
    assert problems == [
        f'Refusing blocklist_dir "{state}": this user (uid {attacker.pw_uid}) cannot write there'
    ]

    def start() -> None:
        os.environ["RUROCO_LISTEN_ADDRESS"] = f"127.0.0.1:{free_port()}"
        serve(config)

    report = in_fork_as(attacker.pw_uid, attacker.pw_gid, start)
    assert report.startswith("error Lock file unavailable") and "server.lock" in report, report
    os.chown(state, attacker.pw_uid, attacker.pw_gid)
    assert _check_as(attacker, config) == ([], [])


def test_check_warns_when_this_account_could_not_reach_the_commanders_socket(
    shared_dir: Path, attacker: pwd.struct_passwd
) -> None:
    """A socket_dir the server cannot enter passed every check, and then every accepted knock
    was dropped with "Permission denied": a warning names it (not a refusal: the commander
    may start later and fix its socket)."""
    config = write_setup(shared_dir / "s")
    for path in (config.parent, *config.parent.iterdir(), shared_dir / "s" / "state"):
        os.chown(path, attacker.pw_uid, attacker.pw_gid)
    run = shared_dir / "s" / "run"
    run.chmod(0o700)  # root's
    assert _check_as(attacker, config) == (
        [],
        [
            f'socket_dir "{run}" cannot be entered by this user (uid {attacker.pw_uid}): '
            "the server could hand over no request"
        ],
    )
    run.chmod(0o755)
    assert _check_as(attacker, config) == ([], [])
