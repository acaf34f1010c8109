"""Reload on SIGHUP, in-process: the pure parts (what changed, what waits for a restart, the
summary line), ``Decision.reconfigure``, and ``Server.reload`` on a real socket, blocklist,
kernel filter and signals (docs/files.md, Reload on SIGHUP)."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from server_helpers import FIXTURE_ID, CommanderStandIn, fixture_key, packet, write_setup

from ruroco import protocol
from ruroco.ipaddr import parse_ip
from ruroco.policy import Policy, parse_rules
from ruroco.protocol import command_hash, encode_commander_data
from ruroco.server.blocklist import Blocklist
from ruroco.server.config import ServerConfig
from ruroco.server.pipeline import DESTINATION, UNKNOWN_KEY, Acceptance, Decision
from ruroco.server.reload import (
    RESTART_ONLY,
    applied,
    live_changes,
    needs_restart,
    restart_line,
    summary,
)
from ruroco.server.server import create_server

DEFAULT_MESSAGE = encode_commander_data(command_hash("default"), parse_ip("127.0.0.1"))


def base(**changes: object) -> ServerConfig:
    config = ServerConfig(
        ips=(parse_ip("127.0.0.1"),),
        config_dir=Path("/etc/ruroco"),
        blocklist_dir=Path("/var/lib/ruroco"),
        socket_dir=Path("/run/ruroco"),
    )
    return dataclasses.replace(config, **changes)  # type: ignore[arg-type]


# -- pure parts --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"address": "127.0.0.1:9"}, ("address",)),
        ({"blocklist_dir": Path("/srv/state")}, ("blocklist_dir",)),
        ({"socket_dir": Path("/srv/run")}, ("socket_dir",)),
        ({"kernel_filter": True}, ("kernel_filter",)),
        ({"address": "[::]:1", "kernel_filter": True}, ("address", "kernel_filter")),
        ({"ips": ()}, ()),
        ({"max_requests_per_second": 7, "socket_user": "x"}, ()),
    ],
)
def test_needs_restart_names_exactly_the_restart_only_settings_that_changed(change, named):
    assert needs_restart(base(), base(**change)) == named


def test_a_directory_that_defaulted_to_config_dir_moves_with_it_and_so_needs_a_restart():
    running = base(blocklist_dir=None, socket_dir=None)
    moved = base(blocklist_dir=None, socket_dir=None, config_dir=Path("/etc/other"))
    assert needs_restart(running, moved) == ("blocklist_dir", "socket_dir")
    # the same directories spelled out explicitly: nothing to restart for
    spelled = base(blocklist_dir=Path("/etc/ruroco"), socket_dir=Path("/etc/ruroco"))
    assert needs_restart(running, spelled) == ()


def test_applied_takes_the_live_settings_and_keeps_the_restart_only_ones():
    running = base(blocklist_dir=None, socket_dir=None, kernel_filter=True, address="[::]:1")
    new = base(
        ips=(parse_ip("::1"),),
        config_dir=Path("/etc/other"),
        address="[::]:2",
        kernel_filter=False,
        max_requests_per_second=9,
        max_clock_skew_seconds=5,
        blocklist_dir=Path("/elsewhere"),
    )
    result = applied(running, new)
    assert needs_restart(running, result) == ()
    assert (
        result.blocklist_path() == running.blocklist_path() == Path("/etc/ruroco/blocklist.msgpck")
    )
    assert result.socket_path() == running.socket_path()
    assert (result.address, result.kernel_filter) == ("[::]:1", True)
    assert result.ips == (parse_ip("::1"),) and result.config_dir == Path("/etc/other")
    assert (result.max_requests_per_second, result.max_clock_skew_seconds) == (9, 5)
    assert live_changes(running, result) == (
        "ips",
        "config_dir",
        "max_requests_per_second",
        "max_clock_skew_seconds",
    )
    assert set(RESTART_ONLY).isdisjoint(live_changes(running, result))


def test_summary_counts_keys_by_id_and_names_their_files():
    a, b, c = b"a" * 8, b"b" * 8, b"c" * 8
    old = {"a.key": a, "b.key": b}
    new = {"renamed.key": a, "c.key": c}  # a renamed file is neither added nor removed
    rules = parse_rules({"keys": {"c": {"commands": ["x"]}}}, "/etc/ruroco/config.toml", "t")
    line = summary("/etc/ruroco/config.toml", old, new, Policy({c: rules[0]}), ["ips"], 0.0123)
    assert line == (
        'Reloaded "/etc/ruroco/config.toml": 2 key(s), 1 added ("c.key"), 1 removed ("b.key"); '
        "per-key policy for 1 key(s): keys.c; settings changed: ips; took 12.3 ms"
    )
    same = summary("/c.toml", old, old, Policy(), [], 0.001)
    assert same == (
        'Reloaded "/c.toml": 2 key(s), 0 added, 0 removed; no per-key policy; '
        "settings changed: none; took 1.0 ms"
    )


def test_restart_line_names_every_setting_once():
    line = restart_line("/c.toml", ["address", "kernel_filter"])
    assert line.startswith('Reload of "/c.toml": address, kernel_filter changed but take effect')


# -- Decision.reconfigure ---------------------------------------------------------------


def test_reconfigure_swaps_keys_policy_and_limits_but_keeps_floors_and_windows():
    old_key = fixture_key()
    new_text = protocol.generate_key()
    new_key = protocol.parse_key(new_text)
    floors = {FIXTURE_ID: 10}
    decision = Decision(base(max_requests_per_second=5), {FIXTURE_ID: old_key}, floors)
    now = time.time_ns()
    first = decision.decide(packet(counter=now), 94, "127.0.0.1", 1, now, 1.0)
    assert isinstance(first, Acceptance)

    config = base(ips=(parse_ip("::1"),), max_requests_per_second=1, max_clock_skew_seconds=0)
    decision.reconfigure(config, {new_key.key_id: new_key}, Policy())
    assert decision.floors is floors and floors[FIXTURE_ID] == now  # kept, also for a removed key
    gone = decision.decide(packet(counter=now + 1), 94, "127.0.0.2", 1, now, 1.0)
    assert gone[0] == UNKNOWN_KEY
    floors[new_key.key_id] = now - 5
    wrong_dst = decision.decide(packet(new_key, counter=now - 1), 94, "127.0.0.3", 2, now, 1.0)
    assert wrong_dst[0] == DESTINATION  # the new ips apply
    late = decision.decide(packet(new_key, counter=now + 1, dst="::1"), 94, "127.0.0.4", 3, now, 1)
    assert late[0] == "future"  # and the new skew of 0
    ok = decision.decide(packet(new_key, counter=now - 2, dst="::1"), 94, "127.0.0.5", 3, now, 1.0)
    assert isinstance(ok, Acceptance)
    # 127.0.0.1's window (opened at 1.0, one request) is kept and now over the limit of 1
    limited = decision.decide(packet(new_key, dst="::1"), 94, "127.0.0.1", 4, now, 1.5)
    assert limited[0] == "rate_source"


# -- Server.reload on a real socket -------------------------------------------------------


class Live:
    """A server from ``create_server`` on 127.0.0.1, its loop in a thread, a commander stand-in."""

    def __init__(self, tmp_path: Path, extra: str = "") -> None:
        # many knocks from 127.0.0.1 in one test: the per-source limit must not refuse them
        self.config_path = write_setup(tmp_path, extra="max_requests_per_second = 1000\n" + extra)
        self.etc = self.config_path.parent
        time.sleep(0.002)
        self.server = create_server(self.config_path, address="127.0.0.1:0")
        time.sleep(0.002)
        self.address = self.server.sock.getsockname()
        self.commander = CommanderStandIn(self.server.socket_path)
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None
        self.client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.client.bind(("127.0.0.1", 0))

    def start(self) -> Live:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self) -> None:
        try:
            self.server.run()
        except BaseException as exc:  # surfaced by stop()
            self.error = exc

    def send(self, data: bytes) -> None:
        self.client.sendto(data, self.address)

    def wait(self, what, timeout: float = 5.0):  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while not (value := what()):
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.005)
        return value

    def reload_and_wait(self) -> None:
        stats = self.server.stats
        done = stats.reloads + stats.reloads_failed
        self.server.request_reload()
        self.wait(lambda: stats.reloads + stats.reloads_failed > done)

    def knock(self, key: protocol.Key | None = None) -> bool:
        """Send a fresh packet; whether it was accepted (and then reached the commander).

        The loop counts a datagram as received after deciding on it, so the count of
        accepted packets is final once ``received`` has moved."""
        stats = self.server.stats
        accepted, received = stats.pipeline["accepted"], stats.received
        messages = len(self.commander.messages)
        self.send(packet(key))
        self.wait(lambda: stats.received > received)
        if stats.pipeline["accepted"] == accepted:
            return False
        self.commander.wait_for(messages + 1)
        return True

    def add_key(self, name: str) -> protocol.Key:
        text = protocol.generate_key()
        (self.etc / name).write_text(text)
        (self.etc / name).chmod(0o600)
        return protocol.parse_key(text)

    def stop(self) -> None:
        self.server.request_stop()
        if self.thread is not None:
            self.thread.join(5)
        self.client.close()
        self.commander.close()
        self.server.close()
        assert self.error is None


@pytest.fixture
def live(tmp_path):
    made: list[Live] = []

    def make(extra: str = "") -> Live:
        made.append(Live(tmp_path, extra))
        return made[-1]

    yield make
    for run in made:
        run.stop()


def test_requests_before_the_loop_gets_to_them_are_one_reload(live):
    run = live()
    for _ in range(20):
        run.server.request_reload()
    run.start()
    run.wait(lambda: run.server.stats.reloads)
    time.sleep(0.2)
    assert (run.server.stats.reloads, run.server.stats.reloads_failed) == (1, 0)


def test_a_reload_adds_and_removes_keys_and_a_new_key_gets_a_floor_as_at_start(live, capfd):
    run = live().start()
    assert run.knock()
    second = run.add_key("second.key")
    assert not run.knock(second)
    before = time.time_ns()
    run.reload_and_wait()
    floors = Blocklist.load(run.server.pipeline.blocklist.path).entries
    assert before <= floors[second.key_id] <= time.time_ns()  # persisted before use
    assert run.knock(second) and run.knock()

    old_floor = run.server.pipeline.blocklist.entries[FIXTURE_ID]
    (run.etc / "ruroco.key").unlink()
    run.reload_and_wait()
    assert not run.knock() and run.knock(second)
    assert run.server.pipeline.blocklist.entries[FIXTURE_ID] == old_floor  # a removed key's floor
    out = capfd.readouterr().out
    assert '1 added ("second.key"), 0 removed' in out
    assert '1 key(s), 0 added, 1 removed ("ruroco.key")' in out


def test_an_invalid_config_keeps_everything_and_is_one_line_naming_the_file(live, capfd):
    run = live().start()
    second = run.add_key("second.key")
    capfd.readouterr()
    run.config_path.write_text(run.config_path.read_text() + "max_clock_skew_seconds = -1\n")
    run.reload_and_wait()
    assert run.server.stats.reloads_failed == 1
    assert run.knock() and not run.knock(second)
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if "Reload" in line]
    assert len(lines) == 1, err
    assert "Reload failed, keeping the running configuration: " in lines[0]
    assert str(run.config_path) in lines[0] and "max_clock_skew_seconds" in lines[0]
    assert second.key_id not in run.server.pipeline.blocklist.entries


def test_a_blocklist_that_cannot_be_written_fails_the_reload_and_seeds_nothing(live, capfd):
    run = live().start()
    second = run.add_key("second.key")
    entries = dict(run.server.pipeline.blocklist.entries)
    shutil.rmtree(run.server.config.blocklist_path().parent)
    run.reload_and_wait()
    assert run.server.stats.reloads_failed == 1
    assert run.server.pipeline.blocklist.entries == entries
    assert not run.knock(second)
    lines = [line for line in capfd.readouterr().err.splitlines() if "Reload" in line]
    assert len(lines) == 1 and "blocklist" in lines[0], lines


def test_the_kernel_filter_is_replaced_with_the_new_key_ids(live):
    run = live("kernel_filter = true\n").start()
    second = run.add_key("second.key")
    received = run.server.stats.received
    run.send(packet(second))
    time.sleep(0.2)
    assert run.server.stats.received == received  # the kernel dropped the unknown id
    (run.etc / "ruroco.key").unlink()
    run.reload_and_wait()
    assert run.knock(second)
    received = run.server.stats.received
    run.send(packet())  # the removed key's id
    run.send(packet(second))
    run.wait(lambda: run.server.stats.received > received)
    time.sleep(0.2)
    assert run.server.stats.received == received + 1
    assert run.server.pipeline.stats[UNKNOWN_KEY] == 0


def test_sighup_reloads_on_the_loop_and_restores_the_old_handler_on_close(tmp_path):
    run = Live(tmp_path)
    old_fd = signal.set_wakeup_fd(-1)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)}
    try:
        run.server.install_signal_handlers()
        run.start()
        second = run.add_key("second.key")
        os.kill(os.getpid(), signal.SIGHUP)
        run.wait(lambda: run.server.stats.reloads)
        assert run.knock(second)
    finally:
        run.stop()
        signal.set_wakeup_fd(old_fd)
    assert {s: signal.getsignal(s) for s in handlers} == handlers


def test_a_sighup_before_the_handler_is_installed_is_a_reload_afterwards(tmp_path):
    """Run in a child: SIGHUP's default action would end the test process itself."""
    config = write_setup(tmp_path)
    code = f"""
import os, signal, threading, time
from ruroco.server import cli  # claims SIGHUP at import
from ruroco.server.server import create_server
os.kill(os.getpid(), signal.SIGHUP)  # "during start"
server = create_server({str(config)!r}, address="127.0.0.1:0")
server.install_signal_handlers()
threading.Timer(1.0, server.request_stop).start()
stats = server.run()
server.close()
print("reloads", stats.reloads)
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUROCO_", "LISTEN_"))}
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, env=env
    )
    assert res.returncode == 0, res.stderr
    assert "reloads 1" in res.stdout and "Reloaded" in res.stdout
    # without the early claim the same signal ends the process
    bare = subprocess.run(
        [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGHUP)"],
        timeout=30,
    )
    assert bare.returncode == -signal.SIGHUP


def test_reload_of_a_server_built_without_a_config_path_fails_cleanly(tmp_path, capfd):
    server = create_server(write_setup(tmp_path), address="127.0.0.1:0")
    try:
        server.config = dataclasses.replace(server.config, path=None)
        assert server.reload() is False
    finally:
        server.close()
    assert "Reload failed, keeping the running configuration" in capfd.readouterr().err


def test_the_config_path_of_a_reload_is_the_one_start_read(tmp_path):
    config_path = write_setup(tmp_path)
    server = create_server(config_path, address="127.0.0.1:0")
    try:
        assert server.config.path == Path(config_path)
        assert server.key_files == {"ruroco.key": FIXTURE_ID}
    finally:
        server.close()


def test_a_surprise_during_a_reload_keeps_the_server_and_its_configuration(
    tmp_path, monkeypatch, capfd
):
    import ruroco.server.server as server_module

    def broken(config, found=None):
        raise ValueError("surprise")

    server = create_server(write_setup(tmp_path), address="127.0.0.1:0")
    try:
        keys, config = server.pipeline.keys, server.config
        monkeypatch.setattr(server_module, "load_key_set", broken)
        assert server.reload() is False
        assert server.pipeline.keys is keys and server.config is config
        assert server.stats.reloads_failed == 1
    finally:
        server.close()
    err = capfd.readouterr().err
    assert "Reload failed, keeping the running configuration: unexpected ValueError" in err
