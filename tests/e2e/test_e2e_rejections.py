"""Every bad datagram runs nothing and leaves its reason, with the source, in the server log."""

from __future__ import annotations

import os
import re
import time

import pytest
from e2e_harness import Deployment, DeploymentFactory

from ruroco import protocol
from ruroco.ipaddr import parse_ip

HOUR_NS = 3600 * 10**9


@pytest.mark.parametrize("offset", [0, 8, 20, 36, 93], ids=["key_id", "iv", "tag", "ct", "last"])
def test_tampered_packet(deploy: Deployment, offset: int) -> None:
    datagram = bytearray(deploy.packet())
    datagram[offset] ^= 0x01
    since = deploy.server.mark()
    _, port = deploy.send_raw(bytes(datagram))
    if offset == 0:  # a changed key id is an unknown key
        needle = protocol.hex_list(bytes(datagram[:8]))
        deploy.wait_rejection(since, "127.0.0.1", str(port), needle, pattern=r"(?i)key")
    else:
        deploy.wait_rejection(since, "127.0.0.1", str(port), pattern=r"(?i)decrypt|tag|authenticat")
    deploy.assert_nothing_ran(before=0)


def test_short_packet(deploy: Deployment) -> None:
    since = deploy.server.mark()
    _, port = deploy.send_raw(deploy.packet()[:93])
    deploy.wait_rejection(since, "127.0.0.1", str(port), pattern=r"\b93\b.*\b94\b|\b94\b.*\b93\b")
    deploy.assert_nothing_ran(before=0)


@pytest.mark.parametrize("extra", [1, 2, 1306], ids=["95", "96", "1400"])
def test_long_packet_is_not_truncated_and_run(deploy: Deployment, extra: int) -> None:
    """A valid packet plus trailing bytes: the original truncated and ran it; we must not."""
    since = deploy.server.mark()
    _, port = deploy.send_raw(deploy.packet() + os.urandom(extra))
    deploy.wait_rejection(since, "127.0.0.1", str(port), pattern=r"\b94\b")
    deploy.assert_nothing_ran(before=0)


def test_unknown_key(deploy: Deployment) -> None:
    stranger = protocol.parse_key(protocol.generate_key())
    since = deploy.server.mark()
    _, port = deploy.send_raw(deploy.packet(key=stranger))
    deploy.wait_rejection(
        since, "127.0.0.1", str(port), protocol.hex_list(stranger.key_id), pattern=r"(?i)key"
    )
    deploy.assert_nothing_ran(before=0)


def test_wrong_destination(deploy: Deployment) -> None:
    """The real client aimed at 127.0.0.2 (not in ``ips``); its datagram is then replayed to us."""
    datagram = deploy.capture_client_packet(at="127.0.0.2")
    since = deploy.server.mark()
    _, port = deploy.send_raw(datagram)
    deploy.wait_rejection(since, "127.0.0.1", str(port), "127.0.0.2", pattern=r"(?i)host|dest|dst")
    deploy.assert_nothing_ran(before=0)


def test_stale_counters(deploy: Deployment) -> None:
    """Below the startup floor, equal to the last accepted counter, and one below it."""
    since = deploy.server.mark()
    _, port = deploy.send_raw(deploy.packet(counter=1))
    deploy.wait_rejection(since, "127.0.0.1", str(port), pattern=r"(?i)blocklist|replay|stale")

    accepted = time.time_ns()
    deploy.send_raw(deploy.packet(counter=accepted))
    deploy.wait_runs(1)
    for counter in (accepted, accepted - 1):
        since = deploy.server.mark()
        _, port = deploy.send_raw(deploy.packet(counter=counter))  # fresh IV: different bytes
        deploy.wait_rejection(
            since, "127.0.0.1", str(port), str(counter), pattern=r"(?i)blocklist|replay"
        )
    deploy.assert_nothing_ran(before=1)


def test_far_future_counter_is_rejected_without_locking_the_key(deploy: Deployment) -> None:
    future = time.time_ns() + 2 * HOUR_NS  # default max_clock_skew_seconds = 3600
    since = deploy.server.mark()
    _, port = deploy.send_raw(deploy.packet(counter=future))
    deploy.wait_rejection(since, "127.0.0.1", str(port), str(future), pattern=r"(?i)future")
    # the floor did not move: an ordinary packet right after it still runs
    deploy.send_raw(deploy.packet())
    assert deploy.wait_runs(1) == ["127.0.0.1"]
    deploy.assert_nothing_ran(before=1)


def test_strict_source_mismatch(deploy: Deployment) -> None:
    since = deploy.server.mark()
    deploy.knock("-i", "192.0.2.7")  # strict is the default
    line = deploy.wait_rejection(since, "192.0.2.7", pattern=r"(?i)source")
    assert re.search(r"127\.0\.0\.1", line), f"real source missing in: {line}"
    deploy.assert_nothing_ran(before=0)


def test_unsupported_protocol_version(deploy: Deployment) -> None:
    """Byte 0 of the authenticated plaintext is the version; only 1 is accepted."""
    data = protocol.ClientData(
        protocol.command_hash("default"), time.time_ns(), True, None, parse_ip("127.0.0.1")
    )
    plaintext = bytearray(data.encode())
    plaintext[0] = 2
    since = deploy.server.mark()
    _, port = deploy.send_raw(deploy.key.encrypt(bytes(plaintext)))
    deploy.wait_rejection(since, "127.0.0.1", str(port), pattern=r"(?i)version")
    deploy.assert_nothing_ran(before=0)


def test_junk_does_not_eat_the_rate_limit_but_valid_knocks_do(
    make_deployment: DeploymentFactory,
) -> None:
    """Wrong sizes and unknown key ids are dropped before the limiter (docs/deviations.md #2)."""
    dep: Deployment = make_deployment()
    dep.write_config(max_requests_per_second=1, max_requests_per_second_global=1)
    dep.start()
    stranger = protocol.parse_key(protocol.generate_key())
    for _ in range(20):
        dep.send_raw(os.urandom(10))
        dep.send_raw(dep.packet() + b"x")
        dep.send_raw(dep.packet(key=stranger))
    since = dep.server.mark()
    burst = [dep.packet() for _ in range(5)]
    for datagram in burst:
        dep.send_raw(datagram)
    assert dep.wait_runs(1) == ["127.0.0.1"]
    dep.wait_rejection(since, "127.0.0.1", pattern=r"(?i)rate limit")
