"""Grants against the real kernel: nftables in a private network namespace (docs/grants.md).

Each test gets its own namespace (``unshare -n``, root) with an agent inside
(``netns_agent.py``) that owns loopback, extra source addresses, a TCP listener on the guarded
port and on an unguarded one, and the real ``ruroco-commander`` (and, in one test, the real
server and client). The test sends the 24-byte commander message straight to the socket and
asks the agent to connect from chosen sources: ``open`` is a finished handshake, ``dropped``
a SYN without answer (the guard's drop). Grants last ``TIMEOUT`` seconds.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_harness import CLIENT, COMMANDER, SERVER, Deployment, base_env, wait_for
from tomltext import toml_document

from ruroco.ipaddr import parse_ip
from ruroco.protocol import command_hash, encode_commander_data

AGENT = Path(__file__).parent / "netns_agent.py"
TIMEOUT = 3  # timeout_sec of the test grant
PORT = 2222  # guarded
OTHER_PORT = 2300  # not guarded: the guard must not touch it
DST4, DST6 = "127.0.0.1", "fd00::1"
SRC4, OTHER4 = "127.0.0.2", "127.0.0.3"
SRC6, OTHER6 = "fd00::2", "fd00::3"
GRANTS = f'[grants.ssh]\nports = ["tcp/{PORT}"]\ntimeout_sec = {TIMEOUT}\n'


class NetnsAgent:
    """``netns_agent.py`` under ``unshare -n``; calling it sends one request, returns the reply."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            ["unshare", "-n", sys.executable, str(AGENT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._sel = selectors.DefaultSelector()
        assert self.proc.stdout is not None
        self._sel.register(self.proc.stdout, selectors.EVENT_READ)

    def __call__(self, op: str, **args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()
        if not self._sel.select(60):
            raise AssertionError(f"netns agent did not answer {op} within 60s")
        reply = json.loads(self.proc.stdout.readline())
        assert reply.pop("ok"), f"agent {op} failed: {reply}"
        return reply

    def connect(self, src: str, port: int = PORT, hold: bool = False) -> str:
        dst = DST6 if ":" in src else DST4
        return str(self("connect", src=src, dst=dst, port=port, hold=hold)["state"])

    def nft(self, *args: str) -> dict[str, Any]:
        return self("run", argv=["nft", *args])

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Host:
    """A namespace with listeners and files for a commander (and optionally a server)."""

    def __init__(self, root: Path, agent: NetnsAgent, commands: str) -> None:
        self.root, self.agent = root, agent
        self.run_dir = root / "run"
        self.config = root / "config.toml"
        self.commands = root / "commands.toml"
        self.log = root / "commander.log"
        self.socket = self.run_dir / "ruroco.socket"
        self.pid: int | None = None
        self.config.write_text(
            toml_document(
                {
                    "socket_dir": str(self.run_dir),
                    "socket_user": "",
                    "socket_group": "",
                    "allow_non_routable_ips": True,  # loopback and fd00:: sources
                }
            )
        )
        self.write_commands(commands)

    def write_commands(self, text: str) -> None:
        self.commands.write_text(text)
        os.chmod(self.commands, 0o600)

    def start(self, env: dict[str, str] | None = None) -> int:
        """Start the commander (``env``: added to its environment)."""
        mark = self.log_text().count("Commander listening")
        argv = [str(COMMANDER), "-c", str(self.config), "--commands", str(self.commands)]
        full = {**base_env(), **(env or {})}
        self.pid = int(self.agent("spawn", argv=argv, log=str(self.log), env=full)["pid"])
        wait_for(
            lambda: self.log_text().count("Commander listening") > mark or self._died(),
            20,
            "commander start",
        )
        assert not self._died(), self.log_text()
        return self.pid

    def _died(self) -> bool:
        assert self.pid is not None
        return self.agent("wait", pid=self.pid, timeout=0)["rc"] is not None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        assert self.pid is not None
        os.kill(self.pid, sig)
        assert self.agent("wait", pid=self.pid, timeout=10)["rc"] is not None
        self.pid = None

    def send(self, name: str, ip: str) -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(str(self.socket))
            s.sendall(encode_commander_data(command_hash(name), parse_ip(ip)))

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def wait_log(self, pattern: str, count: int = 1) -> None:
        wait_for(
            lambda: len(re.findall(pattern, self.log_text())) >= count,
            10,
            f"{count} x {pattern!r} in the commander log:\n{self.log_text()}",
        )

    def open(self, ip: str, word: str = "Opened") -> float:
        """Send ``open_ssh`` for ``ip``; returns when the commander logged it."""
        n = len(re.findall(rf"{word} grant ssh for {re.escape(ip)} ", self.log_text()))
        self.send("open_ssh", ip)
        self.wait_log(rf"{word} grant ssh for {re.escape(ip)} ", n + 1)
        return time.monotonic()

    def elements(self) -> list[dict[str, Any]]:
        listed = json.loads(self.agent.nft("-j", "list", "table", "inet", "ruroco")["stdout"])
        return [
            e["elem"]
            for item in listed["nftables"]
            if "set" in item
            for e in item["set"].get("elem", [])
        ]


def sleep_until(deadline: float) -> None:
    time.sleep(max(0.0, deadline - time.monotonic()))


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


@pytest.fixture
def host(tmp_path: Path, agent: NetnsAgent) -> Host:
    h = Host(tmp_path, agent, '[commands]\nhello = "true"\n' + GRANTS)
    h.start()
    return h


def test_guard_refuses_before_open_accepts_after_and_closes_by_itself(host: Host) -> None:
    a = host.agent
    assert a.connect(SRC4) == "dropped"
    assert a.connect(SRC4, OTHER_PORT) == "open"  # only the grant's ports are guarded
    opened = host.open(SRC4)
    held = a("connect", src=SRC4, dst=DST4, port=PORT, hold=True)
    assert held["state"] == "open"
    assert a.connect(OTHER4) == "dropped"  # another source is never let in
    rows = a("run", argv=[str(COMMANDER), "--list-grants"])
    assert rows["rc"] == 0, rows
    assert re.search(rf"^ssh\s+{re.escape(SRC4)}\s+[0-3]s\s+3s$", rows["stdout"], re.M), rows
    sleep_until(opened + TIMEOUT - 1.0)
    assert a.connect(SRC4) == "open"  # still inside the grant
    sleep_until(opened + TIMEOUT + 0.5)
    assert a.connect(SRC4) == "dropped"  # expired without any action
    assert a("probe", held=held["held"])["echo"]  # the connection made in time stays up
    assert host.elements() == []
    assert "No live grants" in a("run", argv=[str(COMMANDER), "--list-grants"])["stdout"]


def test_reknock_at_half_timeout_keeps_it_open_past_the_first_expiry(host: Host) -> None:
    a = host.agent
    first = host.open(SRC4)
    sleep_until(first + TIMEOUT / 2)
    second = host.open(SRC4, word="Extended")
    assert len(host.elements()) == 1  # reset, not duplicated
    sleep_until(first + TIMEOUT + 0.5)
    assert a.connect(SRC4) == "open"  # past the first knock's expiry
    sleep_until(second + TIMEOUT + 0.5)
    assert a.connect(SRC4) == "dropped"


def test_close_closes_at_once(host: Host) -> None:
    a = host.agent
    host.open(SRC4)
    host.open(OTHER4)
    assert a.connect(SRC4) == "open"
    host.send("close_ssh", SRC4)
    host.wait_log(rf"Closed grant ssh for {re.escape(SRC4)}\n")
    assert a.connect(SRC4) == "dropped"
    assert a.connect(OTHER4) == "open"  # closing one address leaves the others
    host.send("close_ssh", SRC4)
    host.wait_log(rf"Closed grant ssh for {re.escape(SRC4)} \(it had no live grant\)")


def test_ipv6_the_same_and_ipv4_mapped_goes_to_the_ipv4_set(host: Host) -> None:
    a = host.agent
    assert a.connect(SRC6) == "dropped"
    opened = host.open(SRC6)
    assert a.connect(SRC6) == "open"
    assert a.connect(OTHER6) == "dropped"
    assert a.connect(SRC4) == "dropped"
    host.send("open_ssh", f"::ffff:{OTHER4}")  # the wire form of an IPv4 knock
    host.wait_log(rf"Opened grant ssh for {re.escape(OTHER4)} ")
    assert a.connect(OTHER4) == "open"
    sleep_until(opened + TIMEOUT + 0.5)
    assert a.connect(SRC6) == "dropped"
    host.open(SRC6)
    assert a.connect(SRC6) == "open"
    host.send("close_ssh", SRC6)
    host.wait_log(rf"Closed grant ssh for {re.escape(SRC6)}\n")
    assert a.connect(SRC6) == "dropped"


def test_kill_9_does_not_stop_the_expiry_and_a_restart_keeps_live_grants(host: Host) -> None:
    a = host.agent
    opened = host.open(SRC4)
    host.kill(signal.SIGKILL)
    assert a.connect(SRC4) == "open"
    assert a.connect(OTHER4) == "dropped"  # the guard stays with nobody running
    host.start()
    assert "1 live grant(s) kept" in host.log_text()
    assert a.connect(SRC4) == "open"
    host.kill(signal.SIGKILL)
    sleep_until(opened + TIMEOUT + 0.5)
    assert a.connect(SRC4) == "dropped"  # the kernel closed it, no process involved
    assert a.connect(OTHER4) == "dropped"


def test_flush_ruleset_brings_the_guard_back(host: Host) -> None:
    a = host.agent
    for how in (["flush", "ruleset"], ["flush", "chain", "inet", "ruroco", "guard"]):
        before = host.log_text().count("guard restored")
        assert a.nft(*how)["rc"] == 0
        t0 = time.monotonic()
        host.wait_log("Grants: guard restored", before + 1)
        assert time.monotonic() - t0 < 2.0
        assert a.connect(OTHER4) == "dropped"
    host.open(SRC4)  # and it works as before
    assert a.connect(SRC4) == "open"
    assert a.connect(OTHER4) == "dropped"


def test_a_dormant_table_is_woken_and_keeps_its_grants(host: Host) -> None:
    """``flags dormant`` leaves every rule in place but filters nothing (and nft 1.0.6 then
    prints its listing as broken JSON): the guard must notice it like any other change."""
    a = host.agent
    host.open(SRC4)
    before = host.log_text().count("guard restored")
    assert a.nft("add", "table", "inet", "ruroco", "{ flags dormant; }")["rc"] == 0
    host.wait_log("Grants: guard restored", before + 1)
    assert "dormant" not in a.nft("list", "table", "inet", "ruroco")["stdout"]
    assert a.connect(OTHER4) == "dropped"
    assert a.connect(SRC4) == "open"  # the live grant was kept


def test_without_grants_no_table_and_an_old_one_is_removed(
    tmp_path: Path, agent: NetnsAgent
) -> None:
    h = Host(tmp_path, agent, '[commands]\nhello = "true"\n' + GRANTS)
    h.start()
    h.kill(signal.SIGTERM)
    assert agent.nft("list", "tables")["stdout"].strip() == "table inet ruroco"  # it stays
    h.write_commands('[commands]\nhello = "true"\n')
    h.start()
    assert "Grants: none configured, removed table inet ruroco" in h.log_text()
    assert agent.nft("list", "tables")["stdout"].strip() == ""
    assert agent.connect(SRC4) == "open"  # no guard any more
    h.kill(signal.SIGTERM)
    h.start()  # and with nothing to remove, nothing is said or made
    assert h.log_text().count("removed table") == 1
    assert agent.nft("list", "tables")["stdout"].strip() == ""
    h.kill(signal.SIGTERM)
    assert agent.nft("add", "table", "inet", "ruroco", "{ flags dormant; }")["rc"] == 0
    h.start()  # a dormant one too, though nft 1.0.6 lists it as broken JSON
    assert h.log_text().count("removed table") == 2
    assert agent.nft("list", "tables")["stdout"].strip() == ""


def test_one_commander_per_namespace_keeps_the_table(tmp_path: Path, agent: NetnsAgent) -> None:
    """A second commander in the same network namespace never takes the table from the one
    that manages it: without grants it leaves it alone, with grants it does not start (nor
    does its ``--check`` pass), and a reload cannot bring it grants either."""
    for name in "abc":
        (tmp_path / name).mkdir()
    first = Host(tmp_path / "a", agent, '[commands]\nhello = "true"\n' + GRANTS)
    first.start()
    first.open(SRC4)
    other = '[grants.web]\nports = ["tcp/2300"]\ntimeout_sec = 60\n'
    second = Host(tmp_path / "b", agent, '[commands]\nhello = "true"\n')
    second.start()
    assert "left alone, another running ruroco-commander manages it" in second.log_text()
    assert "removed table" not in second.log_text()
    assert agent.connect(SRC4) == "open" and agent.connect(OTHER4) == "dropped"
    # a reload that would give it grants fails and keeps it running without them; its
    # --check warns first (its own commander runs, but the table is another's)
    second.write_commands('[commands]\nhello = "true"\n' + other)
    own_b = [str(COMMANDER), "--check", "-c", str(second.config), "--commands"]
    warned = agent("run", argv=[*own_b, str(second.commands)])
    assert warned["rc"] == 0 and "Warning:" in warned["stderr"], warned
    assert "another ruroco-commander manages" in warned["stderr"]
    os.kill(second.pid or 0, signal.SIGHUP)
    second.wait_log(r"Reload failed.*another ruroco-commander manages table inet ruroco")
    assert not second._died()
    second.kill(signal.SIGTERM)
    third = Host(tmp_path / "c", agent, '[commands]\nhello = "true"\n' + other)
    argv = [str(COMMANDER), "-c", str(third.config), "--commands", str(third.commands)]
    refused = agent("run", argv=argv)
    assert refused["rc"] == 1
    assert refused["stderr"].count("\n") == 1
    assert (
        "another ruroco-commander manages table inet ruroco in this network namespace"
        in (refused["stderr"])
    )
    check = agent("run", argv=[str(COMMANDER), "--check", *argv[1:]])
    assert check["rc"] == 0, check  # a warning: a deploy may stop the other one first
    assert "Warning:" in check["stderr"] and "another ruroco-commander manages" in check["stderr"]
    own = [str(COMMANDER), "--check", "-c", str(first.config), "--commands", str(first.commands)]
    mine = agent("run", argv=own)
    assert mine["rc"] == 0 and "another ruroco-commander" not in mine["stderr"], mine
    assert agent.connect(SRC4) == "open" and agent.connect(OTHER4) == "dropped"
    assert agent.connect(OTHER4, OTHER_PORT) == "open"  # the third one's guard never came
    first.kill(signal.SIGKILL)  # the kernel drops its lock: the table may change hands
    third.start()
    assert "1 grant(s)" in third.log_text()
    assert agent.connect(OTHER4, OTHER_PORT) == "dropped"
    third.write_commands('[commands]\nhello = "true"\n')  # its last grant gone by reload
    os.kill(third.pid or 0, signal.SIGHUP)
    third.wait_log(r"Reloaded ")
    first.start()  # the lock was given back with the table
    assert agent.connect(OTHER4) == "dropped"


def test_check_validates_grants_and_nftables(tmp_path: Path, agent: NetnsAgent) -> None:
    h = Host(tmp_path, agent, '[commands]\nhello = "true"\n' + GRANTS)
    check = [str(COMMANDER), "--check", "-c", str(h.config), "--commands", str(h.commands)]
    ok = agent("run", argv=check)
    assert ok["rc"] == 0, ok
    assert "(1 command, 1 grant)" in ok["stdout"]
    assert agent.nft("list", "tables")["stdout"] == ""  # nft -c applies nothing
    h.write_commands('[commands]\nopen_ssh = "true"\n' + GRANTS)
    clash = agent("run", argv=check)
    assert clash["rc"] == 1
    assert clash["stderr"].count("\n") == 1
    assert (
        'grant "ssh" defines "open_ssh", which clashes with the [commands] entry'
        in (clash["stderr"])
    )
    h.write_commands(GRANTS.replace(f"tcp/{PORT}", "tcp/70000"))
    bad = agent("run", argv=check)
    assert bad["rc"] == 1 and "is above 65535" in bad["stderr"], bad


def test_knock_through_client_and_server_then_both_killed(
    tmp_path: Path, agent: NetnsAgent
) -> None:
    """The whole path: real client → UDP → server → commander → nft; then no daemon at all."""
    dep = Deployment(tmp_path / "dep")
    dep.write_commands()
    dep.commands.write_text(dep.commands.read_text() + GRANTS)
    log = dep.logs / "both.log"
    commander = agent(
        "spawn",
        argv=[str(COMMANDER), "-c", str(dep.config), "--commands", str(dep.commands)],
        log=str(log),
        env=base_env(),
    )["pid"]
    wait_for(lambda: dep.socket_path.exists(), 20, "commander socket")
    port = 34567
    server = agent(
        "spawn",
        argv=[str(SERVER), "-c", str(dep.config)],
        log=str(log),
        env=base_env(RUROCO_LISTEN_ADDRESS=f"127.0.0.1:{port}"),
    )["pid"]
    wait_for(lambda: "Running server" in log.read_text(), 20, "server start")
    assert agent.connect(DST4) == "dropped"
    env = {"RUROCO_CONF_DIR": str(dep.client_dir)}
    send = [str(CLIENT), "send", "-a", f"127.0.0.1:{port}", "-k", str(dep.client_key)]
    knock = agent(
        "run", argv=["env", *[f"{k}={v}" for k, v in env.items()], *send, "-c", "open_ssh"]
    )
    assert knock["rc"] == 0, knock
    accepted = agent("wait_open", src=DST4, dst=DST4, port=PORT, limit=5.0)
    assert accepted["state"] == "open", log.read_text()
    knocked = time.monotonic()
    for pid in (server, commander):
        os.kill(pid, signal.SIGKILL)
        assert agent("wait", pid=pid, timeout=10)["rc"] is not None
    assert agent.connect(DST4) == "open"
    sleep_until(knocked + TIMEOUT + 0.5)
    assert agent.connect(DST4) == "dropped"
    assert agent.connect(SRC4) == "dropped"
