"""``ruroco-client connect`` figures (docs/connect.md): bulk throughput and time to first byte.

A real server and commander with one grant (``[grants.bconn]``) guarding two ports; the same
services listen on two unguarded ports for the direct figures. All on 127.0.0.1 in the
bench's private network namespace (nftables is changed).

* **Bulk:** ``MIB`` MiB from a service to the reader (download) and from the writer to a
  service (upload), through ``connect``'s relay (its stdin/stdout are pipes to the bench, as
  ssh's are) against a direct TCP connection read and written by the bench itself; the
  clock runs from the first byte to the last. The grant is open already (one untimed knock):
  this is the relay, not the knock.
* **ssh to the remote command's output:** two real OpenSSH servers (``bench/sshd.py``), one
  on a guarded port and one on an unguarded port; the clock runs from starting ``ssh``
  (key login, ``echo``) to the command's output line on ssh's stdout. Three ways: straight
  to the unguarded port, through ``ProxyCommand ruroco-client connect`` to the guarded one
  (the grant closed before every run: knock, wait, relay), and the same with ``--fdpass``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import click

from bench import proc, stats
from bench.rurocoenv import Deployment
from bench.sshd import SshServer
from ruroco import protocol
from ruroco.ipaddr import parse_ip
from ruroco.ipc import encode_commander_data

GRANT = "bconn"
BULK, BULK_OPEN = 2400, 2401  # guarded, unguarded: bulk service
SSH, SSH_OPEN = 2402, 2403  # guarded, unguarded: a real sshd each
CHUNK = 1 << 18
REMOTE_OUTPUT = "ruroco-bench-ok"


def _listen(port: int, handler) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(64)

    def serve() -> None:
        while True:
            try:
                conn, _ = s.accept()
            except OSError:
                return
            threading.Thread(target=handler, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return s


def _bulk(size: int):
    """``D`` first: send ``size`` bytes and close; ``U``: read to EOF, answer the count."""
    block = os.urandom(CHUNK)

    def handle(conn: socket.socket) -> None:
        with conn:
            mode = conn.recv(1)
            if mode == b"D":
                left = size
                while left:
                    n = conn.send(memoryview(block)[: min(left, CHUNK)])
                    left -= n
            elif mode == b"U":
                got = 0
                while data := conn.recv(CHUNK):
                    got += len(data)
                conn.sendall(got.to_bytes(8, "big"))

    return handle


def _mib_s(size: int, seconds: float) -> float:
    return size / (1 << 20) / seconds


def _read_all(read, size: int) -> float:
    """Seconds from the first byte to ``size`` bytes read with ``read(n)``."""
    got, t0 = 0, 0.0
    while got < size:
        data = read(CHUNK)
        if not data:
            raise RuntimeError(f"stream ended after {got} of {size} bytes")
        if not got:
            t0 = time.perf_counter()
        got += len(data)
    return time.perf_counter() - t0


def _direct_download(size: int) -> float:
    with socket.create_connection(("127.0.0.1", BULK_OPEN)) as c:
        c.sendall(b"D")
        return _read_all(c.recv, size)


def _direct_upload(size: int) -> float:
    block = os.urandom(CHUNK)
    with socket.create_connection(("127.0.0.1", BULK_OPEN)) as c:
        c.sendall(b"U")
        t0 = time.perf_counter()
        for _ in range(size // CHUNK):
            c.sendall(block)
        c.shutdown(socket.SHUT_WR)
        assert int.from_bytes(c.recv(8), "big") == size
        return time.perf_counter() - t0


class Client:
    def __init__(self, dep: Deployment, conf: Path) -> None:
        self.dep, self.env = dep, dict(os.environ, RUROCO_CONF_DIR=str(conf))
        self.env.pop("RUROCO_LOG", None)
        self.args = ["-k", str(dep.key_file), "-a", f"127.0.0.1:{dep.port}", "-c", f"open_{GRANT}"]

    def connect_argv(self, port: int, *extra: str) -> list[str]:
        return [proc.tool("ruroco-client"), "connect", "127.0.0.1", str(port), *self.args, *extra]

    def proxy(self, fdpass: bool) -> str:
        """The ``ProxyCommand`` line, as a ``~/.ssh/config`` would hold it."""
        argv = [proc.tool("ruroco-client"), "connect", "%h", "%p", *self.args]
        return " ".join(argv) + (" --fdpass" if fdpass else "")

    def popen(self, port: int) -> subprocess.Popen:
        return subprocess.Popen(
            self.connect_argv(port, "--timeout", "20"),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env,
            bufsize=0,
        )


def _relay_download(client: Client, size: int) -> float:
    p = client.popen(BULK)
    try:
        p.stdin.write(b"D")
        return _read_all(p.stdout.read, size)
    finally:
        p.stdin.close()
        p.wait(20)


def _relay_upload(client: Client, size: int) -> float:
    block = os.urandom(CHUNK)
    p = client.popen(BULK)
    try:
        p.stdin.write(b"U")
        first = p.stdin.write(block)  # the clock starts once the relay takes bytes
        t0 = time.perf_counter()
        for _ in range(size // CHUNK - 1):
            p.stdin.write(block)
        p.stdin.close()
        assert first == CHUNK
        reply = p.stdout.read(8)
        took = time.perf_counter() - t0
        assert int.from_bytes(reply, "big") == size, reply
        return took
    finally:
        p.wait(20)


def _ssh_command_ms(client: Client, server: SshServer, proxy: str | None) -> float:
    """Milliseconds from starting ``ssh`` to the remote command's output on its stdout."""
    options = []
    if proxy is not None:
        fdpass = "yes" if proxy.endswith("--fdpass") else "no"
        options = [f"ProxyCommand={proxy}", f"ProxyUseFdpass={fdpass}"]
    t0 = time.perf_counter()
    p = subprocess.Popen(
        server.argv(f"echo {REMOTE_OUTPUT}", *options),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=client.env,
    )  # fmt: skip
    try:
        line = p.stdout.readline()
        took = (time.perf_counter() - t0) * 1000
        if line.strip() != REMOTE_OUTPUT.encode():
            raise RuntimeError(f"ssh gave {line!r} (rc {p.wait()}): {p.stderr.read()!r}")
        return took
    finally:
        p.kill()
        p.wait()


