# Copyright: ruroco contributors
# MIT License (see LICENSE or https://opensource.org/license/mit)
"""ruroco_send's run() with a real Task and local connection against real loopback sockets.

Every packet is received on 127.0.0.1 and decrypted with ruroco.protocol, so the tests prove
what actually went over the wire, not what the plugin claims it sent.
"""

from __future__ import annotations

import ipaddress
import json
import re
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import threading

import pytest
from ansible.errors import AnsibleActionFail
from ansible.parsing.dataloader import DataLoader
from ansible.parsing.vault import VaultLib, VaultSecret
from ansible.playbook.play_context import PlayContext
from ansible.playbook.task import Task
from ansible.plugins.loader import connection_loader
from ansible.template import Templar, trust_as_template
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.ruroco.ruroco.plugins.action.ruroco_send import (
    ActionModule,
    destination,
    host_of,
)
from ruroco import protocol
from ruroco.errors import RurocoError
from ruroco.ipaddr import parse_ip

FIXTURE = "///////////erb7v3q2+796tvu/erb7v3q2+796tvu/erb7v3q2+7w=="
SECRET_PART = "erb7v3q2+796tvu"
KEY = protocol.parse_key(FIXTURE)


def make_action(args, check_mode=False, task_vars=None):
    task = Task()
    task.args = dict(args)
    task.check_mode = check_mode
    play_context = PlayContext()
    connection = connection_loader.get("local", play_context, os.devnull)
    loader = DataLoader()
    templar = Templar(loader=loader, variables=task_vars or {})
    return ActionModule(task, connection, play_context, loader, templar, None)


def run_action(args, check_mode=False, task_vars=None):
    task_vars = task_vars or {"inventory_hostname": "h1"}
    return make_action(args, check_mode, task_vars).run(task_vars=task_vars)


@pytest.fixture
def udp():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    yield sock
    sock.close()


@pytest.fixture
def key_file(tmp_path):
    path = tmp_path / "ruroco.key"
    path.write_text(FIXTURE)
    return str(path)


def receive(sock):
    """One datagram, decrypted with the fixture key: the ClientData that was really sent."""
    packet, _peer = sock.recvfrom(4096)
    assert len(packet) == protocol.MSG_SIZE
    key_id, blob = protocol.split_packet(packet)
    assert key_id == KEY.key_id
    return protocol.ClientData.decode(KEY.decrypt(blob))


def nothing_arrives(sock, seconds=0.3):
    sock.settimeout(seconds)
    try:
        sock.recvfrom(4096)
    except TimeoutError:
        return True
    return False


def test_knock_sends_a_valid_packet(udp, key_file, tmp_path):
    """One knock carries the command hash, the returned counter, strict flag and the dst IP."""
    port = udp.getsockname()[1]
    result = run_action(
        dict(
            address="127.0.0.1",
            port=port,
            key_file=key_file,
            command="open_ssh",
            conf_dir=str(tmp_path / "c"),
        )
    )
    data = receive(udp)
    assert result["changed"] is True and result["knocks"] == 1
    assert result["command"] == "open_ssh"
    assert result["destinations"] == [
        dict(destination=f"127.0.0.1:{port}", counter=data.counter, error=None)
    ]
    assert data.cmd_hash == protocol.command_hash("open_ssh")
    assert data.strict is True and data.src_ip is None
    assert data.dst_ip == parse_ip("127.0.0.1")
    assert (tmp_path / "c" / "counter").read_bytes() == data.counter.to_bytes(16, "big")


