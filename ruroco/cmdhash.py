"""The command hash: BLAKE2b with an 8-byte digest, as a big-endian u64 (docs/protocol.md,
Command hash).

Here, without cryptography, for the commander (it hashes its configured command names);
``ruroco.protocol.command_hash`` is the same function for client and server, kept there so
the client's start loads no extra module. A test pins that both agree.
"""

from __future__ import annotations

from hashlib import blake2b


def command_hash(name: str) -> int:
    """BLAKE2b with an 8-byte digest (not a truncated 64-byte one), as a big-endian u64."""
    return int.from_bytes(blake2b(name.encode("utf-8"), digest_size=8).digest(), "big")