def _knocks_settled(dep: Deployment) -> bool:
    """Has the commander opened or extended the grant for every knock the server took?
    ``connect`` stops waiting as soon as the port accepts, which can be before the
    commander has applied that knock (the grant was open already); a close sent then could
    be undone by the late open."""
    taken = dep.server_log.read_text(errors="replace").count("Valid data")
    log = dep.commander_log.read_text(errors="replace")
    return log.count("Opened grant") + log.count("Extended grant") >= taken


def _close_grant(dep: Deployment) -> None:
    """``close_bconn`` for 127.0.0.1 straight to the commander, once every knock has been
    applied; back when the port drops."""
    deadline = time.monotonic() + 5
    while not _knocks_settled(dep):
        if time.monotonic() > deadline:
            raise RuntimeError("the commander did not apply every knock")
        time.sleep(0.005)
    message = encode_commander_data(protocol.command_hash(f"close_{GRANT}"), parse_ip("127.0.0.1"))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(dep.root / "ruroco.socket"))
        s.sendall(message)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with socket.socket() as c:
            c.settimeout(0.05)
            try:
                c.connect(("127.0.0.1", SSH))
            except OSError:
                return
        time.sleep(0.01)
    raise RuntimeError("the grant did not close")


def _summary(values: list[float]) -> dict:
    return {"p50": stats.percentile(values, 50), "max": max(values), "n": len(values)}


def run_connect(root: Path, mib: int = 256, runs: int = 20) -> dict:
    if os.environ.get("RUROCO_BENCH_NETNS") != "1":
        raise RuntimeError("needs the bench's private network namespace: it changes nftables")
    size = mib << 20
    dep = Deployment(root, per_ip=10_000, global_limit=10_000)
    ports = ", ".join(f'"tcp/{p}"' for p in (BULK, SSH))
    with open(dep.commands, "a") as fh:
        fh.write(f"[grants.{GRANT}]\nports = [{ports}]\ntimeout_sec = 60\n")
    bulk = _bulk(size)
    listeners = [_listen(BULK, bulk), _listen(BULK_OPEN, bulk)]
    client = Client(dep, root / "client")
    result: dict = {"mib": mib, "runs": runs}
    servers: list[SshServer] = []
    try:
        guarded = SshServer(root / "sshd", SSH)
        servers.append(guarded)
        direct = SshServer(root / "sshd", SSH_OPEN)
        servers.append(direct)
        dep.start()
        first = client.popen(BULK)  # one untimed knock opens the grant for the bulk runs
        first.stdin.write(b"U")
        first.stdin.close()
        assert int.from_bytes(first.stdout.read(8), "big") == 0
        first.wait(20)
        for name, fn in (
            ("direct_download", lambda: _direct_download(size)),
            ("relay_download", lambda: _relay_download(client, size)),
            ("direct_upload", lambda: _direct_upload(size)),
            ("relay_upload", lambda: _relay_upload(client, size)),
        ):
            seconds = [fn() for _ in range(3)]
            result[f"{name}_mib_s"] = _mib_s(size, stats.median(seconds))
        took: dict[str, list[float]] = {"direct": [], "connect": [], "fdpass": []}
        _ssh_command_ms(client, direct, None)  # warm caches: ssh, sshd, the client's imports
        for _ in range(runs):
            took["direct"].append(_ssh_command_ms(client, direct, None))
            for name, fdpass in (("connect", False), ("fdpass", True)):
                _close_grant(dep)
                took[name].append(_ssh_command_ms(client, guarded, client.proxy(fdpass)))
        for name, values in took.items():
            result[f"ssh_command_{name}_ms"] = _summary(values)
        result["ssh"] = subprocess.run(
            ["ssh", "-V"], capture_output=True, text=True, check=False
        ).stderr.strip()
        crashed = dep.crashed()
        if crashed:
            result["error"] = crashed
    finally:
        for s in listeners:
            s.close()
        for server in servers:
            server.close()
        dep.stop()
        subprocess.run(["nft", "delete", "table", "inet", "ruroco"], capture_output=True)
    return result


@click.command()
@click.option("--mib", type=click.IntRange(1, 4096), default=256)
@click.option("--runs", type=click.IntRange(1, 200), default=20)
@click.option("--work", type=click.Path(path_type=Path), required=True)
def main(mib: int, runs: int, work: Path) -> None:
    """Run the stage alone (under ``unshare -n``) and print its figures as JSON."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    os.environ["RUROCO_BENCH_NETNS"] = "1"
    click.echo(json.dumps(run_connect(work, mib, runs)))


if __name__ == "__main__":
    main()
