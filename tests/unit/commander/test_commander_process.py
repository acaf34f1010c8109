"""The commander as a real process on a real Unix socket.

The message: docs/protocol.md, Commander message; concurrency: docs/deviations.md #3.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from commander_helpers import (
    CommanderProcess,
    message,
    wait_for,
    write_commands,
    write_config,
)
from loglines import shown_and_counted
from procfind import marked_pids, marker, no_survivors, pid_gone

from ruroco.cmdhash import command_hash
from ruroco.commander.commander import socket_dir_of
from ruroco.errors import RurocoError

RUN_WAIT = 10.0  # generous bound for "the command ran"
STALLED = 20


def test_socket_mode_owner_and_umask(start_commander, tmp_path: Path) -> None:
    commander = start_commander({}, socket_user="root", socket_group="root")
    st = os.stat(commander.socket)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o204
    assert (st.st_uid, st.st_gid) == (0, 0)
    status = Path(f"/proc/{commander.proc.pid}/status").read_text()
    assert "Umask:\t0022" in status  # restored after binding under 077
    assert (tmp_path / "commander.lock").exists()
    assert 'Binding Unix Listener on "' in commander.stdout


def test_socket_dir_is_created_and_preferred(start_commander, tmp_path: Path) -> None:
    sock_dir = tmp_path / "run" / "deep" / "ruroco"
    commander = start_commander({}, socket_dir=str(sock_dir))
    assert stat.S_ISSOCK(os.stat(sock_dir / "ruroco.socket").st_mode)
    assert (sock_dir / "commander.lock").exists()
    assert not commander.socket.exists()  # not in config_dir


def test_second_commander_refuses_and_first_keeps_working(
    start_commander,
    tmp_path: Path,
) -> None:
    out = tmp_path / "ran.txt"
    first = start_commander(
        {"default": f'printf %s "$RUROCO_IP" > {out}'}, allow_non_routable_ips=True
    )
    inode = os.stat(first.socket).st_ino
    second = start_commander({}, wait=False, allow_non_routable_ips=True)
    assert second.proc.wait(15) == 1
    assert "Commander already running" in second.stderr
    assert os.stat(first.socket).st_ino == inode  # the live socket was not touched
    first.send("default", "127.0.0.1")
    assert wait_for(lambda: out.exists() and out.read_text() == "127.0.0.1", RUN_WAIT)


def test_old_socket_file_is_replaced(start_commander, tmp_path: Path) -> None:
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(tmp_path / "ruroco.socket"))
    stale.close()  # leftover file of a killed commander
    out = tmp_path / "ran"
    commander = start_commander({"default": f"touch {out}"}, allow_non_routable_ips=True)
    commander.send("default", "::1")
    assert wait_for(out.exists, RUN_WAIT)


@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        ("1.2.3.4", "1.2.3.4"),
        ("::ffff:10.0.0.1", "10.0.0.1"),
        ("dead:beef:dead:beef:dead:beef:dead:beef", "dead:beef:dead:beef:dead:beef:dead:beef"),
    ],
)
def test_ruroco_ip_reaches_command(start_commander, tmp_path: Path, ip: str, expected: str) -> None:
    out = tmp_path / "ip.txt"
    commander = start_commander(
        {"default": f'printf %s "$RUROCO_IP" > {out}.tmp && mv {out}.tmp {out}'},
        allow_non_routable_ips=True,
    )
    commander.send("default", ip)
    assert wait_for(out.exists, RUN_WAIT)
    assert out.read_text() == expected


def test_ip_filter_refuses_non_routable_and_runs_routable(
    start_commander,
    tmp_path: Path,
) -> None:
    out = tmp_path / "ips"
    commander = start_commander({"default": f'echo "$RUROCO_IP" >> {out}'})
    for ip in ("127.0.0.1", "::1", "10.0.0.1", "::ffff:192.168.1.1", "100.64.0.1", "2001:db8::1"):
        commander.send("default", ip)
    commander.send("default", "8.8.8.8")
    assert wait_for(out.exists, RUN_WAIT)
    time.sleep(0.5)
    assert out.read_text() == "8.8.8.8\n"
    assert wait_for(
        lambda: commander.stderr.count("refusing to execute with non-routable IP") == 6, 5
    )
    assert "refusing to execute with non-routable IP: 192.168.1.1" in commander.stderr


def test_timeout_kills_grandchildren_while_other_commands_run(
    start_commander,
    tmp_path: Path,
) -> None:
    """The grandchild is found by its argument: in a PID namespace ``$!`` is not our pid."""
    mark = marker(30)
    fast = tmp_path / "fast"
    commander = start_commander(
        {
            "hang": (f"sleep {mark} & wait", 6),
            "fast": f"touch {fast}",
        },
        allow_non_routable_ips=True,
    )
    with no_survivors(mark):
        commander.send("hang")
        assert wait_for(lambda: marked_pids(mark), RUN_WAIT)
        (grandchild,) = marked_pids(mark)
        commander.send("fast")
        assert wait_for(fast.exists, 4.5)  # before "hang" times out after 6 s
        assert not pid_gone(grandchild)
        assert wait_for(lambda: pid_gone(grandchild), RUN_WAIT)
    assert wait_for(lambda: "Execution timed out after 6s and was killed" in commander.stderr, 5)
    assert commander.proc.poll() is None


def test_same_name_runs_in_arrival_order(start_commander, tmp_path: Path) -> None:
    out = tmp_path / "order"
    # The first request is the slowest: parallel execution would put it last.
    cmd = f'case "$RUROCO_IP" in 1.0.0.1) sleep 0.5;; esac; echo "$RUROCO_IP" >> {out}'
    commander = start_commander({"seq": cmd}, allow_non_routable_ips=True)
    ips = [f"1.0.0.{i}" for i in range(1, 13)]
    for ip in ips:
        commander.send("seq", ip)
    assert wait_for(lambda: out.exists() and len(out.read_text().split()) == len(ips), RUN_WAIT)
    assert out.read_text().split() == ips


def test_the_next_request_of_a_name_does_not_wait_for_a_background_writer(
    start_commander, tmp_path: Path
) -> None:
    """A request's turn ends when its ``sh`` is reaped: what is left of its output (a
    background process still holding the pipe, read for at most 1 s) is read while the next
    request of the name already runs (docs/performance.md, "The commander's path")."""
    out = tmp_path / "times"
    cmd = f'case "$RUROCO_IP" in 1.0.0.1) sleep 3 & ;; esac; date +%s.%N >> {out}'
    commander = start_commander({"seq": cmd}, allow_non_routable_ips=True, pid_namespace=False)
    commander.send("seq", "1.0.0.1")
    commander.send("seq", "1.0.0.2")
    assert wait_for(lambda: out.exists() and len(out.read_text().split()) == 2, RUN_WAIT)
    first, second = (float(t) for t in out.read_text().split())
    assert 0 <= second - first < 0.8  # waiting for the drain took 1 s


def test_a_name_whose_output_lingers_never_takes_the_last_free_worker(
    start_commander, tmp_path: Path
) -> None:
    """Two workers, process-group mode: four requests of a name whose command leaves a
    background process on its output (each report waits the whole second), then one of
    another name, which must not wait for those reports."""
    out = tmp_path / "quiet"
    commander = start_commander(
        {"bg": "sleep 2 & true", "quiet": f"date +%s.%N > {out}"},
        allow_non_routable_ips=True,
        pid_namespace=False,
        max_concurrent_commands=2,
    )
    for _ in range(4):
        commander.send("bg")
    time.sleep(0.1)
    sent = time.time()
    commander.send("quiet")
    assert wait_for(lambda: out.exists() and out.read_text().strip(), RUN_WAIT)
    assert float(out.read_text()) - sent < 0.5  # a report takes the whole second


def test_stalled_connections_do_not_block_others(start_commander, tmp_path: Path) -> None:
    out = tmp_path / "ran"
    commander = start_commander({"default": f"touch {out}"}, allow_non_routable_ips=True)
    stalled = []
    try:
        for i in range(STALLED):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(str(commander.socket))
            if i % 2:
                s.sendall(message("default")[:12])  # half a message, then silence
            stalled.append(s)
        started = time.monotonic()
        commander.send("default")
        # Read one after another with a 1 s timeout each, this would take 20 s.
        assert wait_for(out.exists, 6)
        assert time.monotonic() - started < 6
        # Still open on our side: the commander gives up on each after its 1 s.
        assert wait_for(lambda: commander.stderr.count("timed out after 1s") == STALLED, RUN_WAIT)
    finally:
        for s in stalled:
            s.close()
    assert "timed out after 1s with 12 of 24 bytes" in commander.stderr
    assert commander.proc.poll() is None


def test_bad_input_never_stops_the_commander(start_commander, tmp_path: Path) -> None:
    out = tmp_path / "ran"
    commander = start_commander({"default": f"echo x >> {out}"}, allow_non_routable_ips=True)
    commander.send("unknown-name")
    commander.send_raw(b"")
    commander.send_raw(b"short")
    commander.send_raw(os.urandom(24))
    commander.send_raw(b"\xff" * 23)
    for _ in range(5):
        commander.send_raw(os.urandom(int.from_bytes(os.urandom(1), "big")))
    commander.send_raw(message("default") + b"trailing bytes are ignored")
    assert wait_for(lambda: out.exists() and out.read_text() == "x\n", RUN_WAIT)
    commander.send("default")
    assert wait_for(lambda: out.read_text() == "x\nx\n", RUN_WAIT)
    assert commander.proc.poll() is None
    err = commander.stderr
    # The source, so a typo in a client's -c can be traced (found by a new operator's trial).
    assert f"Unknown command name: {command_hash('unknown-name')} (for 1.2.3.4)" in err
    assert "connection closed after 5 of 24 bytes" in err
    assert "connection closed after 23 of 24 bytes" in err
    assert "Traceback" not in err


def test_sigterm_removes_socket_and_lets_running_command_finish(
    start_commander,
    tmp_path: Path,
) -> None:
    done = tmp_path / "done"
    started = tmp_path / "started"
    commander = start_commander(
        {"job": (f"touch {started}; sleep 1; touch {done}", 10)}, allow_non_routable_ips=True
    )
    commander.send("job")
    assert wait_for(started.exists, RUN_WAIT)
    commander.proc.send_signal(signal.SIGTERM)
    assert wait_for(lambda: not commander.socket.exists(), 5)  # stops accepting at once
    assert commander.proc.wait(15) == 0
    assert done.exists()
    assert "Commander stopped" in commander.stdout


def test_second_signal_kills_running_commands(start_commander, tmp_path: Path) -> None:
    mark = marker(60)
    commander = start_commander(
        {"forever": (f"setsid sleep {mark} & wait", 2**63 - 1)},
        allow_non_routable_ips=True,
    )
    with no_survivors(mark):
        commander.send("forever")
        assert wait_for(lambda: marked_pids(mark), RUN_WAIT)
        (grandchild,) = marked_pids(mark)
        commander.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert commander.proc.poll() is None  # graceful: still waiting for the command
        commander.proc.send_signal(signal.SIGINT)
        assert commander.proc.wait(10) == 0
        assert wait_for(lambda: pid_gone(grandchild), 5)  # even though it left the session
    assert not commander.socket.exists()


def test_missing_config_fails(tmp_path: Path) -> None:
    commands = write_commands(tmp_path, {})
    proc = CommanderProcess(tmp_path, tmp_path / "nope.toml", commands)
    assert proc.proc.wait(15) == 1
    assert f'Could not read "{tmp_path}/nope.toml": No such file or directory' in proc.stderr
    assert not (tmp_path / "commander.lock").exists()


def test_config_error_wins_over_commands_error(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("allow_non_routable_ips = 3\n")
    proc = CommanderProcess(tmp_path, config, tmp_path / "missing-commands.toml")
    assert proc.proc.wait(15) == 1
    assert "allow_non_routable_ips" in proc.stderr
    assert "missing-commands" not in proc.stderr


def test_unknown_socket_user_fails_and_leaves_no_socket(tmp_path: Path) -> None:
    config = write_config(tmp_path, config_dir=str(tmp_path), socket_user="no-such-user-xyz")
    proc = CommanderProcess(tmp_path, config, write_commands(tmp_path, {}))
    assert proc.proc.wait(15) == 1
    assert "Could not find user no-such-user-xyz" in proc.stderr
    assert not (tmp_path / "ruroco.socket").exists()


def test_socket_path_without_parent() -> None:
    with pytest.raises(RurocoError, match='Could not get parent dir for "/"'):
        socket_dir_of(Path("/"))


def test_only_owner_may_connect(start_commander, tmp_path_factory) -> None:
    """0204 means: the socket user (the server) can connect, other non-root users cannot."""
    user = f"rurocot{os.getpid() % 100000}"
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", user],
        check=True,
        capture_output=True,
    )
    try:
        import pwd

        entry = pwd.getpwnam(user)
        directory = tmp_path_factory.mktemp("shared")
        directory.chmod(0o755)
        for parent in directory.parents:  # the test user must be able to reach the socket
            if parent == Path("/tmp"):
                break
            parent.chmod(parent.stat().st_mode | 0o005)
        out = directory / "ran"
        commander = start_commander(
            {"default": f"touch {out}"},
            directory=directory,
            socket_user=user,
            socket_group=user,
            allow_non_routable_ips=True,
        )
        assert os.stat(commander.socket).st_uid == entry.pw_uid
        client = (
            "import socket,sys\n"
            "s=socket.socket(socket.AF_UNIX)\n"
            "try:\n s.connect(sys.argv[1]); s.sendall(bytes.fromhex(sys.argv[2]))\n"
            "except PermissionError: sys.exit(13)\n"
        )
        args = ["/usr/bin/python3", "-c", client, str(commander.socket), message("default").hex()]
        other = subprocess.run(
            args, user=entry.pw_uid + 1, group=entry.pw_gid + 1, extra_groups=[], timeout=30
        )
        assert other.returncode == 13
        time.sleep(0.3)
        assert not out.exists()
        owner = subprocess.run(
            args, user=entry.pw_uid, group=entry.pw_gid, extra_groups=[], timeout=30
        )
        assert owner.returncode == 0
        assert wait_for(out.exists, RUN_WAIT)
    finally:
        subprocess.run(["userdel", user], check=False, capture_output=True)


def test_module_entry_point_version() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ruroco.commander", "-V"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0
    assert result.stdout.startswith("ruroco-commander, version ")


def test_a_peer_cannot_flood_the_log_and_what_ran_is_still_logged(
    start_commander, tmp_path: Path
) -> None:
    """The server's account could make the commander write an error line per message, as fast
    as it sends: enough for journald's rate limit to drop the lines of commands that really
    ran (hostile-user review: 129,295 lines in 5 s). Such lines now have a budget (100, then
    10 a second); the rest are counted and the count is logged."""
    out = tmp_path / "ran"
    commander = start_commander({"default": f"echo x >> {out}"}, allow_non_routable_ips=True)
    flood = 3000
    for _ in range(flood):
        while True:  # a full backlog refuses the connect for a moment: the server retries too
            try:
                commander.send("unknown-name")
                break
            except BlockingIOError:
                time.sleep(0.001)
    commander.send("default")
    assert wait_for(lambda: out.exists(), RUN_WAIT)

    def counted() -> tuple[int, int]:
        return shown_and_counted(commander.stderr, "Unknown command name")

    assert wait_for(lambda: sum(counted()) == flood, RUN_WAIT), counted()
    shown, suppressed = counted()
    assert shown < 100 + 10 * 20 and suppressed > 0  # the burst, and at most 20 s of the rate
    assert f"Running command ({command_hash('default')}) echo x >> {out} for 1.2.3.4" in (
        commander.stdout
    )
