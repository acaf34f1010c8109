"""Policy refusals from a real server are ordinary rejection lines: the shipped filter bans the
real source of each one, and nothing else."""

import base64
import os
import socket
import time

from server_helpers import packet, write_setup
from test_server_fail2ban import fail2ban, run_server

from ruroco.protocol import command_hash, parse_key

POLICY = """max_requests_per_second = 100
[keys.ruroco]
commands = ["a"]
sources = ["127.0.0.1/32", "::1/128", "198.51.100.0/24"]
[keys.old]
not_after = 2000-01-01T00:00:00Z
[keys."strict.one"]
allow_permissive = false
"""


def new_key(directory, stem):
    text = base64.b64encode(os.urandom(40)).decode()
    path = directory / f"{stem}.key"
    path.write_text(text)
    path.chmod(0o600)
    return parse_key(text)


def send(data, to, bind):
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.bind((bind, 0))
        s.sendto(data, to)
    time.sleep(0.05)


def test_every_policy_refusal_is_a_line_the_filter_bans_by_real_source(tmp_path):
    write_setup(tmp_path, ips=("127.0.0.1", "::1"), extra=POLICY)
    old = new_key(tmp_path / "etc", "old")
    strict = new_key(tmp_path / "etc", "strict.one")
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        proc, port = run_server(tmp_path, 0.0, out, POLICY)
        v4, v6 = ("127.0.0.1", port), ("::1", port)
        try:
            send(packet(command="b"), v4, "127.0.0.1")
            send(packet(command="a"), v4, "127.0.0.2")
            send(packet(command="a", strict=False, src="203.0.113.9", dst="::1"), v6, "::1")
            send(packet(key=old), v4, "127.0.0.1")
            send(packet(key=strict, strict=False, src="203.0.113.9"), v4, "127.0.0.1")
            send(packet(command="a", strict=False, src="198.51.100.3"), v4, "127.0.0.1")  # runs
            time.sleep(0.5)
        finally:
            proc.terminate()
            proc.wait(10)
    text = log.read_text()
    assert 'Per-key policy for 3 key(s): keys.ruroco, keys.old, keys."strict.one"' in text
    rejected = [line for line in text.splitlines() if "ERROR ] Rejected datagram" in line]
    assert len(rejected) == 5, text
    for line, needle in zip(
        rejected,
        [
            f'(file "ruroco.key"): command {command_hash("b")} is not in keys.ruroco.commands',
            '(file "ruroco.key"): source 127.0.0.2 is outside keys.ruroco.sources',
            '(file "ruroco.key"): claimed IP 203.0.113.9 is outside keys.ruroco.sources',
            '(file "old.key"): key expired at 2000-01-01T00:00:00+00:00 (keys.old.not_after)',
            '(file "strict.one.key"): claimed IP 203.0.113.9 is not the source and '
            'keys."strict.one".allow_permissive is false',
        ],
        strict=True,
    ):
        assert needle in line, line
    assert "Valid data" in text and "with 198.51.100.3" in text
    ips, summary = fail2ban(log)
    assert ips == ["127.0.0.1", "127.0.0.2", "::1", "127.0.0.1", "127.0.0.1"]
    total = len(text.splitlines())
    assert f"Lines: {total} lines, 0 ignored, 5 matched, {total - 5} missed" in summary
