"""Reload on SIGHUP of the real commander (docs/files.md, "Reload on SIGHUP (commander)").

Commands added and removed without a restart; commands running during a reload finish under
the definition (and timeout) they started with; a broken file changes nothing and is one
line; restart-only settings are named and the rest applies; messages sent through 20 reloads
each run once; a SIGHUP during start is a reload, not death. Grants follow ``commands.toml``
in nftables, in a private network namespace like ``test_e2e_grants.py``: an added grant
guards and opens, a removed one's sets and rules are gone, a kept one's live grant survives.

Messages are the real 24-byte commander message on the real socket; the commands write what
they ran into files, so a file says which message ran and how often.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_harness import (
    COMMANDER,
    RUN_TIMEOUT,
    START_TIMEOUT,
    Daemon,
    Deployment,
    DeploymentFactory,
    base_env,
    wait_for,
)
from reload_harness import output_command, sighup, took_ms
from test_e2e_grants import DST6, OTHER4, OTHER6, OTHER_PORT, PORT, SRC4, SRC6, Host, NetnsAgent
from tomltext import toml_str

from ruroco.ipaddr import parse_ip
from ruroco.protocol import command_hash, encode_commander_data

ERROR = r"ERROR \] "
FAILED = "Reload failed, keeping the running configuration: "
RELOADS = 20
MESSAGES = 200
INTERVAL = 0.02  # 50 messages per second, 4 s of sending
RELOAD_PAUSE = 0.1


def claim(index: int) -> str:
    """A distinct routable address per message (the commands write it down), so a reload
    that sets ``allow_non_routable_ips = false`` refuses none of them."""
    return f"11.77.{index // 250}.{index % 250 + 1}"


def send(dep: Deployment, name: str, ip: str) -> None:
    """The 24-byte message for ``name`` and ``ip``, as the server sends it."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(str(dep.socket_path))
        s.sendall(encode_commander_data(command_hash(name), parse_ip(ip)))


def unknown(name: str) -> str:
    return rf"Unknown command name: {command_hash(name)}\b"


def reload_ok(d: Daemon) -> str:
    line = sighup(d)
    assert "Reloaded " in line, line
    return line


def errors(d: Daemon, since: int) -> list[str]:
    return d.find(ERROR, since)


def started(make: DeploymentFactory, commands: dict[str, str]) -> tuple[Deployment, Daemon]:
    dep = make(commands)
    return dep, dep.start_commander()


def test_a_command_added_runs_and_a_removed_one_no_longer_runs(
    make_deployment: DeploymentFactory,
) -> None:
    dep, d = started(make_deployment, {"old": output_command("old")})
    pid = d.pid
    send(dep, "old", "192.0.2.1")
    assert dep.wait_runs(1, "old") == ["192.0.2.1"]
    since = d.mark()
    send(dep, "new", "192.0.2.2")
    d.wait_log(unknown("new"), since)

    dep.extra_commands = {"new": output_command("new")}
    dep.write_commands()
    line = reload_ok(d)
    assert '2 command(s), 1 added ("new"), 1 removed ("old"), 0 changed; no grants' in line

    send(dep, "new", "192.0.2.3")
    assert dep.wait_runs(1, "new") == ["192.0.2.3"]
    since = d.mark()
    send(dep, "old", "192.0.2.4")
    d.wait_log(unknown("old"), since)
    send(dep, "default", "192.0.2.5")  # a command the reload kept still runs
    assert dep.wait_runs(1) == ["192.0.2.5"]
    assert dep.runs("old") == ["192.0.2.1"] and dep.runs("new") == ["192.0.2.3"]
    assert d.pid == pid and d.alive()


def sleeper(word: str, timeout: int) -> str:
    """Sleeps 2 s, then appends ``word`` to slow.out; ``timeout_sec`` = ``timeout``."""
    cmd = f"sleep 2; echo {word} >> {{out}}/slow.out"
    return f"{{ cmd = {toml_str(cmd)}, timeout_sec = {timeout} }}"


