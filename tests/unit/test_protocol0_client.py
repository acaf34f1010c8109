"""The client's ``--protocol 0`` (docs/protocol.md, Protocol 0): the library call and the
real ``ruroco-client`` send 93-byte packets in the 0.14.2 format, with the counter of the
conf dir; a bad protocol costs no counter value; the send path stays lean."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import ruroco
from ruroco.client.counter import counter_path
from ruroco.client.sender import SendRequest, send
from ruroco.errors import RurocoError
from ruroco.ipaddr import parse_ip
from ruroco.protocol import (
    PROTOCOL_0,
    V0_MSG_SIZE,
    ClientData,
    command_hash,
    parse_key,
    split_packet,
)

FIXTURE_KEY = "///////////erb7v3q2+796tvu/erb7v3q2+796tvu/erb7v3q2+7w=="
CLIENT = Path(sys.executable).parent / "ruroco-client"


@pytest.fixture
def receiver():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    yield sock
    sock.close()


def counter_of(conf_dir: Path) -> int:
    return int.from_bytes(Path(counter_path(str(conf_dir))).read_bytes()[:16], "big")


def opened(packet: bytes) -> ClientData:
    """The packet as the 0.14.2 server reads it: 93 bytes, GCM, no version byte."""
    assert len(packet) == V0_MSG_SIZE
    key = parse_key(FIXTURE_KEY)
    key_id, blob = split_packet(packet)
    assert key_id == key.key_id
    return ClientData.decode(key.decrypt(blob, PROTOCOL_0), PROTOCOL_0)


def test_the_library_sends_protocol_0_with_the_conf_dirs_counter(tmp_path, receiver):
    port = receiver.getsockname()[1]
    request = SendRequest(
        f"127.0.0.1:{port}", key=FIXTURE_KEY, command="open_ssh", permissive=True,
        ip="198.51.100.7", protocol=0,
    )  # fmt: skip
    (result,) = send(request, tmp_path)
    data = opened(receiver.recv(200))
    assert data.counter == result.counter == counter_of(tmp_path)
    assert data.cmd_hash == command_hash("open_ssh") and not data.strict
    assert (data.src_ip, data.dst_ip) == (parse_ip("198.51.100.7"), parse_ip("127.0.0.1"))
    # protocol 1 next, from the same counter: one sequence for both formats
    (again,) = send(request.replace(protocol=1), tmp_path)
    assert len(receiver.recv(200)) == 94 and again.counter == result.counter + 1


@pytest.mark.parametrize("bad", [2, -1, True, "0"])
def test_a_bad_protocol_is_refused_before_the_counter_exists(tmp_path, bad):
    request = SendRequest("127.0.0.1:9", key=FIXTURE_KEY, protocol=bad)  # type: ignore[arg-type]
    with pytest.raises(RurocoError, match="Unsupported protocol"):
        send(request, tmp_path)
    assert not os.path.exists(counter_path(str(tmp_path)))


def test_the_cli_sends_protocol_0(tmp_path, receiver):
    key_file = tmp_path / "k.key"
    key_file.write_text(FIXTURE_KEY)
    conf = tmp_path / "conf"
    port = receiver.getsockname()[1]
    done = subprocess.run(
        [str(CLIENT), "send", "-a", f"127.0.0.1:{port}", "-k", str(key_file), "--protocol", "0"],
        env=dict(os.environ, RUROCO_CONF_DIR=str(conf)),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    data = opened(receiver.recv(200))
    assert data.counter == counter_of(conf) and data.strict and data.src_ip is None
    bad = subprocess.run(
        [str(CLIENT), "send", "-a", "127.0.0.1:9", "-k", str(key_file), "--protocol", "2"],
        env=dict(os.environ, RUROCO_CONF_DIR=str(conf)),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode == 2
    assert "Error: Invalid value for '--protocol': '2' is not 0 or 1" in bad.stderr


HEAVY = ("click", "dataclasses", "typing", "ipaddress", "pathlib", "socket", "re", "contextlib")


def test_the_protocol_0_send_path_imports_nothing_heavy(tmp_path, receiver):
    """As tests/unit/client/test_client_coldstart.py for protocol 1: the GCM class comes from
    the binding module the client loads anyway."""
    key_file = tmp_path / "k.key"
    key_file.write_text(FIXTURE_KEY)
    argv = ["send", "-a", f"127.0.0.1:{receiver.getsockname()[1]}", "-k", str(key_file)]
    code = (
        "import sys\n"
        "from ruroco.client.cli import main\n"
        f"rc = main({[*argv, '--protocol', '0']!r})\n"
        f"loaded = sorted(m for m in {HEAVY!r} if m in sys.modules)\n"
        "import json\n"
        "print(json.dumps([rc, loaded]))\n"
    )
    repo = str(Path(ruroco.__file__).resolve().parent.parent)
    env = dict(os.environ, RUROCO_CONF_DIR=str(tmp_path / "conf"))
    env["PYTHONPATH"] = os.pathsep.join([repo, sysconfig.get_paths()["purelib"]])
    result = subprocess.run(
        [sys.executable, "-S", "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [0, []]
    assert len(receiver.recv(200)) == V0_MSG_SIZE