def test_protocol_0_sends_the_93_byte_packet_of_ruroco_0_14_2(udp, key_file, tmp_path):
    """protocol: 0 sends one 93-byte AES-256-GCM packet that decodes as protocol 0, with the
    client's next counter (the counter file is shared with protocol 1)."""
    port = udp.getsockname()[1]
    common = dict(address="127.0.0.1", port=port, key_file=key_file, conf_dir=str(tmp_path))
    first = run_action(dict(common, command="open_ssh", protocol=0))
    packet, _peer = udp.recvfrom(4096)
    assert len(packet) == 93 == protocol.V0_MSG_SIZE
    assert packet[: protocol.KEY_ID_SIZE] == KEY.key_id
    with pytest.raises(protocol.ProtocolError):  # not a protocol 1 ciphertext
        KEY.decrypt(packet[protocol.KEY_ID_SIZE :])
    data = protocol.ClientData.decode(KEY.decrypt(packet[protocol.KEY_ID_SIZE :], 0), 0)
    assert data.cmd_hash == protocol.command_hash("open_ssh")
    assert data.strict is True and data.dst_ip == parse_ip("127.0.0.1")
    assert first["destinations"] == [
        dict(destination=f"127.0.0.1:{port}", counter=data.counter, error=None)
    ]
    # The default is protocol 1 (94 bytes), with a counter above protocol 0's.
    run_action(common)
    later = receive(udp)
    assert later.counter > data.counter


