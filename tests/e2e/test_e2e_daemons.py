"""Daemon-level behaviour: broken disk, absent commander, hung commands, locks, fd 3, SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

from e2e_harness import (
    COMMANDER,
    RUN_TIMEOUT,
    START_TIMEOUT,
    Daemon,
    Deployment,
    DeploymentFactory,
    base_env,
    read_blocklist,
    toml_str,
    wait_for,
)
from procfind import marked_pids, marker, no_survivors


def set_immutable(path: os.PathLike[str], on: bool) -> None:
    subprocess.run(["chattr", "+i" if on else "-i", os.fspath(path)], check=True)


def test_unwritable_blocklist_runs_nothing_and_the_packet_can_be_retried(
    deploy: Deployment,
) -> None:
    datagram = deploy.packet()
    # Neither the in-place write of the floor (docs/performance.md) nor the whole-file rewrite
    # can succeed now, even for root: the file and its directory are immutable.
    set_immutable(deploy.blocklist, True)
    set_immutable(deploy.state, True)
    try:
        probe = deploy.state / "probe"
        try:
            probe.touch()
        except OSError:
            pass
        else:
            raise AssertionError("chattr +i did not make the blocklist dir unwritable for root")
        since = deploy.server.mark()
        _, port = deploy.send_raw(datagram)
        deploy.wait_rejection(since, "127.0.0.1", str(port), pattern=r"(?i)block ?list")
        assert deploy.server.alive()
        # no sentinel can pass while the disk is broken: give a forwarded command time to show
        time.sleep(1.0)
        assert deploy.runs() == []
        assert not deploy.server.find(r"(?i)sent data to commander", since)
        assert not deploy.commander.find(r"Running command")
    finally:
        set_immutable(deploy.state, False)
        set_immutable(deploy.blocklist, False)
    # the in-memory floor was rolled back: the very same packet is accepted once disk works
    deploy.send_raw(datagram)
    assert deploy.wait_runs(1) == ["127.0.0.1"]
    deploy.assert_nothing_ran(before=1)


def test_a_floor_written_in_place_needs_no_writable_directory(deploy: Deployment) -> None:
    """While the key set is unchanged, the floor is overwritten in its 16 bytes in the file
    itself, so a directory that refuses new files does not stop a knock; the floor on disk is
    the packet's counter before the command runs."""
    before = read_blocklist(deploy)
    set_immutable(deploy.state, True)
    try:
        deploy.knock()
        assert deploy.wait_runs(1) == ["127.0.0.1"]
        after = read_blocklist(deploy)
    finally:
        set_immutable(deploy.state, False)
    assert after.keys() == before.keys() and len(after) == 1
    assert all(after[k] > before[k] for k in after)


def connectable(path: os.PathLike[str]) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(os.fspath(path))
        except OSError:
            return False
    return True


def test_stopped_commander_does_not_stop_the_server(deploy: Deployment) -> None:
    server, commander = deploy.server, deploy.commander
    commander.stop()
    since = server.mark()
    deploy.knock()
    server.wait_log(r"(?i)commander|socket", since=since)
    assert server.alive()
    assert deploy.runs() == []

    deploy.start_commander()
    wait_for(lambda: connectable(deploy.socket_path), START_TIMEOUT, "commander accepting")
    deploy.knock()
    assert deploy.wait_runs(1) == ["127.0.0.1"]
    assert server.alive() and server is deploy.server


# {mark}: a sleep argument found by a /proc scan (inside the command's PID namespace $! is
# not a host pid, so the command cannot report it).
HANG_CMD = "sleep {mark} & wait; touch {out}/hang.finished"


def test_hanging_command_is_killed_with_children_and_does_not_delay_others(
    make_deployment: DeploymentFactory,
) -> None:
    mark = marker()
    cmd = HANG_CMD.replace("{mark}", mark)
    dep = make_deployment({"hang": f"{{ cmd = {toml_str(cmd)}, timeout_sec = 6 }}"}).start()
    with no_survivors(mark):
        dep.send_raw(dep.packet(cmd="hang"))
        child = wait_for(lambda: marked_pids(mark), RUN_TIMEOUT, "the hanging command to start")

        dep.send_raw(dep.packet())
        assert dep.wait_runs(1) == ["127.0.0.1"]
        # default finished while the hanging command was still alive: it was not queued behind it
        assert marked_pids(mark) == child, "hang's child died before the other command ran"

        wait_for(lambda: not marked_pids(mark), 6 + RUN_TIMEOUT, "the hanging child to be killed")
        dep.commander.wait_log(r"(?i)timed out|timeout")
        time.sleep(0.2)
        assert not (dep.out / "hang.finished").exists()
        assert dep.commander.alive()


