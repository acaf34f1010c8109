"""Protocol 0 against the released original: real ruroco 0.14.2 binaries on loopback.

Their client's packets run on our server with ``accept_protocol_0 = true`` (and are a wrong
size without it); our ``ruroco-client send --protocol 0`` runs on their server and
commander, where our default protocol 1 does not. Their ``blocklist.msgpck`` (the map and
the file's own path) keeps its floors on our server; ours needs that path appended before
their server takes it. The builds live in
``../shared/peers/ruroco-rust/bin/v0142`` beside the checkout (README there), or wherever
``RUROCO_PEERS`` points (the ``ruroco-rust`` folder). A missing folder fails these tests
with a message naming it; whoever lacks the builds deselects them explicitly with
``pytest -k "not interop"``.

0.14.2's CLI and config differ from ours: ``client send --key <KEY TEXT>`` (the key on the
command line; a throwaway test key here), the client's counter under
``$HOME/.config/ruroco``, commands in ``config.toml`` under ``[commands]``, and the server's
address only from ``RUROCO_LISTEN_ADDRESS``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import msgpack
import pytest
from e2e_harness import (
    CLIENT,
    SERVER,
    START_TIMEOUT,
    Daemon,
    DeploymentFactory,
    base_env,
    free_udp_port,
    read_blocklist,
    wait_for,
)
from reload_harness import sighup
from tomltext import toml_str

from ruroco import protocol
from ruroco.ipaddr import parse_ip
from ruroco.server import blocklist

REPO = Path(__file__).resolve().parents[2]


def peer_bin() -> Path:
    root = Path(os.environ.get("RUROCO_PEERS") or REPO.parent / "shared" / "peers" / "ruroco-rust")
    folder = root / "bin" / "v0142"
    missing = [n for n in ("client", "server", "commander") if not (folder / n).is_file()]
    if missing:
        pytest.fail(
            f"the ruroco 0.14.2 builds are missing: {folder} has no {', '.join(missing)} "
            "(set RUROCO_PEERS to the ruroco-rust folder, or deselect with -k 'not interop')",
            pytrace=False,
        )
    return folder


def their_client(home: Path, address: str, key_text: str, *args: str) -> str:
    home.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [str(peer_bin() / "client"), "send", "-a", address, "-k", key_text, *args],
        env={"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return done.stderr + done.stdout


def test_their_client_runs_on_our_server_only_with_accept_protocol_0(
    make_deployment: DeploymentFactory, tmp_path: Path
) -> None:
    dep = make_deployment().start()
    assert dep.server is not None
    home = tmp_path / "home"
    since = dep.server.mark()
    their_client(home, dep.address(), dep.key_text, "-e", "-i", "198.51.100.20")
    dep.wait_rejection(since, "Invalid read count 93, expected 94")
    dep.assert_nothing_ran(0)

    dep.write_config(accept_protocol_0=True)
    sighup(dep.server)
    # the sentinel's counter (the wall clock) is the key's floor now: their client's counter
    # file started before it, so it is reseeded, as its own ``reseed`` command would do
    (home / ".config" / "ruroco" / "counter").write_bytes(time.time_ns().to_bytes(16, "big"))
    their_client(home, dep.address(), dep.key_text, "-e", "-i", "198.51.100.21")
    their_client(home, dep.address(), dep.key_text, "-c", "default")  # strict, no claim
    assert dep.wait_runs(3)[1:] == ["198.51.100.21", "127.0.0.1"]
    assert len(dep.server.find(r"Valid data .* \(protocol 0\)$")) == 2
    # and our own protocol-0 client on the same key: one floor, one counter sequence each
    assert dep.client_cmd("reseed").returncode == 0
    dep.knock("--protocol", "0", "-e", "-i", "198.51.100.22")
    assert dep.wait_runs(4)[-1] == "198.51.100.22"


class TheirDeployment:
    """0.14.2's server and commander on one config dir (keys, blocklist and socket in it)."""

    def __init__(self, root: Path, key_text: str | None = None) -> None:
        self.root = root
        self.dir = root / "etc"
        self.out = root / "out"
        self.logs = root / "logs"
        for d in (self.dir, self.out, self.logs):
            d.mkdir(parents=True)
        self.key_text = key_text or protocol.generate_key()
        (self.dir / "test.key").write_text(self.key_text)
        (self.dir / "test.key").chmod(0o600)
        command = f"printf '%s\\n' \"$RUROCO_IP\" >> {self.out}/default.out"
        (self.dir / "config.toml").write_text(
            'ips = ["127.0.0.1"]\n'
            f"config_dir = {toml_str(str(self.dir))}\n"
            'socket_user = "root"\n'
            'socket_group = "root"\n'
            "max_requests_per_second = 100\n"
            "[commands]\n"
            f"default = {toml_str(command)}\n"
        )
        self.port = free_udp_port("127.0.0.1")
        self.daemons: list[Daemon] = []

    def start(self) -> TheirDeployment:
        config = str(self.dir / "config.toml")
        commander = Daemon(
            "their-commander",
            [str(peer_bin() / "commander"), "-c", config],
            base_env(),
            self.logs / "commander.log",
        ).start()
        self.daemons.append(commander)
        wait_for(lambda: (self.dir / "ruroco.socket").exists(), START_TIMEOUT, "their socket")
        server = Daemon(
            "their-server",
            [str(peer_bin() / "server"), "-c", config],
            base_env(RUROCO_LISTEN_ADDRESS=f"127.0.0.1:{self.port}"),
            self.logs / "server.log",
        ).start()
        self.daemons.append(server)
        self.server = server
        server.wait_log("Running server", timeout=START_TIMEOUT)
        return self

    def runs(self) -> list[str]:
        path = self.out / "default.out"
        return path.read_text().splitlines() if path.exists() else []

    def stop(self) -> None:
        for d in reversed(self.daemons):
            d.stop()


