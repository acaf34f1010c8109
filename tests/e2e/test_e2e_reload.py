"""Reload on SIGHUP with the real daemons (docs/files.md, Reload on SIGHUP): knocks keep
running exactly once through 20 reloads, keys come and go without a restart, a broken file
changes nothing, restart-only settings are named, and a floor outlives its key file."""

from __future__ import annotations

import os
import re
import signal
import statistics
import time
from collections.abc import Callable

import pytest
from e2e_harness import Deployment, DeploymentFactory, read_blocklist
from reload_harness import (
    Knocker,
    add_key,
    claim,
    move,
    new_key,
    output_command,
    sighup,
    start_server_unwaited,
    stats_line,
    took_ms,
)

from ruroco.server.blocklist import encode

RELOADS = 20
KNOCK_INTERVAL = 0.025  # 40 knocks per second while the reloads happen
KNOCK_LIMIT = 2000  # bounds the run; about 150 are sent
RELOAD_PAUSE = 0.1


def counting(make: DeploymentFactory) -> Deployment:
    return make({"count": output_command("count")}).start()


def reload_ok(dep: Deployment) -> str:
    assert dep.server is not None
    line = sighup(dep.server)
    assert "Reloaded " in line, line
    return line


def test_every_knock_runs_exactly_once_while_20_reloads_happen(
    make_deployment: DeploymentFactory,
) -> None:
    dep = counting(make_deployment)
    server = dep.server
    assert server is not None
    pid = server.pid
    knocker = Knocker(dep, "count", KNOCK_INTERVAL, KNOCK_LIMIT)
    knocker.start()
    knocker.wait_sent(5)  # knocks before the first reload ...
    lines = []
    for i in range(RELOADS):
        time.sleep(RELOAD_PAUSE)
        # every reload changes something: a key comes or goes, a live setting moves
        if i % 2 == 0:
            add_key(dep, "extra.key")
        else:
            (dep.etc / "extra.key").unlink()
        dep.write_config(max_clock_skew_seconds=3601 + i)
        lines.append(reload_ok(dep))
    knocker.wait_sent(len(knocker.sent) + 5)  # ... and after the last
    sent = knocker.finish()
    knocks = len(sent)
    assert knocks < KNOCK_LIMIT

    # one more knock, last: the commander keeps the order of one name, so once it has run
    # every earlier knock that was going to run has
    sentinel = claim(KNOCK_LIMIT)
    dep.send_raw(dep.packet(cmd="count", strict=False, src=sentinel))
    runs = dep.wait_runs(knocks + 1, "count", timeout=60)
    assert runs[-1] == sentinel
    assert sorted(runs[:-1]) == sorted(sent) and len(set(runs)) == knocks + 1

    assert [("1 added" in line, "1 removed" in line) for line in lines] == [
        (i % 2 == 0, i % 2 == 1) for i in range(RELOADS)
    ]
    assert all("settings changed: max_clock_skew_seconds" in line for line in lines)
    assert server.pid == pid and server.alive()
    assert not server.find(r"Rejected datagram|Reload failed|Dropped request")
    server.stop()
    stats = stats_line(server)
    assert stats["received"] == stats["accepted"] == stats["forwarded"] == knocks + 1, stats
    assert (stats["reloads"], stats["reloads_failed"]) == (RELOADS, 0)
    took = [took_ms(line) for line in lines]
    print(
        f"\n{knocks + 1} knocks sent, {len(runs)} run, {RELOADS} reloads; reload took "
        f"{min(took):.1f} / {statistics.median(took):.1f} / {max(took):.1f} ms (min/median/max)"
    )


def test_a_key_added_and_a_key_removed_take_effect_without_a_restart(
    make_deployment: DeploymentFactory,
) -> None:
    dep = make_deployment().start()
    server = dep.server
    assert server is not None
    pid = server.pid
    second = new_key(dep, "second.key")
    since = server.mark()
    dep.send_raw(dep.packet(key=second))
    dep.wait_rejection(since, "Could not find key for id")

    line = reload_ok(dep)
    assert '2 key(s), 1 added ("second.key"), 0 removed' in line
    dep.send_raw(dep.packet(key=second))
    assert dep.wait_runs(1) == ["127.0.0.1"]

    (dep.etc / "test.key").unlink()
    line = reload_ok(dep)
    assert '1 key(s), 0 added, 1 removed ("test.key")' in line
    since = server.mark()
    dep.knock()  # the real client, with the removed key
    dep.wait_rejection(since, "Could not find key for id")
    dep.send_raw(dep.packet(key=second, strict=False, src="198.51.100.2"))
    assert dep.wait_runs(2) == ["127.0.0.1", "198.51.100.2"]
    assert server.pid == pid and server.alive()


def writable_key(dep: Deployment) -> None:
    add_key(dep, "loose.key")
    (dep.etc / "loose.key").chmod(0o622)


