"""The shipped fail2ban filter matches the real server's lines for every rejection reason."""

import os
import pty
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from server_helpers import FIXTURE_ID, fixture_key, packet, write_setup

from ruroco.ipaddr import parse_ip
from ruroco.protocol import ClientData, command_hash

ROOT = Path(__file__).resolve().parents[3]
# The one copy of the filter is in the collection; contrib/ links to it.
ROLE_FILES = ROOT / "ansible_collections/ruroco/ruroco/roles/ruroco_server/files"
FILTER = ROLE_FILES / "fail2ban" / "filter.d" / "ruroco.conf"
CONTRIB_FILTER = ROOT / "contrib" / "fail2ban" / "filter.d" / "ruroco.conf"
JAIL = ROOT / "contrib" / "fail2ban" / "jail.d" / "ruroco.conf"
F2B = shutil.which("fail2ban-regex") or "/usr/bin/fail2ban-regex"

LAUNCHER = (
    "import sys\n"
    "from ruroco.server.server import serve\n"
    "serve(sys.argv[1], address=sys.argv[2], throttle_interval=float(sys.argv[3]))\n"
)


def free_dual_stack_port() -> int:
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
        s.bind(("::", 0))
        return s.getsockname()[1]


def run_server(tmp_path, interval, stderr, extra=""):
    config = write_setup(tmp_path, ips=("127.0.0.1", "::1"), extra=extra)
    port = free_dual_stack_port()
    env = {k: v for k, v in os.environ.items() if k not in ("RUROCO_LOG", "LISTEN_PID")}
    proc = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, str(config), f"[::]:{port}", str(interval)],
        stdout=stderr,
        stderr=stderr,
        env=env,
    )
    deadline = time.monotonic() + 15
    while not (tmp_path / "state" / "blocklist.msgpck").exists():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    time.sleep(0.3)
    return proc, port


def fail2ban(log: Path) -> tuple[list[str], str]:
    ips = subprocess.run(
        [F2B, "-o", "ip", str(log), str(FILTER)], capture_output=True, text=True, timeout=60
    )
    assert ips.returncode == 0, ips.stderr
    summary = subprocess.run(
        [F2B, str(log), str(FILTER)], capture_output=True, text=True, timeout=60
    )
    assert summary.returncode == 0, summary.stderr
    return ips.stdout.split(), summary.stdout


def version_two_packet() -> bytes:
    plain = bytearray(
        ClientData(command_hash("x"), time.time_ns(), True, None, parse_ip("127.0.0.1")).encode()
    )
    plain[0] = 2
    return fixture_key().encrypt(bytes(plain))


def test_filter_matches_every_rejection_and_nothing_else(tmp_path):
    log = tmp_path / "server.log"
    extra = "max_requests_per_second = 8\nmax_requests_per_second_global = 1\n"
    with open(log, "wb") as out:
        proc, port = run_server(tmp_path, 0.0, out, extra)
        v4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        v6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        to4, to6 = ("127.0.0.1", port), ("::1", port)
        try:
            valid = packet()
            sends = [
                (v4, b"short"),
                (v4, packet() + b"\0"),  # oversize
                (v4, bytes(94)),  # unknown key
                (v4, FIXTURE_ID + bytes(86)),  # bad tag
                (v4, version_two_packet()),
                (v4, packet(counter=1)),  # replay
                (v4, packet(counter=time.time_ns() + 10**13)),  # future
                (v4, packet(dst="10.0.0.1")),  # destination
                (v4, packet(src="10.0.0.1")),  # strict source
                (v4, valid),  # accepted (forwarding fails: no commander)
                (v4, packet()),  # global cap of 1
                (v4, packet()),  # 9th packet with a known id from this source: rate limit
                (v6, bytes(94)),
                (v6, b""),
            ]
            for sock, data in sends:
                sock.sendto(data, to6 if sock is v6 else to4)
                time.sleep(0.01)
            time.sleep(1.1)  # a new global window
            shutil.rmtree(tmp_path / "state")
            v6.sendto(packet(dst="::1"), to6)  # valid, but the blocklist cannot be saved
            time.sleep(0.5)
        finally:
            v4.close()
            v6.close()
            proc.terminate()
            proc.wait(10)
    text = log.read_text()
    rejected = [line for line in text.splitlines() if "ERROR ] Rejected datagram" in line]
    assert len(rejected) == 14, text
    for reason in (
        "Invalid read count 5,",
        "Invalid read count 95,",
        "Could not find key",
        "Could not decrypt",
        "Unsupported protocol version 2",
        "is on blocklist",
        "Future counter",
        "Invalid host IP",
        "Invalid source IP",
        "Global rate limit exceeded",
        "Rate limit exceeded for 127.0.0.1",
        "Could not update block list",
    ):
        assert reason in text, reason
    assert "Could not connect to socket" in text  # an error line that is not a rejection
    assert "INFO ] Valid data" in text

    ips, summary = fail2ban(log)
    assert ips == ["127.0.0.1"] * 11 + ["::1"] * 3
    total = len(text.splitlines())
    assert f"Lines: {total} lines, 0 ignored, 14 matched, {total - 14} missed" in summary

    # the same lines as journald hands them to fail2ban's systemd backend
    journal = tmp_path / "journal.log"
    journal.write_text("".join(f"host ruroco-server[42]: {line}\n" for line in text.splitlines()))
    assert fail2ban(journal)[0] == ips


def test_filter_matches_throttled_lines(tmp_path):
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        proc, port = run_server(tmp_path, 5.0, out)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            for _ in range(3):
                client.sendto(bytes(94), ("127.0.0.1", port))
            time.sleep(5.2)
            client.sendto(b"x", ("127.0.0.1", port))
            time.sleep(0.3)
        proc.terminate()
        proc.wait(10)
    errors = [line for line in log.read_text().splitlines() if "ERROR" in line]
    assert len(errors) == 2
    assert errors[1].endswith(
        ": Invalid read count 1, expected 94 (2 more suppressed in the last 5s)"
    )
    assert fail2ban(log)[0] == ["127.0.0.1", "127.0.0.1"]


def test_filter_matches_coloured_lines_on_a_tty(tmp_path):
    log = tmp_path / "tty.log"
    master, slave = pty.openpty()
    try:
        proc, port = run_server(tmp_path, 0.0, slave)
        os.close(slave)
        slave = -1
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.sendto(b"x", ("127.0.0.1", port))
        time.sleep(0.5)
        proc.terminate()
        proc.wait(10)
        chunks = []
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    text = b"".join(chunks).decode().replace("\r\n", "\n")
    assert "\x1b[31mERROR\x1b[0m ] Rejected datagram from 127.0.0.1" in text
    log.write_text(text)
    assert fail2ban(log)[0] == ["127.0.0.1"]


def test_jail_is_enabled_for_udp_port_80():
    text = JAIL.read_text()
    settings = dict(re.findall(r"^(\w+)\s*=\s*(\S+)\s*$", text, flags=re.MULTILINE))
    assert settings["enabled"] == "true"
    assert settings["port"] == "80"
    assert settings["protocol"] == "udp"
    assert settings["filter"] == "ruroco"
    assert settings["backend"] == "systemd"
    assert "_SYSTEMD_UNIT=ruroco.service" in FILTER.read_text()


def test_contrib_filter_is_a_relative_link_to_the_collection_copy():
    assert CONTRIB_FILTER.is_symlink()
    assert not os.path.isabs(os.readlink(CONTRIB_FILTER))
    assert CONTRIB_FILTER.resolve() == FILTER.resolve()
    assert not FILTER.is_symlink()