def test_second_commander_refuses_and_first_keeps_working(deploy: Deployment) -> None:
    inode = os.stat(deploy.socket_path).st_ino
    second = Daemon(
        "commander2",
        [str(COMMANDER), "-c", str(deploy.config), "--commands", str(deploy.commands)],
        base_env(),
        deploy.logs / "commander2.log",
    )
    second.expect_exit = True
    second.start()
    deploy.daemons.append(second)
    rc = second.wait_exit(START_TIMEOUT)
    assert rc != 0
    assert "already running" in second.log().lower(), second.log()
    assert os.stat(deploy.socket_path).st_ino == inode, "second commander replaced the socket"

    deploy.knock()
    assert deploy.wait_runs(1) == ["127.0.0.1"]


def test_server_uses_socket_handed_over_as_fd3(make_deployment: DeploymentFactory) -> None:
    dep = make_deployment()
    dep.start_commander()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind(("127.0.0.1", 0))
        dep.start_server_on_fd3(sock)
    finally:
        sock.close()  # only the server's copy is left
    dep.knock()
    assert dep.wait_runs(1) == ["127.0.0.1"]


def test_sigterm_stops_both_daemons_cleanly(deploy: Deployment) -> None:
    deploy.knock()
    deploy.wait_runs(1)
    counter = deploy.client_counter()

    assert deploy.server.stop(signal.SIGTERM) == 0
    rc = deploy.commander.stop(signal.SIGTERM)
    assert rc in (0, -signal.SIGTERM), rc
    for d in (deploy.server, deploy.commander):
        assert "Traceback" not in d.log(), d.log()
    # the persisted floor survived the shutdown intact
    assert read_blocklist(deploy) == {deploy.key.key_id: counter}


def test_wedged_commander_socket_does_not_wedge_the_server(
    make_deployment: DeploymentFactory,
) -> None:
    """A listener that never accepts: the server's connect must time out (docs/deviations.md #4)."""
    dep: Deployment = make_deployment()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as wedged:
        wedged.bind(str(dep.socket_path))
        wedged.listen(0)  # never accepted: the backlog fills after a connection or two
        dep.start_server()
        for _ in range(4):
            dep.send_raw(dep.packet())
        since = dep.server.mark()
        _, port = dep.send_raw(b"too short")
        dep.wait_rejection(since, "127.0.0.1", str(port), pattern=r"\b94\b")
        assert dep.server.wait_log(r"(?i)could not .*(connect|send)")
        assert dep.server.alive()


def test_commander_survives_bad_socket_messages(deploy: Deployment) -> None:
    for message in (b"short", (42).to_bytes(8, "big") + bytes(16)):
        since = deploy.commander.mark()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(str(deploy.socket_path))
            s.sendall(message)
        deploy.commander.wait_log(r"(?i)error|unknown|could not", since=since)
    assert deploy.commander.alive()
    deploy.knock()
    assert deploy.wait_runs(1) == ["127.0.0.1"]


SEQ_CMD = (
    'printf "start %s\\n" "$RUROCO_IP" >> {out}/seq.out; sleep 0.3; '
    'printf "end %s\\n" "$RUROCO_IP" >> {out}/seq.out'
)


def test_same_command_runs_one_at_a_time_in_arrival_order(
    make_deployment: DeploymentFactory,
) -> None:
    dep = make_deployment({"seq": toml_str(SEQ_CMD)}).start()
    claims = ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
    for ip in claims:
        dep.send_raw(dep.packet(cmd="seq", strict=False, src=ip))
    lines = dep.wait_runs(6, name="seq")
    assert lines == [f"{what} {ip}" for ip in claims for what in ("start", "end")]