def ansible_playbook(cwd, *arguments):
    """``ansible-playbook ARGUMENTS`` of this Python, started in ``cwd``, with this collection."""
    collections_root = os.path.abspath(__file__).split(os.sep + "ansible_collections" + os.sep)[0]
    env = dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH=collections_root,
        ANSIBLE_HOME=str(cwd / "ansible"),
        ANSIBLE_LOCALHOST_WARNING="false",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
    )
    return subprocess.run(
        [sys.executable, "-m", "ansible.cli.playbook", *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
        cwd=cwd,
    )


def run_playbook(cwd, knock, *options):
    """``ansible-playbook`` with one ruroco_send task of the arguments ``knock``, started in
    ``cwd`` with the playbook in ``cwd``/play (JSON is YAML: parsed and tagged as any)."""
    (cwd / "play").mkdir(exist_ok=True)
    play = cwd / "play" / "play.yml"
    tasks = [{"ruroco.ruroco.ruroco_send": knock}]
    play.write_text(json.dumps([dict(hosts="localhost", gather_facts=False, tasks=tasks)]))
    return ansible_playbook(cwd, "-i", "localhost,", *options, str(play))


@pytest.mark.parametrize("protocol_no", [0, 1])
def test_protocol_set_in_a_real_playbook(udp, key_file, tmp_path, protocol_no):
    """A playbook's ``protocol: 0`` reaches the client as the int it is: ansible-core 2.19 tags
    values it reads from YAML (an int subclass), which the client's exact check refused with
    "Unsupported protocol 0, expected 0 or 1"."""
    knock = dict(
        address=f"127.0.0.1:{udp.getsockname()[1]}",
        key_file=key_file,
        conf_dir=str(tmp_path / "c"),
        protocol=protocol_no,
    )
    out = run_playbook(tmp_path, knock)
    assert out.returncode == 0, out.stdout + out.stderr
    packet, _peer = udp.recvfrom(4096)
    size = (protocol.V0_MSG_SIZE, protocol.MSG_SIZE)[protocol_no]
    assert len(packet) == size
    data = protocol.ClientData.decode(KEY.decrypt(packet[8:], protocol_no), protocol_no)
    assert data.cmd_hash == protocol.command_hash("default")


def run_knock_playbook(cwd, extra_vars):
    """The collection's ``ruroco.ruroco.knock`` playbook with ``extra_vars`` (``-e`` JSON), for
    one host of ``ruroco_servers`` whose ``ansible_host`` is 192.0.2.1 (TEST-NET-1, nothing
    there): a packet reaches the test's socket only through ``ruroco_knock_address``."""
    inventory = cwd / "inventory.yml"
    host = dict(ansible_host="192.0.2.1", ansible_connection="local")
    inventory.write_text(json.dumps(dict(ruroco_servers=dict(hosts=dict(server1=host)))))
    extra = json.dumps(extra_vars)
    return ansible_playbook(cwd, "-i", str(inventory), "-e", extra, "ruroco.ruroco.knock")


def test_knock_playbook_passes_the_send_options(udp, key_file, tmp_path, closed_tcp):
    """``ruroco_knock_*`` variables reach ruroco_send: address (else the packet went to
    192.0.2.1), protocol 0 (93 bytes), ip and permissive (claimed source, strict flag off),
    ipv4, send_delay_ms, lock_timeout and a wait_for with host, timeout and interval. The
    playbook passed only command, port, key, key_file, conf_dir and wait_for.port."""
    closed_tcp.listen(1)
    out = run_knock_playbook(
        tmp_path,
        dict(
            ruroco_knock_command="open_ssh",
            ruroco_knock_key_file=key_file,
            ruroco_knock_conf_dir=str(tmp_path / "c"),
            ruroco_knock_address=f"127.0.0.1:{udp.getsockname()[1]}",
            ruroco_knock_protocol=0,
            ruroco_knock_ip="203.0.113.7",
            ruroco_knock_permissive=True,
            ruroco_knock_ipv4=True,
            ruroco_knock_send_delay_ms=0,
            ruroco_knock_lock_timeout=5,
            ruroco_knock_wait_port=closed_tcp.getsockname()[1],
            ruroco_knock_wait_host="127.0.0.1",
            ruroco_knock_wait_timeout=10,
            ruroco_knock_wait_interval=1,
        ),
    )
    assert out.returncode == 0, out.stdout + out.stderr
    packet, _peer = udp.recvfrom(4096)
    assert len(packet) == protocol.V0_MSG_SIZE == 93
    data = protocol.ClientData.decode(KEY.decrypt(packet[protocol.KEY_ID_SIZE :], 0), 0)
    assert data.cmd_hash == protocol.command_hash("open_ssh")
    assert data.strict is False and data.src_ip == parse_ip("203.0.113.7")
    assert nothing_arrives(udp)  # the port accepted after the first knock


@pytest.mark.parametrize(
    ("extra_vars", "message"),
    [
        (dict(ruroco_knock_ipv6=True), "Could not find any IPv6 address for 127.0.0.1"),
        (
            dict(ruroco_knock_ipv4=True, ruroco_knock_address="[::1]:9"),
            "Could not find any IPv4 address",
        ),
        (dict(ruroco_knock_send_delay_ms=-5), "send_delay_ms must be 0 or more, not -5"),
        (dict(ruroco_knock_lock_timeout=-1), "lock_timeout must be 0 or more seconds, not -1"),
        (dict(ruroco_knock_ip="not-an-ip"), 'Invalid ip value \\"not-an-ip\\"'),
        (dict(ruroco_knock_protocol=2), "value of protocol must be one of: 0, 1"),
        (
            dict(ruroco_knock_wait_port=1, ruroco_knock_wait_interval=0.5),
            "wait_for.interval must be 1-86400 seconds, not 0.5",
        ),
        (dict(ruroco_knock_wait_timeout=1), "missing required arguments: port found in wait_for"),
        (
            dict(
                ruroco_knock_wait_port=1,
                ruroco_knock_wait_host="localhost",
                ruroco_knock_wait_timeout=0,
            ),
            "Port 1 on localhost did not accept a TCP connection within 0s after 1 knock(s)",
        ),
    ],
)
def test_knock_playbook_fails_as_ruroco_send_would(udp, key_file, tmp_path, extra_vars, message):
    """Each ``ruroco_knock_*`` variable is the ruroco_send option of that name: a value the
    module refuses fails the playbook with the module's message. Any ``ruroco_knock_wait_*``
    makes a wait_for (without ``ruroco_knock_wait_port`` the module asks for it)."""
    base = dict(
        ruroco_knock_key_file=key_file,
        ruroco_knock_conf_dir=str(tmp_path / "c"),
        ruroco_knock_address=f"127.0.0.1:{udp.getsockname()[1]}",
    )
    out = run_knock_playbook(tmp_path, dict(base, **extra_vars))
    assert out.returncode != 0
    assert message in out.stdout, out.stdout + out.stderr


def test_inline_key_never_shows_up(udp, tmp_path, capfd):
    """The key option works and appears neither in the result nor on stdout/stderr."""
    port = udp.getsockname()[1]
    result = run_action(
        dict(
            address=f"127.0.0.1:{port}",
            key=FIXTURE,
            permissive=True,
            ip="192.0.2.7",
            conf_dir=str(tmp_path),
        )
    )
    data = receive(udp)
    assert data.strict is False and data.src_ip == parse_ip("192.0.2.7")
    out, err = capfd.readouterr()
    for text in (json.dumps(result), out, err):
        assert FIXTURE not in text and SECRET_PART not in text


def test_address_defaults_to_inventory_host(udp, key_file, tmp_path):
    """Without address, ansible_host of the inventory host is knocked."""
    port = udp.getsockname()[1]
    result = run_action(
        dict(port=port, key_file=key_file, conf_dir=str(tmp_path)),
        task_vars={"inventory_hostname": "web1", "ansible_host": "127.0.0.1"},
    )
    assert receive(udp).cmd_hash == protocol.command_hash("default")
    assert result["destinations"][0]["destination"] == f"127.0.0.1:{port}"


def test_templated_ansible_host_is_rendered(udp, key_file, tmp_path):
    """An ansible_host that is itself a template (as inventories allow) is rendered first."""
    port = udp.getsockname()[1]
    task_vars = {
        "inventory_hostname": "web1",
        "ansible_host": trust_as_template("{{ knock_ip }}"),
        "knock_ip": "127.0.0.1",
    }
    result = run_action(
        dict(port=port, key_file=key_file, conf_dir=str(tmp_path)), task_vars=task_vars
    )
    assert receive(udp).dst_ip == parse_ip("127.0.0.1")
    assert result["destinations"][0]["destination"] == f"127.0.0.1:{port}"


def test_check_mode_sends_nothing_and_keeps_the_counter(udp, key_file, tmp_path):
    """Check mode reports the destination and command, sends nothing, creates no counter."""
    port = udp.getsockname()[1]
    conf = tmp_path / "conf"
    result = run_action(
        dict(address="127.0.0.1", port=port, key_file=key_file, conf_dir=str(conf)), check_mode=True
    )
    assert result["changed"] is True and result["knocks"] == 0
    assert result["destinations"] == [
        dict(destination=f"127.0.0.1:{port}", counter=None, error=None)
    ]
    assert result["command"] == "default"
    assert nothing_arrives(udp)
    assert not (conf / "counter").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (dict(key="DEADBEEF"), "Key too short"),
        (
            dict(key_file="/nonexistent/ruroco.key"),
            'Could not read key file "/nonexistent/ruroco.key"',
        ),
        (dict(key=FIXTURE, address="127.0.0.1:asd"), 'Invalid port "asd"'),
    ],
)
@pytest.mark.parametrize("check_mode", [False, True])
def test_bad_input_fails_with_the_clients_message(tmp_path, args, message, check_mode):
    """Bad input fails with the client's one-line reason and no packet or counter is used; a
    dry run fails where the real run would (it passed with a missing key file or a bad IP)."""
    conf = tmp_path / "conf"
    with pytest.raises(AnsibleActionFail) as info:
        run_action(dict(dict(address="127.0.0.1", port=9, conf_dir=str(conf)), **args), check_mode)
    assert message in str(info.value)
    assert "DEADBEEF" not in str(info.value) and FIXTURE not in str(info.value)
    assert not (conf / "counter").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (dict(), "one of the following is required: key_file, key"),
        (dict(key=FIXTURE, key_file="/x"), "mutually exclusive"),
        (dict(key=FIXTURE, wait_for=dict(timeout=1)), "port"),
        (dict(key=FIXTURE, protocol=2), "value of protocol must be one of: 0, 1"),
    ],
)
def test_argument_errors(args, message):
    """Argument validation fails before anything is sent, also in check mode."""
    with pytest.raises(AnsibleActionFail) as info:
        run_action(dict(address="127.0.0.1", **args), check_mode=True)
    assert message in str(info.value)
    assert FIXTURE not in str(info.value)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (dict(ip="not-an-ip"), 'Invalid ip value "not-an-ip": invalid IP address syntax'),
        (dict(ip="1.2.3.4/24"), 'Invalid ip value "1.2.3.4/24": invalid IP address syntax'),
        (dict(port=70000), "port must be a UDP port, 1-65535, not 70000"),
        (dict(port=0), "port must be a UDP port, 1-65535, not 0"),
        (dict(send_delay_ms=-5), "send_delay_ms must be 0 or more, not -5"),
        (dict(lock_timeout=-1), "lock_timeout must be 0 or more seconds, not -1"),
    ],
)
@pytest.mark.parametrize("check_mode", [False, True])
def test_bad_options_fail_in_the_modules_own_words(tmp_path, udp, args, message, check_mode):
    """An option the client would refuse, or would take silently as something else (a negative
    pause as none), fails naming the module's option, not a CLI flag; nothing is sent and no
    counter is used, and a dry run fails alike."""
    conf = tmp_path / "conf"
    base = dict(address="127.0.0.1", port=udp.getsockname()[1], key=FIXTURE, conf_dir=str(conf))
    with pytest.raises(AnsibleActionFail) as info:
        run_action(dict(base, **args), check_mode)
    assert str(info.value) == message
    assert nothing_arrives(udp)
    assert not (conf / "counter").exists()


