"""Per-key policy with the real daemons: ``[keys.<stem>]`` narrows what a key may run, from
where, for whom and until when; a refused packet runs nothing, now or later."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from e2e_harness import (
    COMMANDER,
    SERVER,
    Deployment,
    DeploymentFactory,
    base_env,
    read_blocklist,
    wait_for,
)
from tomltext import toml_str

from ruroco import protocol

SECOND = 1_000_000_000


def output_command(name: str) -> str:
    """A commands.toml value that appends ``$RUROCO_IP`` to ``<out>/<name>.out``."""
    return toml_str(f"printf '%s\\n' \"$RUROCO_IP\" >> {{out}}/{name}.out")


def with_policy(
    make: DeploymentFactory, policy: str, extra_commands: dict[str, str] | None = None
) -> Deployment:
    dep = make(extra_commands)
    dep.config.write_text(dep.config.read_text() + policy)
    return dep


def run(*argv: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv],
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )


def floor(dep: Deployment) -> int:
    return read_blocklist(dep)[dep.key.key_id]


def test_a_key_limited_to_a_cannot_run_b_and_a_refused_packet_is_used_up(
    make_deployment: DeploymentFactory,
) -> None:
    dep = with_policy(
        make_deployment,
        '[keys.test]\ncommands = ["a"]\n',
        {"a": output_command("a"), "b": output_command("b")},
    ).start()
    assert dep.server is not None
    dep.server.wait_log(r"Per-key policy for 1 key\(s\): keys\.test")
    b_hash = protocol.command_hash("b")

    since = dep.server.mark()
    dep.knock("-c", "b")
    dep.wait_rejection(
        since, "127.0.0.1", '(file "test.key")', f"command {b_hash}", pattern="keys.test.commands"
    )
    dep.knock("-c", "a")
    assert dep.wait_runs(1, "a") == ["127.0.0.1"]

    # A refused packet is used up: its floor reaches the disk with no accepted knock after it,
    # a lower counter is a replay, and its bytes never run, not even once a reload allows b.
    now = time.time_ns()
    refused = dep.packet(cmd="b", counter=now + 5 * SECOND)
    since = dep.server.mark()
    _, port = dep.send_raw(refused)
    dep.wait_rejection(since, "127.0.0.1", str(port), pattern="keys.test.commands")
    wait_for(lambda: floor(dep) == now + 5 * SECOND, 5, "the refused packet's floor on disk")
    dep.send_raw(dep.packet(cmd="a", counter=now))
    since = dep.server.mark()
    dep.config.write_text(dep.config.read_text().replace('["a"]', '["a", "b"]'))
    os.kill(dep.server.pid, signal.SIGHUP)
    dep.server.wait_log(r"Reloaded ", since)
    dep.send_raw(refused)
    dep.send_raw(dep.packet(cmd="b", counter=now + 6 * SECOND))
    assert dep.wait_runs(1, "b") == ["127.0.0.1"]
    time.sleep(0.3)
    assert dep.runs("b") == ["127.0.0.1"]  # the fresh packet ran, the refused one did not
    assert dep.runs("a") == ["127.0.0.1"]  # and the lower counter did not either
    assert floor(dep) == now + 6 * SECOND


def test_a_packet_from_outside_sources_runs_nothing(make_deployment: DeploymentFactory) -> None:
    dep = with_policy(
        make_deployment, '[keys.test]\nsources = ["127.0.0.3/32", "198.51.100.0/24"]\n'
    )
    dep.start_commander()
    dep.start_server("::")  # dual stack: IPv4 peers arrive as ::ffff:a.b.c.d
    assert dep.server is not None
    now = time.time_ns()

    since = dep.server.mark()
    outside = dep.packet(counter=now + 4)
    _, port = dep.send_raw(outside, src_host="127.0.0.2")
    dep.wait_rejection(
        since,
        "Rejected datagram from 127.0.0.2 port",
        str(port),
        "source 127.0.0.2 is outside keys.test.sources",
    )
    since = dep.server.mark()
    dep.send_raw(dep.packet(counter=now + 1, dst="::1"), src_host="::1")
    dep.wait_rejection(since, "from ::1 port", "source ::1 is outside keys.test.sources")
    since = dep.server.mark()
    claim = dep.packet(counter=now + 2, strict=False, src="203.0.113.9")
    dep.send_raw(claim, src_host="127.0.0.3")
    dep.wait_rejection(since, "from 127.0.0.3 port", "claimed IP 203.0.113.9 is outside")
    # a claim outside sources is refused from anywhere, so it is used up
    wait_for(lambda: floor(dep) == now + 2, 5, "the refused claim's floor on disk")

    # A refusal for the source does not use the packet up: whoever saw it could otherwise
    # send a copy from outside first and make the key holder's own datagram a replay.
    dep.send_raw(outside, src_host="127.0.0.3")
    assert dep.wait_runs(1) == ["127.0.0.3"]
    dep.send_raw(dep.packet(counter=now + 5), src_host="127.0.0.3")
    dep.send_raw(dep.packet(counter=now + 6, strict=False, src="198.51.100.7"), "127.0.0.3")
    assert dep.wait_runs(3) == ["127.0.0.3", "127.0.0.3", "198.51.100.7"]
    time.sleep(0.3)
    assert dep.runs() == ["127.0.0.3", "127.0.0.3", "198.51.100.7"]


def test_a_key_past_not_after_runs_nothing(make_deployment: DeploymentFactory) -> None:
    dep = with_policy(
        make_deployment,
        "[keys.test]\nnot_after = 2000-01-01T00:00:00Z\n"
        "[keys.fresh]\nnot_after = 2999-01-01T00:00:00+01:00\n",
    )
    fresh_text = dep._gen_key()
    fresh_file = dep.etc / "fresh.key"
    fresh_file.write_text(fresh_text)
    fresh_file.chmod(0o400)

    checked = run(SERVER, "-c", dep.config, "--check")
    assert checked.returncode == 0, checked.stderr
    assert checked.stderr.splitlines() == [
        "Warning: keys.test.not_after (2000-01-01T00:00:00+00:00) has passed: "
        'key file "test.key" is refused for every packet'
    ]

    dep.start()
    assert dep.server is not None
    since = dep.server.mark()
    dep.knock()
    dep.wait_rejection(
        since,
        '(file "test.key"): key expired at 2000-01-01T00:00:00+00:00 (keys.test.not_after)',
    )
    dep.send_raw(dep.packet(key=protocol.parse_key(fresh_text)))
    assert dep.wait_runs(1) == ["127.0.0.1"]
    time.sleep(0.3)
    assert dep.runs() == ["127.0.0.1"]


def test_allow_permissive_false_refuses_a_claimed_ip(make_deployment: DeploymentFactory) -> None:
    dep = with_policy(make_deployment, "[keys.test]\nallow_permissive = false\n").start()
    assert dep.server is not None
    since = dep.server.mark()
    dep.knock("-e", "-i", "203.0.113.9")
    dep.wait_rejection(
        since,
        "from 127.0.0.1 port",
        "claimed IP 203.0.113.9 is not the source and keys.test.allow_permissive is false",
    )
    dep.knock("-e")  # permissive without a claim: runs for the real source
    dep.knock()
    assert dep.wait_runs(2) == ["127.0.0.1", "127.0.0.1"]
    time.sleep(0.3)
    assert "203.0.113.9" not in dep.runs()


def test_a_table_for_a_missing_key_file_stops_start_and_check_in_one_line(
    make_deployment: DeploymentFactory,
) -> None:
    dep = with_policy(make_deployment, "[keys.test]\n[keys.ghost]\n")
    expected = (
        f'Error: Could not parse server config "{dep.config}": keys.ghost names no key file '
        f'(there is no "ghost.key" in "{dep.etc}")'
    )
    for argv in ((SERVER, "-c", dep.config, "--check"), (SERVER, "-c", dep.config)):
        res = run(*argv)
        assert res.returncode == 1, res.stdout + res.stderr
        assert res.stderr.splitlines()[-1] == expected
        assert "Traceback" not in res.stderr
    assert not dep.blocklist.exists()


def test_a_bad_policy_stops_start_in_one_line(make_deployment: DeploymentFactory) -> None:
    dep = with_policy(make_deployment, "[keys.test]\nnot_after = 2027-06-30\n")
    res = run(SERVER, "-c", dep.config)
    assert res.returncode == 1
    assert res.stderr.splitlines() == [
        f'Error: Could not parse server config "{dep.config}": keys.test.not_after must be an '
        "offset date-time such as 2027-06-30T00:00:00Z, not a bare date"
    ]


def test_commander_check_refuses_a_grant_of_a_command_it_does_not_define(
    make_deployment: DeploymentFactory,
) -> None:
    dep = with_policy(
        make_deployment, '[keys.test]\ncommands = ["default", "opne_ssh"]\n', {"a": '"true"'}
    )
    res = run(COMMANDER, "-c", dep.config, "--commands", dep.commands, "--check")
    assert res.returncode == 1
    assert res.stderr.splitlines() == [
        f'Error: {dep.config}: keys.test.commands grants "opne_ssh", which {dep.commands} '
        "does not define"
    ]
    dep.config.write_text(dep.config.read_text().replace('"opne_ssh"', '"a"'))
    res = run(COMMANDER, "-c", dep.config, "--commands", dep.commands, "--check")
    assert res.returncode == 0, res.stderr
    # one file alone (the Ansible validate: step) is not cross-checked
    dep.config.write_text(dep.config.read_text().replace('"a"', '"opne_ssh"'))
    assert run(COMMANDER, "-c", dep.config, "--check").returncode == 0
