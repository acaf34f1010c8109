"""The worked example of docs/protocol.md, recomputed with the package.

If the protocol code changes a byte, this fails, and so does a doc edit that breaks a value.
"""

from __future__ import annotations

from pathlib import Path

from ruroco import ipc, protocol
from ruroco.ipaddr import ip_text, parse_ip
from ruroco.server.blocklist import encode

DOC = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text(encoding="utf-8")
FIXTURE_KEY = "///////////erb7v3q2+796tvu/erb7v3q2+796tvu/erb7v3q2+7w=="
COUNTER = 1_700_000_000_000_000_000
IV = bytes(range(0x10, 0x1C))


def shown(value: bytes) -> bool:
    return f"`{value.hex()}`" in DOC


def example() -> tuple[protocol.Key, protocol.ClientData]:
    key = protocol.parse_key(FIXTURE_KEY)
    data = protocol.ClientData(
        protocol.command_hash("open_ssh"),
        COUNTER,
        False,
        parse_ip("198.51.100.7"),
        parse_ip("203.0.113.10"),
    )
    return key, data


def test_key_and_command_hashes() -> None:
    assert FIXTURE_KEY in DOC
    key, _ = example()
    assert shown(key.key_id)
    for name in ("default", "open_ssh", ""):
        assert shown(protocol.command_hash(name).to_bytes(8, "big"))


def test_plaintext_fields() -> None:
    _, data = example()
    plaintext = data.encode()
    assert len(plaintext) == protocol.PLAINTEXT_SIZE
    for start, end in ((0, 1), (1, 9), (9, 25), (25, 26), (26, 42), (42, 58)):
        assert shown(plaintext[start:end]), (start, end)


def test_datagram_fields_and_decryption() -> None:
    key, data = example()
    packet = protocol.build_packet(key, data, IV)
    assert len(packet) == protocol.MSG_SIZE
    for start, end in ((0, 8), (8, 20), (20, 36), (36, 94)):
        assert shown(packet[start:end]), (start, end)
    key_id, blob = protocol.split_packet(packet)
    assert key_id == key.key_id
    assert protocol.ClientData.decode(key.decrypt(blob)) == data


def test_commander_message_and_blocklist() -> None:
    key, data = example()
    assert data.src_ip is not None
    message = ipc.encode_commander_data(data.cmd_hash, data.src_ip)
    assert len(message) == ipc.COMMANDER_DATA_SIZE
    assert shown(message[:8]) and shown(message[8:])
    assert f"RUROCO_IP={ip_text(data.src_ip)}" in DOC
    floor_file = encode({key.key_id: COUNTER})
    assert len(floor_file) == 37 and shown(floor_file)