def _knock_in_fork(args, queue):
    queue.put(run_action(args)["destinations"][0]["counter"])


def test_concurrent_forks_use_distinct_counters(udp, key_file, tmp_path):
    """Processes knocking at once wait for the client lock and never reuse a counter."""
    port = udp.getsockname()[1]
    args = dict(address="127.0.0.1", port=port, key_file=key_file, conf_dir=str(tmp_path))
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_knock_in_fork, args=(args, queue)) for _i in range(8)]
    for proc in procs:
        proc.start()
    received = [receive(udp).counter for _i in procs]
    for proc in procs:
        proc.join(20)
        assert proc.exitcode == 0
    reported = [queue.get(timeout=5) for _i in procs]
    assert len(set(received)) == 8
    assert sorted(received) == sorted(reported)


def test_concurrent_threads_use_distinct_counters(udp, key_file, tmp_path):
    """Threads of one process are serialized by the same flock, so counters stay distinct."""
    port = udp.getsockname()[1]
    args = dict(address="127.0.0.1", port=port, key_file=key_file, conf_dir=str(tmp_path))
    results = []
    # Plugin loading is not thread-safe; build the actions first, as the worker does per fork.
    actions = [make_action(args) for _i in range(6)]
    threads = [
        threading.Thread(
            target=lambda a=a: results.append(a.run(task_vars={"inventory_hostname": "h"}))
        )
        for a in actions
    ]
    for thread in threads:
        thread.start()
    received = {receive(udp).counter for _i in threads}
    for thread in threads:
        thread.join(20)
    assert len(received) == 6
    assert received == {r["destinations"][0]["counter"] for r in results}