#: case -> (what the error line must contain, how the files are broken)
BROKEN: dict[str, tuple[str, Callable[[Deployment], object]]] = {
    "config syntax": ("config.toml", lambda dep: dep.config.write_text("ips = [\n")),
    "config value": (
        "max_clock_skew_seconds",
        lambda dep: dep.write_config(max_clock_skew_seconds=-1),
    ),
    "policy for no key file": (
        "keys.nosuch names no key file",
        lambda dep: dep.config.write_text(dep.config.read_text() + "[keys.nosuch]\n"),
    ),
    "key file content": ("bad.key", lambda dep: add_key(dep, "bad.key", "not a key\n")),
    "key file others can write": ("loose.key", writable_key),
    "two files with one key": ("copy.key", lambda dep: add_key(dep, "copy.key", dep.key_text)),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_file_on_reload_changes_nothing_and_is_one_line(
    make_deployment: DeploymentFactory, case: str
) -> None:
    needle, breaks = BROKEN[case]
    dep = make_deployment().start()
    server = dep.server
    assert server is not None
    config_text = dep.config.read_text()
    keys_before = sorted(os.listdir(dep.etc))
    second = new_key(dep, "second.key")  # would be added by a good reload
    breaks(dep)

    since = server.mark()
    line = sighup(server)
    assert re.search(r"ERROR \] Reload failed, keeping the running configuration: ", line), line
    assert needle in line, line
    time.sleep(0.2)
    assert [x for x in server.log(since).splitlines() if "Reload" in x] == [line]

    dep.knock()  # the old key still runs, from the unchanged server
    assert dep.wait_runs(1) == ["127.0.0.1"]
    since = server.mark()
    dep.send_raw(dep.packet(key=second))
    dep.wait_rejection(since, "Could not find key for id")  # nothing of the new state applies
    assert second.key_id not in read_blocklist(dep)

    # repaired, the next reload takes it all
    dep.config.write_text(config_text)
    for name in set(os.listdir(dep.etc)) - set(keys_before) - {"second.key"}:
        (dep.etc / name).unlink()
    assert "1 added" in reload_ok(dep)
    dep.send_raw(dep.packet(key=second, strict=False, src="198.51.100.3"))
    assert dep.wait_runs(2) == ["127.0.0.1", "198.51.100.3"]


def test_restart_only_settings_are_named_in_one_line_and_the_rest_applies(
    make_deployment: DeploymentFactory,
) -> None:
    dep = make_deployment().start()
    server = dep.server
    assert server is not None
    since = server.mark()
    dep.write_config(
        ips=["::1"],  # live: 127.0.0.1 is no longer one of ours
        address="127.0.0.1:1",
        blocklist_dir=str(dep.root / "elsewhere"),
        socket_dir=str(dep.root / "elsewhere"),
        kernel_filter=True,
    )
    line = reload_ok(dep)
    assert "settings changed: ips;" in line
    restart = server.find(r"after a restart", since)
    assert len(restart) == 1, restart
    assert "address, blocklist_dir, socket_dir, kernel_filter changed" in restart[0]

    since = server.mark()
    dep.send_raw(dep.packet())  # to 127.0.0.1: no longer one of the server's addresses
    dep.wait_rejection(since, "Invalid host IP", "::1")
    dep.send_raw(dep.packet(dst="::1"))  # same socket, same blocklist, same commander
    assert dep.wait_runs(1) == ["127.0.0.1"]
    since = server.mark()
    dep.send_raw(b"x" * 10)  # the kernel filter stayed off: the server sees and logs it
    dep.wait_rejection(since, "Invalid read count 10")
    assert not (dep.root / "elsewhere").exists()


def test_a_floor_outlives_its_key_file_so_re_adding_a_key_reopens_no_packet(
    make_deployment: DeploymentFactory,
) -> None:
    dep = make_deployment()
    new_key(dep, "other.key")  # the server refuses a key directory without any key
    dep.start()
    server = dep.server
    assert server is not None
    used = dep.packet()
    dep.send_raw(used)
    assert dep.wait_runs(1) == ["127.0.0.1"]
    floor = read_blocklist(dep)[dep.key.key_id]

    move(dep.etc / "test.key", dep.root / "test.key.away")
    assert "1 removed" in reload_ok(dep)
    since = server.mark()
    dep.send_raw(used)
    dep.wait_rejection(since, "Could not find key for id")

    move(dep.root / "test.key.away", dep.etc / "test.key")
    assert "1 added" in reload_ok(dep)
    assert read_blocklist(dep)[dep.key.key_id] == floor
    since = server.mark()
    dep.send_raw(used)
    dep.wait_rejection(since, "is on blocklist", str(floor))
    dep.assert_nothing_ran(1)  # a fresh packet runs; the replay did not


def test_sighup_during_start_is_one_reload_once_the_server_runs(
    make_deployment: DeploymentFactory,
) -> None:
    dep = make_deployment()
    # a large blocklist makes start take long enough to signal it in the middle
    dep.blocklist.write_bytes(encode({os.urandom(8): 1 << 60 for _ in range(200_000)}))
    dep.start_commander()
    server = start_server_unwaited(dep)
    server.wait_log(r"Creating server, loading keys")
    for _ in range(5):
        os.kill(server.pid, signal.SIGHUP)
        time.sleep(0.01)
    assert not server.find(r"Running server"), "start was over before the signals were sent"
    server.wait_log(r"Running server", timeout=60)
    line = server.wait_log(r"Reloaded ", timeout=30)
    assert "0 added, 0 removed" in line
    time.sleep(0.3)
    assert len(server.find(r"Reloaded ")) == 1 and server.alive()
    dep.knock()
    assert dep.wait_runs(1) == ["127.0.0.1"]