def test_commands_running_during_a_reload_finish_under_their_old_definition(
    make_deployment: DeploymentFactory,
) -> None:
    gone = toml_str("sleep 2; echo gone >> {out}/gone.out")
    dep, d = started(make_deployment, {"slow": sleeper("old", 10), "gone": gone})
    since = d.mark()
    send(dep, "slow", "192.0.2.1")
    send(dep, "gone", "192.0.2.2")
    wait_for(lambda: len(d.find(r"Running command", since)) == 2, RUN_TIMEOUT, "both running")

    # the new definition would write "new", and its 1 s timeout kills it before that
    dep.extra_commands = {"slow": sleeper("new", 1)}
    dep.write_commands()
    line = reload_ok(d)
    assert '0 added, 1 removed ("gone"), 1 changed ("slow")' in line, line
    assert dep.runs("slow") == [] and dep.runs("gone") == []  # the reload came while they ran

    assert dep.wait_runs(1, "slow") == ["old"]  # 2 s under its old 10 s timeout
    assert dep.wait_runs(1, "gone") == ["gone"]  # removed, but it had started
    assert not d.find(r"timed out", since)

    since = d.mark()
    send(dep, "slow", "192.0.2.3")  # the next message meets the new definition
    d.wait_log(r"Execution timed out after 1s and was killed: sleep 2; echo new", since)
    time.sleep(1.5)  # past the 2 s the killed command would have taken
    assert dep.runs("slow") == ["old"]


def chmod(path: Path, mode: int) -> None:
    path.chmod(mode)


def append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