@pytest.fixture
def closed_tcp():
    """A TCP port that is bound but not listening: connects are refused until listen()."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    yield sock
    sock.close()


@pytest.mark.parametrize(
    ("wait", "message"),
    [
        (dict(interval=0), "wait_for.interval must be 1-86400 seconds, not 0"),
        (dict(interval=-1), "wait_for.interval must be"),
        (dict(interval=0.5), "knocking more often only meets the server's per-source rate"),
        (dict(interval=float("nan")), "wait_for.interval must be"),
        (dict(port=0), "wait_for.port must be a TCP port, 1-65535, not 0"),
        (dict(port=70000), "wait_for.port must be a TCP port, 1-65535, not 70000"),
        (dict(timeout=-1), "wait_for.timeout must be 0-86400 seconds, not -1"),
    ],
)
@pytest.mark.parametrize("check_mode", [False, True])
def test_wait_for_refuses_what_would_flood_or_cannot_work(udp, key_file, tmp_path, wait, message, check_mode):
    """An interval of 0 knocked ~4,000 times a second until the timeout (the server's rate
    limit refuses them and fail2ban counts the refusals); a port outside 1-65535 knocked and
    then waited the whole timeout. Both fail before the first knock now."""
    args = dict(
        address="127.0.0.1",
        port=udp.getsockname()[1],
        key_file=key_file,
        conf_dir=str(tmp_path),
        wait_for=dict(dict(port=1, timeout=0.3), **wait),
    )
    with pytest.raises(AnsibleActionFail, match=re.escape(message)):
        run_action(args, check_mode)
    assert nothing_arrives(udp)


def test_wait_for_with_no_time_still_tries_the_port_once(udp, key_file, tmp_path, closed_tcp):
    """``timeout: 0`` knocks once and tries the port once (it failed without a try)."""
    closed_tcp.listen(1)
    result = run_action(
        dict(
            address="127.0.0.1",
            port=udp.getsockname()[1],
            key_file=key_file,
            conf_dir=str(tmp_path),
            wait_for=dict(port=closed_tcp.getsockname()[1], timeout=0),
        )
    )
    assert not result.get("failed") and result["knocks"] == 1
    receive(udp)


def test_a_vault_encrypted_key_file_is_decrypted(udp, tmp_path):
    """As ``copy`` and the ``file`` lookup do; it failed with "Could not decode base64 key"."""
    secret = VaultSecret(b"correct horse")
    path = tmp_path / "vaulted.key"
    path.write_bytes(VaultLib([("default", secret)]).encrypt(FIXTURE))
    args = dict(address="127.0.0.1", port=udp.getsockname()[1], key_file=str(path))
    action = vault_action(dict(args, conf_dir=str(tmp_path)), secret)
    result = action.run(task_vars={"inventory_hostname": "h1"})
    assert result["destinations"][0]["error"] is None
    assert receive(udp).cmd_hash == protocol.command_hash("default")
    assert FIXTURE not in json.dumps(result)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["client.lock", "counter", "counter.next", "vaulted.key"]


def vault_action(args, secret):
    """An action whose loader knows the vault secret ``secret``."""
    task = Task()
    task.args = dict(args)
    loader = DataLoader()
    loader.set_vault_secrets([("default", secret)])
    play_context = PlayContext()
    connection = connection_loader.get("local", play_context, os.devnull)
    return ActionModule(task, connection, play_context, loader, Templar(loader=loader), None)


def test_a_relative_vaulted_key_file_is_read_where_the_plain_one_would_be(udp, tmp_path):
    """A real playbook in another directory than the working one: a relative key file that is
    not among the play's files is opened from the working directory, vaulted or not (the
    loader looked the vaulted one up from the playbook's directory and failed)."""
    (tmp_path / "pw").write_text("pw\n")
    (tmp_path / "v.key").write_bytes(VaultLib([("default", VaultSecret(b"pw"))]).encrypt(FIXTURE))
    knock = dict(address=f"127.0.0.1:{udp.getsockname()[1]}", key_file="v.key")
    conf = str(tmp_path / "c")
    out = run_playbook(tmp_path, dict(knock, conf_dir=conf), "--vault-password-file", "pw")
    assert out.returncode == 0, out.stdout + out.stderr
    assert receive(udp).cmd_hash == protocol.command_hash("default")


