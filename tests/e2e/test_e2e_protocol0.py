"""Protocol 0 end to end (docs/protocol.md, Protocol 0): the real ``ruroco-client --protocol
0``, server and commander on loopback. A protocol-0 packet runs its command only with
``accept_protocol_0 = true``; protocol 0 and 1 of one key share one replay floor, in both
orders; the kernel filter lets protocol 0 through only when it is accepted."""

from __future__ import annotations

import time

from e2e_harness import Deployment, DeploymentFactory, read_blocklist
from reload_harness import sighup

from ruroco import protocol
from ruroco.ipaddr import parse_ip
from ruroco.protocol import PROTOCOL_0, PROTOCOL_VERSION, V0_MSG_SIZE


def reseed(dep: Deployment) -> None:
    """The sentinel's counter is the wall clock, ahead of the client's: the floor is shared
    by every packet of the key, so the client's next knock must start from now too."""
    assert dep.client_cmd("reseed").returncode == 0


def claim_packet(dep: Deployment, version: int, counter: int, ip: str) -> bytes:
    """A permissive packet claiming ``ip``, so the command's output names which one ran."""
    data = protocol.ClientData(
        protocol.command_hash("default"), counter, False, parse_ip(ip), parse_ip("127.0.0.1")
    )
    return protocol.build_packet(dep.key, data, protocol=version)


def test_client_protocol_0_packets_have_the_0_14_2_layout(make_deployment: DeploymentFactory):
    dep = make_deployment()
    packet = dep.capture_client_packet("--protocol", "0", "-c", "open_ssh")
    assert len(packet) == V0_MSG_SIZE
    key_id, blob = protocol.split_packet(packet)
    assert key_id == dep.key.key_id
    data = protocol.ClientData.decode(dep.key.decrypt(blob, PROTOCOL_0), PROTOCOL_0)
    assert data.cmd_hash == protocol.command_hash("open_ssh") and data.strict
    assert data.counter == dep.client_counter() and data.dst_ip == parse_ip("127.0.0.1")


def test_protocol_0_runs_only_with_accept_protocol_0(make_deployment: DeploymentFactory):
    dep = make_deployment().start()
    assert dep.server is not None
    since = dep.server.mark()
    dep.knock("--protocol", "0")
    line = dep.wait_rejection(since, "Invalid read count 93, expected 94")
    assert line.startswith("[") and "Rejected datagram from 127.0.0.1 port" in line
    dep.assert_nothing_ran(0)  # the sentinel (protocol 1) runs; the knock before it did not
    reseed(dep)

    dep.write_config(accept_protocol_0=True)
    assert "settings changed: accept_protocol_0" in sighup(dep.server)
    dep.knock("--protocol", "0")
    assert dep.wait_runs(2)[1] == "127.0.0.1"
    assert dep.server.wait_log(r"Valid data for key .* with 127\.0\.0\.1 \(protocol 0\)$")

    dep.write_config(accept_protocol_0=False)
    assert "settings changed: accept_protocol_0" in sighup(dep.server)
    since = dep.server.mark()
    dep.knock("--protocol", "0")
    dep.wait_rejection(since, "Invalid read count 93, expected 94")
    dep.assert_nothing_ran(2)


def test_both_protocols_share_one_replay_floor_in_both_orders(
    make_deployment: DeploymentFactory,
):
    dep = make_deployment()
    dep.write_config(accept_protocol_0=True)
    dep.start()
    assert dep.server is not None
    runs = 0
    for step, (first, second) in enumerate(
        ((PROTOCOL_VERSION, PROTOCOL_0), (PROTOCOL_0, PROTOCOL_VERSION))
    ):
        newer = time.time_ns()  # above every floor so far, the sentinel's included
        older = newer - 500_000
        dep.send_raw(claim_packet(dep, first, newer, f"198.51.100.{10 + step}"))
        runs += 1
        assert dep.wait_runs(runs)[-1] == f"198.51.100.{10 + step}"
        for counter in (older, newer):  # older, and the very same counter, in the other format
            since = dep.server.mark()
            dep.send_raw(claim_packet(dep, second, counter, "198.51.100.99"))
            dep.wait_rejection(since, f"- {counter} is on blocklist, expected > Some({newer})")
        dep.assert_nothing_ran(runs)
        runs += 1  # the sentinel
        assert read_blocklist(dep)[dep.key.key_id] >= newer
    assert "198.51.100.99" not in dep.runs()
    counts = dep.server.find(r"Valid data .* \(protocol 0\)$")
    assert len(counts) == 1


def test_the_kernel_filter_passes_protocol_0_when_accepted(make_deployment: DeploymentFactory):
    dep = make_deployment()
    dep.write_config(accept_protocol_0=True, kernel_filter=True)
    dep.start()
    assert dep.server is not None
    assert dep.server.find("datagrams that are not 94 or 93 bytes")
    dep.knock("--protocol", "0")
    assert dep.wait_runs(1) == ["127.0.0.1"]

    dep.write_config(accept_protocol_0=False, kernel_filter=True)
    sighup(dep.server)
    since = dep.server.mark()
    dep.knock("--protocol", "0")
    dep.assert_nothing_ran(1)
    assert not dep.server.find("Invalid read count", since)  # the kernel dropped it, unlogged