#: case -> (what the one error line must name, how to break the files)
BROKEN: dict[str, tuple[str, Callable[[Deployment], object]]] = {
    "commands syntax": ("commands.toml", lambda dep: append(dep.commands, "[commands\n")),
    "commands entry": (
        'entry "bad" has a `timeout_sec`',
        lambda dep: append(dep.commands, 'bad = { cmd = "true", timeout_sec = -1 }\n'),
    ),
    "commands others can write": ("commands.toml", lambda dep: chmod(dep.commands, 0o622)),
    "grant clashes with a command": (
        'grant "ssh" defines "open_ssh"',
        lambda dep: append(
            dep.commands, 'open_ssh = "true"\n[grants.ssh]\nports = ["tcp/22"]\ntimeout_sec = 5\n'
        ),
    ),
    "grant port": (
        "is above 65535",
        lambda dep: append(dep.commands, '[grants.ssh]\nports = ["tcp/70000"]\ntimeout_sec = 5\n'),
    ),
    "config syntax": ("config.toml", lambda dep: append(dep.config, "socket_dir = [\n")),
    "config value": (
        "max_concurrent_commands",
        lambda dep: dep.write_config(max_concurrent_commands=0),
    ),
    "config others can write": ("config.toml", lambda dep: chmod(dep.config, 0o666)),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_file_on_reload_changes_nothing_and_is_one_error_line(
    make_deployment: DeploymentFactory, case: str
) -> None:
    needle, breaks = BROKEN[case]
    dep, d = started(make_deployment, {})
    pid = d.pid
    dep.extra_commands = {"new": output_command("new")}  # a good reload would add it
    dep.write_commands()
    dep.write_config(allow_non_routable_ips=False)  # and refuse 127.0.0.1
    breaks(dep)

    since = d.mark()
    line = sighup(d)
    assert re.search(ERROR + FAILED, line), line
    assert needle in line, line
    time.sleep(0.2)
    assert errors(d, since) == [line]  # one line, nothing else went wrong

    send(dep, "default", "127.0.0.1")  # the running config still allows it
    assert dep.wait_runs(1) == ["127.0.0.1"]
    since = d.mark()
    send(dep, "new", "192.0.2.1")
    d.wait_log(unknown("new"), since)

    # repaired, the next reload takes it all, on the same process and socket
    dep.write_config(allow_non_routable_ips=False)
    dep.config.chmod(0o644)
    dep.write_commands()
    line = reload_ok(d)
    assert '1 added ("new")' in line and "settings changed: allow_non_routable_ips" in line
    send(dep, "new", "11.0.0.2")  # routable: runs with allow_non_routable_ips = false
    assert dep.wait_runs(1, "new") == ["11.0.0.2"]
    since = d.mark()
    send(dep, "default", "127.0.0.1")
    d.wait_log(r"refusing to execute with non-routable IP: 127\.0\.0\.1", since)
    assert d.pid == pid and d.alive()


def test_restart_only_settings_are_named_in_one_line_and_the_rest_applies(
    make_deployment: DeploymentFactory,
) -> None:
    dep, d = started(make_deployment, {})
    elsewhere = dep.root / "elsewhere"
    since = d.mark()
    dep.write_config(
        allow_non_routable_ips=False,  # live
        socket_dir=str(elsewhere),
        socket_user="nobody",
        socket_group="nogroup",
        max_concurrent_commands=4,
        pid_namespace=False,
    )
    line = reload_ok(d)
    assert "settings changed: allow_non_routable_ips;" in line, line
    named = d.find(r"after a restart", since)
    assert len(named) == 1, named
    assert (
        "socket_dir, socket_user, socket_group, max_concurrent_commands, pid_namespace changed"
        in named[0]
    )
    assert errors(d, since) == named

    since = d.mark()
    send(dep, "default", "127.0.0.1")  # the socket stayed where it was
    d.wait_log(r"refusing to execute with non-routable IP: 127\.0\.0\.1", since)
    send(dep, "default", "11.0.0.5")
    assert dep.wait_runs(1) == ["11.0.0.5"]
    assert not elsewhere.exists()
    assert os.stat(dep.socket_path).st_uid == os.getuid()  # owner as at start


class Sender(threading.Thread):
    """``count`` messages for ``name``, one every ``interval`` s, each for ``claim(i)``."""

    def __init__(self, dep: Deployment, name: str, count: int, interval: float) -> None:
        super().__init__(name="sender", daemon=True)
        self.dep, self.cmd, self.count, self.interval = dep, name, count, interval
        self.sent: list[str] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            start = time.monotonic()
            for i in range(self.count):
                time.sleep(max(0.0, start + i * self.interval - time.monotonic()))
                send(self.dep, self.cmd, claim(i))
                self.sent.append(claim(i))
        except BaseException as exc:  # reported by finish()
            self.error = exc

    def finish(self, timeout: float) -> list[str]:
        self.join(timeout)
        assert not self.is_alive(), "the sender did not finish"
        if self.error is not None:
            raise self.error
        return self.sent


def test_every_message_runs_exactly_once_while_20_reloads_happen(
    make_deployment: DeploymentFactory,
) -> None:
    dep, d = started(make_deployment, {"count": output_command("count")})
    pid = d.pid
    since = d.mark()
    sender = Sender(dep, "count", MESSAGES, INTERVAL)
    sender.start()
    lines = []
    for i in range(RELOADS):
        time.sleep(RELOAD_PAUSE)
        # every reload changes something: a command comes or goes, a live setting flips
        dep.extra_commands = {"count": output_command("count")}
        if i % 2 == 0:
            dep.extra_commands["extra"] = output_command("extra")
        dep.write_commands()
        dep.write_config(allow_non_routable_ips=i % 2 == 0)
        lines.append(reload_ok(d))
    assert sender.is_alive(), "the reloads were not all made while messages were sent"
    sent = sender.finish(MESSAGES * INTERVAL + 30)

    # one more message, last: one name runs in arrival order, so once it has run every
    # earlier message that was going to run has
    sentinel = claim(MESSAGES)
    send(dep, "count", sentinel)
    runs = dep.wait_runs(MESSAGES + 1, "count", timeout=60)
    assert runs[-1] == sentinel
    assert sorted(runs[:-1]) == sorted(sent) and len(set(runs)) == MESSAGES + 1

    assert [('1 added ("extra")' in x, '1 removed ("extra")' in x) for x in lines] == [
        (i % 2 == 0, i % 2 == 1) for i in range(RELOADS)
    ]
    assert all("settings changed: allow_non_routable_ips;" in x for x in lines[1:])
    assert d.pid == pid and d.alive()
    assert not errors(d, since)  # no failed reload, refused, dropped or unreadable message
    took = [took_ms(x) for x in lines]
    print(
        f"\n{MESSAGES + 1} messages sent and run once each through {RELOADS} reloads; reload "
        f"took {min(took):.1f} / {statistics.median(took):.1f} / {max(took):.1f} ms "
        "(min/median/max)"
    )


def catches_sighup(pid: int) -> bool:
    """Whether ``pid`` has a handler for SIGHUP (bit 0 of ``SigCgt``)."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) & 1)
    return False


def test_sighup_during_start_is_one_reload_and_a_burst_is_coalesced(
    make_deployment: DeploymentFactory,
) -> None:
    # many commands make start (and each reload) take long enough to signal in the middle
    many = {f"c{i}": toml_str("true") for i in range(200_000)}
    dep = make_deployment(many)
    d = Daemon(
        "commander",
        [str(COMMANDER), "-c", str(dep.config), "--commands", str(dep.commands)],
        base_env(),
        dep.logs / "commander.log",
    ).start()
    dep.daemons.append(d)
    wait_for(lambda: catches_sighup(d.pid), START_TIMEOUT, "the commander to catch SIGHUP")
    for _ in range(5):
        os.kill(d.pid, signal.SIGHUP)
        time.sleep(0.01)
    assert not d.find(r"Commander listening"), "start was over before the signals were sent"
    d.wait_log(r"Commander listening", timeout=60)
    line = d.wait_log(r"Reloaded ", timeout=30)
    assert "200001 command(s), 0 added, 0 removed, 0 changed" in line
    time.sleep(1.0)
    assert len(d.find(r"Reloaded ")) == 1

    for _ in range(10):  # a burst: handled on the loop, coalesced, never in the handler
        os.kill(d.pid, signal.SIGHUP)
    wait_for(lambda: len(d.find(r"Reloaded ")) >= 2, 30, "a reload after the burst")
    time.sleep(2.5)  # time for more reloads, if the burst made any
    assert 2 <= len(d.find(r"Reloaded ")) <= 3, d.find(r"Reloaded ")
    send(dep, "default", "192.0.2.7")
    assert dep.wait_runs(1) == ["192.0.2.7"]
    assert d.alive()


# -- grants, in a private network namespace ---------------------------------------------------

GRANT_TIMEOUT = 60  # nothing expires during a test


def grant(name: str, port: int) -> str:
    return f'[grants.{name}]\nports = ["tcp/{port}"]\ntimeout_sec = {GRANT_TIMEOUT}\n'


HELLO = '[commands]\nhello = "true"\n'


@pytest.fixture
def agent() -> Iterator[NetnsAgent]:
    a = NetnsAgent()
    try:
        a("setup", addresses=[f"{DST6}/128", f"{SRC6}/128", f"{OTHER6}/128"])
        a("listen", port=PORT)
        a("listen", port=OTHER_PORT)
        yield a
    finally:
        a.close()


def hup(host: Host) -> str:
    """SIGHUP; the line that ends the reload."""
    pattern = r"Reloaded |Reload failed"
    before = len(re.findall(pattern, host.log_text()))
    assert host.pid is not None
    os.kill(host.pid, signal.SIGHUP)
    host.wait_log(pattern, before + 1)
    return [x for x in host.log_text().splitlines() if re.search(pattern, x)][-1]


def listing(host: Host) -> list[dict[str, Any]]:
    return list(
        json.loads(host.agent.nft("-j", "list", "table", "inet", "ruroco")["stdout"])["nftables"]
    )


def set_names(host: Host) -> set[str]:
    return {item["set"]["name"] for item in listing(host) if "set" in item}


def guarded_ports(host: Host) -> set[int]:
    """Every port a rule of the table matches on (the guard's accepts and drops)."""
    ports: set[int] = set()
    for item in listing(host):
        for expr in item.get("rule", {}).get("expr", []):
            match = expr.get("match", {})
            if match.get("left", {}).get("payload", {}).get("field") == "dport":
                ports.add(match["right"])
    return ports


def shape(host: Host) -> tuple[Any, ...]:
    """The table without what time changes: sets, rule comments, live addresses."""
    items = listing(host)
    return (
        sorted(i["set"]["name"] for i in items if "set" in i),
        [i["rule"].get("comment") for i in items if "rule" in i],
        sorted(e["val"] for e in host.elements()),
    )


def test_grants_added_kept_and_removed_by_reload(tmp_path: Path, agent: NetnsAgent) -> None:
    a = agent
    host = Host(tmp_path, agent, HELLO + grant("ssh", PORT))
    pid = host.start()
    host.open(SRC4)
    assert a.connect(SRC4) == "open"
    assert a.connect(OTHER4, OTHER_PORT) == "open"  # not guarded yet

    # add "web": it guards and opens; the live ssh grant of SRC4 survives
    host.write_commands(HELLO + grant("ssh", PORT) + grant("web", OTHER_PORT))
    line = hup(host)
    assert '2 grant(s), 1 added ("web"), 0 removed, 0 changed, 1 live grant(s) kept' in line
    assert [e["val"] for e in host.elements()] == [SRC4]
    assert a.connect(SRC4) == "open"
    assert a.connect(OTHER4, OTHER_PORT) == "dropped"
    host.send("open_web", OTHER4)
    host.wait_log(rf"Opened grant web for {re.escape(OTHER4)} ")
    assert a.connect(OTHER4, OTHER_PORT) == "open"
    assert a.connect(SRC4, OTHER_PORT) == "dropped"  # an ssh grant is not a web grant

    # remove "ssh": its sets and rules are gone, its port is no longer guarded
    host.write_commands(HELLO + grant("web", OTHER_PORT))
    line = hup(host)
    assert '1 grant(s), 0 added, 1 removed ("ssh"), 0 changed, 1 live grant(s) kept' in line
    assert set_names(host) == {"web_v4", "web_v6"}
    assert guarded_ports(host) == {OTHER_PORT}
    assert a.connect(OTHER4) == "open" and a.connect(SRC6) == "open"
    assert a.connect(OTHER4, OTHER_PORT) == "open"  # web's live grant survived
    assert a.connect(SRC4, OTHER_PORT) == "dropped"
    before = host.log_text().count("Unknown command name")
    host.send("open_ssh", SRC4)
    host.wait_log("Unknown command name", before + 1)

    # a broken file: one error line, the table exactly as it was
    kept = shape(host)
    host.write_commands(HELLO + grant("web", OTHER_PORT).replace(str(OTHER_PORT), "70000"))
    text = host.log_text()
    line = hup(host)
    assert FAILED in line and "commands.toml" in line and "is above 65535" in line
    new_lines = host.log_text()[len(text) :]
    assert len(re.findall(ERROR, new_lines)) == 1, new_lines
    assert shape(host) == kept
    assert a.connect(OTHER4, OTHER_PORT) == "open"
    assert a.connect(SRC4, OTHER_PORT) == "dropped"

    # the reloads' own transactions never looked like a damaged table to the watcher
    assert "guard restored" not in host.log_text()
    assert host.pid == pid
    took = [took_ms(x) for x in host.log_text().splitlines() if "Reloaded " in x]
    print(f"\nreloads with an nft transaction took {', '.join(f'{t:.1f}' for t in took)} ms")


# Put on the commander's PYTHONPATH: while the marker file exists, the guard's watcher thread
# cannot start, as under a task limit (the unit's TasksMax=), which a test cannot bring about
# for that one thread without also stopping the nft runs before it.
NO_WATCHER_SITECUSTOMIZE = """
import os, threading
_start = threading.Thread.start
def start(self):
    if self.name == "ruroco-guard" and os.path.exists(os.environ["RUROCO_TEST_NO_WATCHER"]):
        raise RuntimeError("can't start new thread")
    return _start(self)
threading.Thread.start = start
"""


def test_first_grants_whose_watcher_cannot_start_fail_the_reload_and_leave_no_table(
    tmp_path: Path, agent: NetnsAgent
) -> None:
    """Before, the reload's RuntimeError ended the commander and left guards that nobody
    kept or opened: the guarded ports shut for good."""
    a = agent
    hook, marker = tmp_path / "hook", tmp_path / "no-watcher"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(NO_WATCHER_SITECUSTOMIZE)
    host = Host(tmp_path, agent, HELLO)
    pythonpath = os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")]))
    pid = host.start({"PYTHONPATH": pythonpath, "RUROCO_TEST_NO_WATCHER": str(marker)})
    marker.touch()
    host.write_commands(HELLO + grant("ssh", PORT))
    line = hup(host)
    assert FAILED in line and 'commands.toml": grants: could not start the watcher' in line
    assert "can't start new thread" in line
    assert a.nft("list", "tables")["stdout"].strip() == ""  # taken out again
    assert a.connect(SRC4) == "open"  # as before the reload: not guarded
    assert "Traceback" not in host.log_text()
    before = host.log_text().count("Unknown command name")
    host.send("open_ssh", SRC4)  # the old file is in use
    host.wait_log("Unknown command name", before + 1)

    marker.unlink()  # the same file again, now that a thread can start
    line = hup(host)
    assert '1 grant(s), 1 added ("ssh"), 0 removed, 0 changed, 0 live grant(s) kept' in line
    assert a.connect(SRC4) == "dropped"
    host.open(SRC4)
    assert a.connect(SRC4) == "open"
    assert a.nft("flush", "ruleset")["rc"] == 0  # and its watcher keeps the guard
    host.wait_log("Grants: guard restored")
    assert a.connect(OTHER4) == "dropped"
    assert host.pid == pid


def test_a_reload_without_grants_removes_a_table_nobody_manages(
    tmp_path: Path, agent: NetnsAgent
) -> None:
    """As a start without grants does: a table left by a reload whose watcher and clean-up
    both failed, or by a commander that died, would keep its ports shut for good."""
    a = agent
    host = Host(tmp_path, agent, HELLO)
    pid = host.start()
    guard = "add table inet ruroco; add chain inet ruroco input { type filter hook input"
    rule = f" priority 0; policy accept; }}; add rule inet ruroco input tcp dport {PORT} drop"
    assert a("run", argv=["nft", guard + rule])["rc"] == 0
    assert a.connect(SRC4) == "dropped"
    line = hup(host)
    assert "Reloaded " in line
    assert "Grants: none configured, removed table inet ruroco" in host.log_text()
    assert a.nft("list", "tables")["stdout"].strip() == ""
    assert a.connect(SRC4) == "open"
    assert host.pid == pid


def test_a_start_whose_watcher_cannot_start_is_one_line_and_keeps_the_ports_shut(
    tmp_path: Path, agent: NetnsAgent
) -> None:
    a = agent
    hook, marker = tmp_path / "hook", tmp_path / "no-watcher"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(NO_WATCHER_SITECUSTOMIZE)
    marker.touch()
    host = Host(tmp_path, agent, HELLO + grant("ssh", PORT))
    pythonpath = os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")]))
    env = base_env(PYTHONPATH=pythonpath, RUROCO_TEST_NO_WATCHER=str(marker))
    argv = [str(COMMANDER), "-c", str(host.config), "--commands", str(host.commands)]
    pid = int(a("spawn", argv=argv, log=str(host.log), env=env)["pid"])
    assert a("wait", pid=pid, timeout=20)["rc"] == 1
    lines = host.log_text().splitlines()
    assert lines[-1] == (
        "Error: Grants: could not start the watcher of the guard (can't start new thread)"
    ), lines
    assert not [x for x in lines if "ERROR" in x or "Error" in x][:-1]
    assert "Traceback" not in host.log_text()
    assert a.connect(SRC4) == "dropped"  # the guard stays: the port is shut, not open


def test_the_last_grant_removed_deletes_the_table_and_the_first_one_brings_it_back(
    tmp_path: Path, agent: NetnsAgent
) -> None:
    a = agent
    host = Host(tmp_path, agent, HELLO + grant("ssh", PORT))
    host.start()
    host.open(SRC4)

    host.write_commands(HELLO)
    line = hup(host)
    assert '0 grant(s), 0 added, 1 removed ("ssh"), 0 changed, 0 live grant(s) kept' in line
    assert a.nft("list", "tables")["stdout"].strip() == ""
    assert a.connect(OTHER4) == "open"  # no guard any more
    time.sleep(0.5)  # the stopped watcher does not put the table back
    assert a.nft("list", "tables")["stdout"].strip() == ""

    host.write_commands(HELLO + grant("ssh", PORT))
    line = hup(host)
    assert '1 grant(s), 1 added ("ssh"), 0 removed, 0 changed, 0 live grant(s) kept' in line
    assert a.connect(SRC4) == "dropped"  # the grant went with the table
    host.open(SRC4)
    assert a.connect(SRC4) == "open"
    assert a.connect(OTHER4) == "dropped"
    assert a.nft("flush", "ruleset")["rc"] == 0  # and a new watcher keeps it in place
    host.wait_log("Grants: guard restored")
    assert a.connect(OTHER4) == "dropped"