def test_a_wrong_vault_password_is_one_clear_line(udp, tmp_path):
    path = tmp_path / "v.key"
    path.write_bytes(VaultLib([("default", VaultSecret(b"right"))]).encrypt(FIXTURE))
    args = dict(address="127.0.0.1", port=udp.getsockname()[1], key_file=str(path))
    action = vault_action(dict(args, conf_dir=str(tmp_path / "c")), VaultSecret(b"wrong"))
    with pytest.raises(AnsibleActionFail) as info:
        action.run(task_vars={"inventory_hostname": "h1"})
    assert str(info.value).startswith(f'Could not decrypt key file "{path}": ')
    assert nothing_arrives(udp)


def test_wait_for_knocks_again_until_the_port_opens(udp, key_file, tmp_path, closed_tcp):
    """The port opens only after the second packet: the plugin knocks again and succeeds."""
    port = udp.getsockname()[1]
    seen = []

    def server():
        seen.append(receive(udp).counter)
        seen.append(receive(udp).counter)
        closed_tcp.listen(1)

    thread = threading.Thread(target=server)
    thread.start()
    result = run_action(
        dict(
            address="127.0.0.1",
            port=port,
            key_file=key_file,
            conf_dir=str(tmp_path),
            wait_for=dict(port=closed_tcp.getsockname()[1], timeout=15, interval=1),
        )
    )
    thread.join(10)
    assert not result.get("failed")
    assert result["knocks"] >= 2
    counters = [d["counter"] for d in result["destinations"]]
    assert counters[:2] == seen and counters == sorted(set(counters))


