"""Flood sender: 94-byte datagrams from many loopback source addresses, as fast as allowed.

Runs as its own process (``python -m bench.flood ...``) so it gets a core to itself and its
rate is "what one sender process reaches". One UDP socket is bound per source address in
127.0.0.0/8 (Linux routes all of it to ``lo``); sockets are used round-robin. Payloads come
from a pool of random datagrams drawn up front, so the hot loop is only ``sendto``. In
``known`` mode every datagram starts with the real key id followed by random bytes, i.e.
garbage ciphertext for a known key. Prints one JSON line with the counts.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time

import click

from ruroco.protocol import KEY_ID_SIZE, MSG_SIZE, key_id_of

POOL = 8192
BATCH = 512


def source_addresses(count: int, second_octet: int) -> list[str]:
    """``count`` distinct addresses 127.<second_octet>.x.y (y in 1..250)."""
    if not 1 <= count <= 250 * 256:
        raise ValueError("count must be within 1..64000")
    return [f"127.{second_octet}.{i // 250}.{i % 250 + 1}" for i in range(count)]


def payload_pool(key_id: bytes | None, size: int = POOL) -> list[bytes]:
    if key_id is None:
        return [os.urandom(MSG_SIZE) for _ in range(size)]
    return [key_id + os.urandom(MSG_SIZE - KEY_ID_SIZE) for _ in range(size)]


def flood(
    target: tuple[str, int],
    sources: list[str],
    pool: list[bytes],
    duration: float,
    rate: float = 0.0,
) -> dict[str, float]:
    """Send for ``duration`` s (``rate`` datagrams/s, 0 = unlimited); returns the counts."""
    socks = []
    try:
        for addr in sources:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            socks.append(s)
            s.bind((addr, 0))
        # Precomputed (sendto, payload) pairs: the hot loop does nothing but call sendto.
        n_jobs = max(len(socks), len(pool))
        jobs = [(socks[k % len(socks)].sendto, pool[k % len(pool)]) for k in range(n_jobs)]
        batches = [jobs[k : k + BATCH] for k in range(0, n_jobs, BATCH)]
        sent = errors = 0
        start = time.perf_counter()
        end = start + duration
        now = start
        b = 0
        while now < end:
            for send, data in batches[b]:
                try:
                    send(data, target)
                    sent += 1
                except OSError:
                    errors += 1
            b = (b + 1) % len(batches)
            now = time.perf_counter()
            if rate > 0:
                ahead = (sent + errors) / rate - (now - start)
                if ahead > 0:
                    time.sleep(min(ahead, max(0.0, end - now)))
                    now = time.perf_counter()
        elapsed = now - start
    finally:
        for s in socks:
            s.close()
    return {
        "sent": sent,
        "errors": errors,
        "seconds": elapsed,
        "rate": sent / elapsed if elapsed > 0 else 0.0,
        "sources": len(sources),
        "engine": "python",
    }


@click.command()
@click.option("--target", required=True, help="host:port of the server")
@click.option("--mode", type=click.Choice(["random", "known"]), default="random")
@click.option("--key-file", type=click.Path(exists=True, dir_okay=False), help="for --mode known")
@click.option("--sources", type=click.IntRange(1, 64000), default=1000)
@click.option("--second-octet", type=click.IntRange(1, 254), default=2)
@click.option("--duration", type=click.FloatRange(0.1, 120), default=20.0)
@click.option("--rate", type=click.FloatRange(0), default=0.0, help="datagrams/s, 0 = max")
def main(target, mode, key_file, sources, second_octet, duration, rate) -> None:
    host, _, port = target.rpartition(":")
    key_id = None
    if mode == "known":
        if not key_file:
            raise click.UsageError("--mode known needs --key-file")
        with open(key_file, encoding="utf-8") as fh:
            key_id = key_id_of(fh.read())
    result = flood(
        (host, int(port)),
        source_addresses(sources, second_octet),
        payload_pool(key_id),
        duration,
        rate,
    )
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
