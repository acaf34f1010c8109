"""``ruroco-client connect`` against a guarded port: real server, commander and nftables.

Each test gets a private network namespace (``NetnsAgent`` of test_e2e_grants.py, ``unshare
-n``) holding the server on ``[::]:80`` (the port ``connect`` knocks at by default), the
commander with ``[grants.ssh]`` guarding ``tcp/2222``, and the agent's echo service on that
port. The client runs in the namespace through ``nsenter -n``, with pipes to this test, so
what it relays is checked byte for byte; ssh runs there the same way.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_harness import CLIENT, COMMANDER, SERVER, Deployment, base_env, wait_for
from test_e2e_grants import NetnsAgent

from bench.sshd import SshServer

PORT = 2222  # guarded, echo service
SSH_PORT = 2223  # guarded, a real sshd (bench/sshd.py)
V6 = "fd00::1"
GRANTS = f'[grants.ssh]\nports = ["tcp/{PORT}", "tcp/{SSH_PORT}"]\ntimeout_sec = 60\n'


class Guarded:
    """A namespace with a server, a commander guarding ``PORT`` and the client's files."""

    def __init__(self, root: Path, agent: NetnsAgent) -> None:
        self.agent = agent
        self.dep = Deployment(root)
        self.dep.ips = [*self.dep.ips, V6]  # max_requests_per_second = 1000 already
        self.dep.write_config()
        self.dep.commands.write_text(self.dep.commands.read_text() + GRANTS)
        self.log = self.dep.logs / "daemons.log"
        self.log.touch()
        self.commander = self._spawn([str(COMMANDER), "-c", str(self.dep.config), "--commands",
                                      str(self.dep.commands)], base_env())  # fmt: skip
        wait_for(self.dep.socket_path.exists, 20, "commander socket")
        env = base_env(RUROCO_LISTEN_ADDRESS="[::]:80")
        self.server = self._spawn([str(SERVER), "-c", str(self.dep.config)], env)
        wait_for(lambda: "Running server" in self.log.read_text(), 20, "server start")

    def _spawn(self, argv: list[str], env: dict[str, str]) -> int:
        return int(self.agent("spawn", argv=argv, log=str(self.log), env=env)["pid"])

    def kill(self, pid: int) -> None:
        os.kill(pid, signal.SIGKILL)
        assert self.agent("wait", pid=pid, timeout=10)["rc"] is not None

    def argv(self, host: str, *extra: str) -> list[str]:
        """``connect`` inside the namespace (``nsenter -n`` into the agent's)."""
        client = [str(CLIENT), "connect", host, str(PORT), "-k", str(self.dep.client_key)]
        return ["nsenter", "-t", str(self.agent.proc.pid), "-n", *client, *extra]

    def env(self) -> dict[str, str]:
        env = base_env(RUROCO_CONF_DIR=str(self.dep.client_dir))
        env.pop("RUROCO_LOG")
        return env

    def run(
        self, argv: list[str], data: bytes = b"", timeout: float = 60
    ) -> tuple[int, bytes, str]:
        done = subprocess.run(
            argv, input=data, capture_output=True, env=self.env(), timeout=timeout
        )
        return done.returncode, done.stdout, done.stderr.decode(errors="replace")

    def granted(self) -> str:
        rows = self.agent("run", argv=[str(COMMANDER), "--list-grants"])
        assert rows["rc"] == 0, rows
        return str(rows["stdout"])


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Guarded]:
    agent = NetnsAgent()
    try:
        agent("setup", addresses=[f"{V6}/128"])
        agent("listen", port=PORT)
        yield Guarded(tmp_path, agent)
    finally:
        agent.close()  # ends the daemons it started


def counters(stderr: str) -> list[int]:
    return [int(c) for c in re.findall(r"with counter (\d+) ", stderr)]


def test_connect_knocks_then_relays_an_echo_both_ways(net: Guarded) -> None:
    assert net.agent.connect("127.0.0.1") == "dropped"  # guarded before the knock
    payload = os.urandom(1 << 20)
    rc, out, err = net.run(net.argv("127.0.0.1", "-c", "open_ssh", "-v"), payload)
    assert rc == 0, err + net.log.read_text()
    assert out == payload
    assert "knocking and connecting over IPv4" in err
    assert "to udp://127.0.0.1:80, for 127.0.0.1:2222" in err  # the default server: HOST:80
    assert "Opened grant ssh for 127.0.0.1 for 60s" in net.log.read_text()


def test_with_the_commander_stopped_it_exits_1_within_the_timeout(net: Guarded) -> None:
    net.kill(net.commander)
    t0 = time.monotonic()
    argv = net.argv("127.0.0.1", "-c", "open_ssh", "--timeout", "3", "--interval", "1")
    rc, out, err = net.run(argv)
    elapsed = time.monotonic() - t0
    assert rc == 1 and out == b""
    assert err == (
        "Error: No TCP connection to 127.0.0.1:2222 after 3 knocks over IPv4 in 3.0s"
        " (--timeout 3, --interval 1; last try: no answer)"  # dropped, not refused
        "; the server's log says whether it refused the knocks"
        " (`is on blocklist` there for a key new to it means: run `ruroco-client reseed`)\n"
    )
    assert elapsed < 3 + 3  # the wait plus a generous start (nsenter, interpreter)
    assert len(re.findall(r"Valid data", net.log.read_text())) == 3  # each knock got there