def test_wait_for_succeeds_after_one_knock_when_port_opens(udp, key_file, tmp_path, closed_tcp):
    """A listener opened right after the first packet is found within the first interval."""
    port = udp.getsockname()[1]

    def server():
        receive(udp)
        closed_tcp.listen(1)

    thread = threading.Thread(target=server)
    thread.start()
    result = run_action(
        dict(
            address="127.0.0.1",
            port=port,
            key=FIXTURE,
            conf_dir=str(tmp_path),
            wait_for=dict(port=closed_tcp.getsockname()[1], timeout=15, interval=5),
        )
    )
    thread.join(10)
    assert not result.get("failed") and result["knocks"] == 1


def test_wait_for_fails_with_a_clear_message(udp, key_file, tmp_path, closed_tcp):
    """Nothing listens: the plugin fails after the timeout, naming the knocks and the silence."""
    port = udp.getsockname()[1]
    tcp_port = closed_tcp.getsockname()[1]
    result = run_action(
        dict(
            address="127.0.0.1",
            port=port,
            key_file=key_file,
            conf_dir=str(tmp_path),
            wait_for=dict(port=tcp_port, timeout=2.5, interval=1),
        )
    )
    assert result["failed"] is True
    assert result["knocks"] >= 2
    assert f"Port {tcp_port} on 127.0.0.1 did not accept" in result["msg"]
    assert f"after {result['knocks']} knock(s)" in result["msg"]
    assert "(last try: connection refused)" in result["msg"]  # the host answered
    assert "silent" in result["msg"]
    assert "`is on blocklist`" in result["msg"] and "ruroco-client reseed" in result["msg"]
    received = [receive(udp).counter for _i in range(result["knocks"])]
    assert received == [d["counter"] for d in result["destinations"]]
    assert nothing_arrives(udp)


MISSING_PACKAGE_RUN = """
import os, sys
sys.modules["ruroco.client.sender"] = None  # as if the package were not installed
from ansible.errors import AnsibleError
from ansible.parsing.dataloader import DataLoader
from ansible.playbook.play_context import PlayContext
from ansible.playbook.task import Task
from ansible.plugins.loader import connection_loader
from ansible.template import Templar
from ansible_collections.ruroco.ruroco.plugins.action.ruroco_send import ActionModule
task = Task()
task.args = dict(address="127.0.0.1", key="not-shown")
task.check_mode = CHECK_MODE
pc = PlayContext()
loader = DataLoader()
conn = connection_loader.get("local", pc, os.devnull)
action = ActionModule(task, conn, pc, loader, Templar(loader=loader), None)
try:
    print("RESULT", action.run(task_vars={}))
except AnsibleError as exc:
    print(exc)
"""


def run_without_package(collections_root, check_mode):
    """Run the action plugin of the collection under ``collections_root`` in a Python where the
    ruroco package cannot be imported; return its output."""
    code = MISSING_PACKAGE_RUN.replace("CHECK_MODE", repr(check_mode))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(collections_root), *sys.path]))
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert "RESULT" not in out.stdout
    assert "not-shown" not in out.stdout + out.stderr
    return out


@pytest.mark.parametrize("check_mode", [False, True])
def test_missing_package_gives_a_clear_error(check_mode):
    """Without the ruroco package on the controller the task fails with an install hint, in
    check mode too (a dry run must not pass where the real run fails). A source copy of the
    collection carries no wheel and says so."""
    collections_root = os.path.abspath(__file__).split(os.sep + "ansible_collections" + os.sep)[0]
    out = run_without_package(collections_root, check_mode)
    assert "needs the 'ruroco' Python package on the controller" in out.stdout, out.stderr
    assert "carries no ruroco wheel (a source checkout)" in out.stdout, out.stdout


