"""The original's integration table, with the real client, on loopback only."""

from __future__ import annotations

import pytest
from e2e_harness import Deployment, DeploymentFactory, read_blocklist

DEADBEEF = "dead:beef:dead:beef:dead:beef:dead:beef"

# (id, server bind host, client destination host, client flags, expected RUROCO_IP or None)
CASES = [
    ("ip_mismatch_v4", "::", "127.0.0.1", ["-i", "192.168.178.123"], None),
    ("ip_mismatch_v6", "::", "::1", ["-i", DEADBEEF], None),
    (
        "ip_mismatch_not_strict_ipv4",
        "::",
        "127.0.0.1",
        ["-e", "-i", "192.168.178.123"],
        "192.168.178.123",
    ),
    ("ip_mismatch_not_strict_ipv6", "::", "::1", ["-e", "-i", DEADBEEF], DEADBEEF),
    ("ip_match_v4", "127.0.0.1", "127.0.0.1", ["-i", "127.0.0.1"], "127.0.0.1"),
    ("ip_match_v6", "::", "::1", ["-i", "::1"], "::1"),
]


@pytest.mark.parametrize(
    ("bind", "to", "flags", "expect"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_claimed_ip(
    make_deployment: DeploymentFactory, bind: str, to: str, flags: list[str], expect: str | None
) -> None:
    dep: Deployment = make_deployment().start(bind)
    since = dep.server.mark()
    dep.knock(*flags, to=to)
    if expect is None:
        claimed = flags[flags.index("-i") + 1]
        dep.wait_rejection(since, claimed, to, pattern=r"(?i)source")
        dep.assert_nothing_ran(before=0)
    else:
        assert dep.wait_runs(1) == [expect]


@pytest.mark.parametrize("to", ["127.0.0.1", "::1"], ids=["ipv4", "ipv6"])
def test_two_consecutive_sends_both_run(make_deployment: DeploymentFactory, to: str) -> None:
    dep: Deployment = make_deployment().start("::")
    seen = []
    for n in (1, 2):
        dep.knock(to=to)
        assert dep.wait_runs(n) == [to] * n
        stored = read_blocklist(dep)
        assert list(stored) == [dep.key.key_id]
        assert stored[dep.key.key_id] == dep.client_counter()
        seen.append(stored[dep.key.key_id])
    assert seen[1] > seen[0]


def test_lowered_client_counter_is_a_replay(make_deployment: DeploymentFactory) -> None:
    dep: Deployment = make_deployment().start("::")
    dep.knock(to="127.0.0.1")
    dep.wait_runs(1)
    count = dep.client_counter()
    (dep.client_dir / "counter").write_bytes((count - 1).to_bytes(16, "big"))
    since = dep.server.mark()
    dep.knock(to="127.0.0.1")  # the client increments to `count`: equal to the floor
    dep.wait_rejection(since, "127.0.0.1", str(count), pattern=r"(?i)blocklist|replay")
    dep.assert_nothing_ran(before=1)
