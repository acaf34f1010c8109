#!/usr/bin/env python3
"""Capture one knock on the wire and send its exact bytes again (the replay test).

capture DST PORT OUT READY TIMEOUT: wait (bounded) for the first UDP datagram to DST:PORT on
any interface of this machine (the controller; it sees its own outgoing packets), write its
payload as hex to OUT. READY is created once the capture socket is open.
send DST PORT HEXFILE: send the captured payload to DST:PORT once.
Only ever talks to the test hosts the run created; needs root (AF_PACKET).
"""

import socket
import struct
import sys
import time
from pathlib import Path

ETH_P_ALL = 0x0003  # outgoing packets reach only ETH_P_ALL taps, not per-protocol ones
ETH_P_IP = 0x0800


def capture(dst: str, port: int, out: Path, ready: Path, timeout: float) -> int:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
    sock.settimeout(0.2)
    ready.touch()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            packet, (_ifname, protocol, *_rest) = sock.recvfrom(65535)
        except TimeoutError:
            continue
        if protocol != ETH_P_IP:
            continue
        header = (packet[0] & 0x0F) * 4
        if packet[9] != socket.IPPROTO_UDP or socket.inet_ntoa(packet[16:20]) != dst:
            continue
        if struct.unpack("!H", packet[header + 2 : header + 4])[0] != port:
            continue
        out.write_text(packet[header + 8 :].hex())
        return 0
    print(f"no UDP datagram to {dst}:{port} within {timeout}s", file=sys.stderr)
    return 1


def send(dst: str, port: int, hexfile: Path) -> int:
    payload = bytes.fromhex(hexfile.read_text().strip())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(payload, (dst, port))
    print(f"sent {len(payload)} bytes to {dst}:{port}")
    return 0


def main(argv: list[str]) -> int:
    if len(argv) == 6 and argv[0] == "capture":
        return capture(argv[1], int(argv[2]), Path(argv[3]), Path(argv[4]), float(argv[5]))
    if len(argv) == 4 and argv[0] == "send":
        return send(argv[1], int(argv[2]), Path(argv[3]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