def test_missing_package_names_the_bundled_wheel(tmp_path):
    """A built collection carries the wheel (roles/ruroco_venv/files): the error gives the
    exact command that installs it into the Python that runs Ansible."""
    source = os.path.abspath(__file__).split(os.sep + "tests" + os.sep)[0]
    copy = tmp_path / "ansible_collections" / "ruroco" / "ruroco"
    shutil.copytree(os.path.join(source, "plugins"), copy / "plugins")
    wheel = copy / "roles" / "ruroco_venv" / "files" / "ruroco-0.1.0-py3-none-any.whl"
    wheel.parent.mkdir(parents=True)
    wheel.write_bytes(b"")
    out = run_without_package(tmp_path, check_mode=False)
    assert f"{sys.executable} -m pip install {wheel}" in out.stdout, out.stdout + out.stderr


IMPORT_COUNTING_WARM_UPS = """
from ruroco.client import sender
calls = []
sender.warm_up = lambda: calls.append("warm_up")
import ansible_collections.ruroco.ruroco.plugins.action.ruroco_send as plugin
print(calls, plugin.RUROCO_IMPORT_ERROR)
"""

IMPORT_WITH_AN_OLDER_PACKAGE = """
from ruroco.client import sender
del sender.warm_up  # a package from before warm_up existed
import ansible_collections.ruroco.ruroco.plugins.action.ruroco_send as plugin
print(plugin.RUROCO_IMPORT_ERROR)
"""


def import_plugin(code):
    collections_root = os.path.abspath(__file__).split(os.sep + "ansible_collections" + os.sep)[0]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([collections_root, *sys.path]))
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False, env=env
    )


def test_import_warms_up_the_client_once():
    """Ansible's strategy imports the action plugin in the controller's main process and forks
    a worker per host and task: the import does a knock's one-time set-up (OpenSSL's first
    cipher, the boot id), so the workers inherit it instead of paying it in every knock."""
    out = import_plugin(IMPORT_COUNTING_WARM_UPS)
    assert out.stdout == "['warm_up'] None\n", out.stderr


def test_an_older_package_without_warm_up_still_loads():
    """The warm-up is a speed-up: a package from before it still knocks, it is not reported
    as missing."""
    out = import_plugin(IMPORT_WITH_AN_OLDER_PACKAGE)
    assert out.stdout == "None\n", out.stderr


@pytest.mark.parametrize(
    ("address", "port", "expected"),
    [
        ("127.0.0.1", 80, "127.0.0.1:80"),
        ("example.org", 34020, "example.org:34020"),
        ("example.org:81", 34020, "example.org:81"),
        ("::1", 80, "[::1]:80"),
        ("::ffff:1.2.3.4", 80, "[::ffff:1.2.3.4]:80"),
        ("[::1]:81", 80, "[::1]:81"),
        ("[fe80::1%2]:81", 80, "[fe80::1%2]:81"),
    ],
)
def test_destination(address, port, expected):
    """A port in the address wins; otherwise the port option is added, IPv6 bracketed."""
    assert destination(address, port) == expected


@pytest.mark.parametrize("address", ["", "[::1]", "host:99999", "a:b:c"])
def test_destination_refuses_what_the_client_refuses(address):
    """The plugin reads addresses with the client's own parser, so it refuses the same ones."""
    with pytest.raises(RurocoError):
        destination(address, 80)


def test_malformed_address_fails_the_task_in_check_mode_too(key_file):
    """A malformed address fails with the client's message before anything is sent."""
    with pytest.raises(AnsibleActionFail, match="Invalid port"):
        run_action(dict(address="example.org:99999", key_file=key_file), check_mode=True)


@given(
    st.ip_addresses(),
    st.integers(min_value=1, max_value=65535),
)
def test_destination_roundtrips_ip_literals(ip, port):
    """Every IP literal gets the port and its host part names the same address (IPv4-mapped
    IPv6 comes back in the client's normalized text form, e.g. ::ffff:0.0.0.0)."""
    text = destination(str(ip), port)
    assert ipaddress.ip_address(host_of(text)) == ip
    assert text.endswith(f":{port}")