def test_a_counter_older_than_the_key_at_the_server_is_named_and_reseed_cures_it(
    net: Guarded,
) -> None:
    """The trap of a key new to a server: its floor is the server's start, so a client whose
    counter file is older is refused as a replay. ``connect`` cannot see that (no answers),
    so its give-up line points at the server's log and at ``reseed``; after ``reseed`` the
    same command gets through."""
    net.dep.client_dir.mkdir(parents=True, exist_ok=True)
    (net.dep.client_dir / "counter").write_bytes((10**18).to_bytes(16, "big"))  # 2001
    argv = net.argv("127.0.0.1", "-c", "open_ssh", "--timeout", "1.5", "--interval", "1")
    rc, out, err = net.run(argv)
    assert rc == 1 and out == b"", err
    assert "last try: no answer); the server's log says whether it refused" in err
    assert "run `ruroco-client reseed`" in err
    refused = re.findall(r"Rejected datagram[^\n]*", net.log.read_text())
    assert refused and all("is on blocklist" in line for line in refused), refused
    reseed = subprocess.run(
        [str(CLIENT), "reseed"], capture_output=True, text=True, env=net.env(), timeout=30
    )
    assert reseed.returncode == 0, reseed.stderr
    rc, out, err = net.run(net.argv("127.0.0.1", "-c", "open_ssh"), b"y")
    assert (rc, out) == (0, b"y"), err


def test_20_parallel_connects_succeed_with_20_distinct_counters(net: Guarded) -> None:
    # One knock each: a long --interval, so a run that is slow to start under load does not
    # knock again (a second knock would be a fresh counter, not a reused one, but the counts
    # below would no longer be 20).
    procs = [
        subprocess.Popen(
            net.argv("127.0.0.1", "-c", "open_ssh", "-v", "--interval", "50"),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=net.env(),
        )
        for _ in range(20)
    ]
    results = [p.communicate(f"fork {i}\n".encode(), timeout=60) for i, p in enumerate(procs)]
    seen: list[int] = []
    for i, (p, (out, err)) in enumerate(zip(procs, results, strict=True)):
        assert (p.returncode, out) == (0, f"fork {i}\n".encode()), err.decode()
        assert "already running" not in err.decode()  # the lock never failed
        seen += counters(err.decode())
    assert len(seen) == len(set(seen)) == 20
    # A run can be through before the server has taken its own knock (the grant was open
    # already from an earlier one), so the server's 20th line may come after the last exit.
    wait_for(
        lambda: len(re.findall(r"Valid data", net.log.read_text())) >= 20, 10, "20 knocks taken"
    )
    log = net.log.read_text()
    assert len(re.findall(r"Valid data", log)) == 20
    assert "Invalid counter" not in log  # no counter was used twice


def _dual(net: Guarded, tmp_path: Path, *extra: str) -> tuple[int, bytes, str]:
    """``connect dual.test``: a name with an IPv6 and an IPv4 address (a private /etc/hosts
    in a mount namespace of the client's own)."""
    hosts = tmp_path / "hosts"
    hosts.write_text(f"127.0.0.1 dual.test\n{V6} dual.test\n")
    argv = net.argv("dual.test", "-c", "open_ssh", "-v", *extra)
    nsenter, client = argv[:4], argv[4:]
    script = 'mount --bind "$0" /etc/hosts && exec "$@"'
    return net.run([*nsenter, "unshare", "-m", "sh", "-c", script, str(hosts), *client], b"x")


def test_a_name_with_both_families_gets_a_knock_over_each(net: Guarded, tmp_path: Path) -> None:
    rc, out, err = _dual(net, tmp_path)
    assert (rc, out) == (0, b"x"), err
    assert re.search(r"knocking and connecting over IPv(4 and IPv6|6 and IPv4)", err), err
    assert "over IPv6 with counter" in err and f"to udp://[{V6}]:80, for [{V6}]:2222" in err
    assert "over IPv4 with counter" in err and "to udp://127.0.0.1:80, for 127.0.0.1:2222" in err
    rows = net.granted()  # each family's source has its grant, whichever connected first
    assert re.search(r"^ssh\s+127\.0\.0\.1\s", rows, re.M) and re.search(
        rf"^ssh\s+{re.escape(V6)}\s", rows, re.M
    ), rows


def test_ipv6_only_knocks_and_connects_over_ipv6(net: Guarded, tmp_path: Path) -> None:
    rc, out, err = _dual(net, tmp_path, "-6")
    assert (rc, out) == (0, b"x"), err
    assert "knocking and connecting over IPv6" in err
    assert "over IPv4" not in err
    assert f"Connected to [{V6}]:2222 over IPv6" in err
    rows = net.granted()
    assert V6 in rows and "127.0.0.1" not in rows, rows


@pytest.mark.parametrize("fdpass", [False, True])
def test_real_ssh_runs_a_command_through_connect(
    net: Guarded, tmp_path: Path, fdpass: bool
) -> None:
    """A real sshd on a guarded port; ssh with ``ProxyCommand`` (relayed) and with
    ``ProxyUseFdpass yes`` (the socket handed over) logs in with a key and runs a command:
    its output arrives, so the whole SSH session went through ``connect`` both ways."""
    nsenter = ("nsenter", "-t", str(net.agent.proc.pid), "-n")
    with SshServer(tmp_path / "sshd", SSH_PORT, prefix=nsenter) as sshd:
        assert net.agent.connect("127.0.0.1", SSH_PORT) == "dropped"
        proxy = f"{CLIENT} connect %h %p -k {net.dep.client_key} -c open_ssh"
        proxy += " --fdpass" if fdpass else ""
        options = (f"ProxyCommand={proxy}", f"ProxyUseFdpass={'yes' if fdpass else 'no'}")
        rc, out, err = net.run(sshd.argv("echo ruroco-ok; echo err >&2", *options), timeout=60)
    assert (rc, out) == (0, b"ruroco-ok\n"), err
    assert err.strip().endswith("err"), err
    assert "Accepted publickey for" in sshd.log.read_text()
    assert "Opened grant ssh for 127.0.0.1" in net.log.read_text()
