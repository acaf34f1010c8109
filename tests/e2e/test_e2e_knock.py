"""A knock runs the command once: RUROCO_IP, replays, permissive claims, restarts, the key."""

from __future__ import annotations

import base64

from e2e_harness import Deployment

from ruroco import protocol


def counter_of(dep: Deployment, datagram: bytes) -> int:
    _, blob = protocol.split_packet(datagram)
    return protocol.ClientData.decode(dep.key.decrypt(blob)).counter


def test_knock_runs_command_with_ruroco_ip(deploy: Deployment) -> None:
    deploy.knock()
    assert deploy.wait_runs(1) == ["127.0.0.1"]
    assert deploy.server is not None
    assert deploy.server.find(r"Valid data")


def test_captured_client_packet_runs_once_and_replay_runs_nothing(deploy: Deployment) -> None:
    datagram = deploy.capture_client_packet()
    assert len(datagram) == protocol.MSG_SIZE
    counter = counter_of(deploy, datagram)

    deploy.send_raw(datagram)
    assert deploy.wait_runs(1) == ["127.0.0.1"]

    since = deploy.server.mark()
    _, port = deploy.send_raw(datagram)
    deploy.wait_rejection(
        since, "127.0.0.1", str(port), str(counter), pattern=r"(?i)blocklist|replay"
    )
    deploy.assert_nothing_ran(before=1)


def test_permissive_forwards_claimed_address(deploy: Deployment) -> None:
    deploy.knock("-e", "-i", "203.0.113.9")
    assert deploy.wait_runs(1) == ["203.0.113.9"]


def test_replay_is_still_rejected_after_server_restart(deploy: Deployment) -> None:
    datagram = deploy.capture_client_packet()
    deploy.send_raw(datagram)
    deploy.wait_runs(1)

    assert deploy.server is not None
    assert deploy.server.stop() == 0
    deploy.start_server()  # same port, same blocklist_dir

    since = deploy.server.mark()
    _, port = deploy.send_raw(datagram)
    counter = counter_of(deploy, datagram)
    deploy.wait_rejection(
        since, "127.0.0.1", str(port), str(counter), pattern=r"(?i)blocklist|replay"
    )
    deploy.assert_nothing_ran(before=1)


def test_key_is_never_logged_or_printed(deploy: Deployment) -> None:
    res = deploy.knock()
    deploy.wait_runs(1)
    since = deploy.server.mark()
    _, port = deploy.send_raw(deploy.packet(counter=1))  # a rejection logs the key id, not the key
    deploy.wait_rejection(since, "127.0.0.1", str(port), pattern=r"(?i)blocklist|replay")

    raw = base64.b64decode(deploy.key_text)
    secret_forms = {
        deploy.key_text,
        base64.b64encode(raw[8:]).decode(),
        raw[8:].hex(),
        raw[8:].hex().upper(),
        protocol.hex_list(raw[8:])[1:-1],
    }
    outputs = deploy.all_logs() + res.stdout + res.stderr
    for form in secret_forms:
        assert form not in outputs