@pytest.fixture
def theirs(tmp_path: Path):
    made = TheirDeployment(tmp_path / "theirs")
    try:
        yield made.start()
    finally:
        made.stop()


def our_client(theirs: TheirDeployment, tmp_path: Path, *args: str) -> None:
    key_file = tmp_path / "our.key"
    key_file.write_text(theirs.key_text)
    key_file.chmod(0o600)
    env = base_env(RUROCO_CONF_DIR=str(tmp_path / "conf"))
    env.pop("RUROCO_LOG")
    done = subprocess.run(
        [str(CLIENT), "send", "-a", f"127.0.0.1:{theirs.port}", "-k", str(key_file), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr


def test_our_protocol_0_runs_on_their_server(theirs: TheirDeployment, tmp_path: Path) -> None:
    since = theirs.server.mark()
    our_client(theirs, tmp_path)  # protocol 1: 94 bytes, cut to 93 there, fails the tag
    theirs.server.wait_log(r"Could not finalize decrypter", since=since)  # the tag failed
    our_client(theirs, tmp_path, "--protocol", "0", "-e", "-i", "198.51.100.30")
    our_client(theirs, tmp_path, "--protocol", "0")
    wait_for(lambda: len(theirs.runs()) >= 2, 10, "two runs on their commander")
    assert theirs.runs() == ["198.51.100.30", "127.0.0.1"]  # the protocol-1 knock never ran
    valid = theirs.server.find("Valid data for key", since)
    assert len(valid) == 2, theirs.server.log(since)


def protocol_0_packet(key: protocol.Key, counter: int, claimed_ip: str) -> bytes:
    """A permissive 0.14.2 packet claiming ``claimed_ip``, so a run names the packet."""
    data = protocol.ClientData(
        protocol.command_hash("default"),
        counter,
        False,
        parse_ip(claimed_ip),
        parse_ip("127.0.0.1"),
    )
    return protocol.build_packet(key, data, protocol=protocol.PROTOCOL_0)


def send_to(port: int, datagram: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(datagram, ("127.0.0.1", port))


def test_our_server_keeps_the_floors_in_their_blocklist(
    make_deployment: DeploymentFactory, tmp_path: Path
) -> None:
    """An operator moves a 0.14.2 server, blocklist included, to ours with accept_protocol_0:
    ``--check`` and start take 0.14.2's file (the map and its own path), and its floor holds."""
    dep = make_deployment()
    dep.write_config(accept_protocol_0=True)
    theirs = TheirDeployment(tmp_path / "theirs", dep.key_text)
    try:
        theirs.start()
        floor = time.time_ns()  # above the startup time their server gave the key
        send_to(theirs.port, protocol_0_packet(dep.key, floor, "198.51.100.40"))
        wait_for(lambda: theirs.runs() == ["198.51.100.40"], 10, "the knock on their server")
    finally:
        theirs.stop()
    their_file = theirs.dir / "blocklist.msgpck"
    written = their_file.read_bytes()
    assert msgpack.unpackb(written, raw=False, use_list=False, strict_map_key=False) == (
        {tuple(dep.key.key_id): floor.to_bytes(16, "big")},
        str(their_file),
    )
    dep.blocklist.write_bytes(written)

    check = subprocess.run(
        [str(SERVER), "-c", str(dep.config), "--check"],
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert check.returncode == 0, check.stderr
    assert "with 1 entry" in check.stdout + check.stderr
    assert dep.blocklist.read_bytes() == written  # --check writes nothing

    dep.start()
    assert dep.server is not None
    since = dep.server.mark()
    for counter, ip in ((floor, "198.51.100.41"), (floor - 1, "198.51.100.42")):
        dep.send_raw(protocol_0_packet(dep.key, counter, ip))
        dep.wait_rejection(since, f"{counter} is on blocklist, expected > Some({floor})")
    dep.send_raw(protocol_0_packet(dep.key, floor + 1, "198.51.100.43"))
    assert dep.wait_runs(1) == ["198.51.100.43"]  # in order: a replay's run would come first
    assert read_blocklist(dep) == {dep.key.key_id: floor + 1}  # rewritten in our form


def test_their_server_needs_our_blocklist_with_its_path_appended(tmp_path: Path) -> None:
    """Moving back to 0.14.2: it refuses our one-element file; appending the file's own path
    (docs/files.md, blocklist.msgpck) makes it 0.14.2's, floors kept."""
    theirs = TheirDeployment(tmp_path / "theirs")
    key = protocol.parse_key(theirs.key_text)
    floor = time.time_ns()  # our file's floor; their start seeds only keys without one
    their_file = theirs.dir / "blocklist.msgpck"
    their_file.write_bytes(blocklist.encode({key.key_id: floor}))
    refused = subprocess.run(
        [str(peer_bin() / "server"), "-c", str(theirs.dir / "config.toml")],
        env=base_env(RUROCO_LISTEN_ADDRESS=f"127.0.0.1:{theirs.port}"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert refused.returncode != 0
    assert "invalid length 1, expected struct Blocklist with 2 elements" in refused.stderr

    ours = their_file.read_bytes()
    their_file.write_bytes(b"\x92" + ours[1:] + msgpack.packb(str(their_file)))
    try:
        theirs.start()
        since = theirs.server.mark()
        send_to(theirs.port, protocol_0_packet(key, floor, "198.51.100.50"))
        theirs.server.wait_log(rf"{floor} is on blocklist", since=since)
        send_to(theirs.port, protocol_0_packet(key, floor + 1, "198.51.100.51"))
        wait_for(lambda: theirs.runs(), 10, "a run on their commander")
        assert theirs.runs() == ["198.51.100.51"]
    finally:
        theirs.stop()
