"""Helpers for the client tests: the real ``ruroco-client`` process and UDP receivers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from ruroco.ipaddr import parse_ip
from ruroco.protocol import ClientData, parse_key, split_packet

# The fixture key of the original test suite: id ff×8, key deadbeef×8.
FIXTURE_KEY = "///////////erb7v3q2+796tvu/erb7v3q2+796tvu/erb7v3q2+7w=="
CLIENT = str(Path(sys.executable).with_name("ruroco-client"))


def client_env(conf_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RUROCO_LOG"}
    env["RUROCO_CONF_DIR"] = str(conf_dir)
    env.update(extra)
    return env


def run_client(
    *args: str, conf_dir: Path, timeout: float = 20.0, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``ruroco-client`` with ``args`` (bounded in time)."""
    return subprocess.run(
        [CLIENT, *args],
        env=env if env is not None else client_env(conf_dir),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def read_counter_file(conf_dir: Path) -> int:
    data = (conf_dir / "counter").read_bytes()
    assert len(data) == 16
    return int.from_bytes(data, "big")


class Receiver:
    """A UDP socket on a loopback address that collects and decrypts client datagrams."""

    def __init__(self, host: str, key_text: str = FIXTURE_KEY) -> None:
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.host = host
        self.port = self.sock.getsockname()[1]
        self.key = parse_key(key_text)

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def receive(self, timeout: float = 5.0) -> tuple[bytes, tuple[str, int]]:
        self.sock.settimeout(timeout)
        data, peer = self.sock.recvfrom(4096)
        return data, peer[:2]

    def receive_data(self, timeout: float = 5.0) -> ClientData:
        packet, _peer = self.receive(timeout)
        assert len(packet) == 94
        key_id, blob = split_packet(packet)
        assert key_id == self.key.key_id
        return ClientData.decode(self.key.decrypt(blob))

    def nothing_pending(self, wait: float = 0.2) -> bool:
        self.sock.settimeout(wait)
        try:
            self.sock.recvfrom(4096)
        except TimeoutError:
            return True
        return False

    def close(self) -> None:
        self.sock.close()


def ip16(text: str) -> bytes:
    return parse_ip(text)
