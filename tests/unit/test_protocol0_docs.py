"""The protocol-0 worked example of docs/protocol.md, recomputed with the package.

Like tests/unit/test_docs_protocol.py for protocol 1: a changed byte in the code or a broken
value on the page fails here.
"""

from __future__ import annotations

from pathlib import Path

from ruroco import protocol
from ruroco.ipaddr import parse_ip
from ruroco.protocol import PROTOCOL_0

DOC = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text(encoding="utf-8")
SECTION = DOC[DOC.index("\n## Protocol 0\n") :]
FIXTURE_KEY = "///////////erb7v3q2+796tvu/erb7v3q2+796tvu/erb7v3q2+7w=="
IV = bytes(range(0x10, 0x1C))


def shown(value: bytes) -> bool:
    return f"`{value.hex()}`" in SECTION


def example() -> tuple[protocol.Key, protocol.ClientData]:
    key = protocol.parse_key(FIXTURE_KEY)
    data = protocol.ClientData(
        protocol.command_hash("open_ssh"),
        1_700_000_000_000_000_000,
        False,
        parse_ip("198.51.100.7"),
        parse_ip("203.0.113.10"),
    )
    return key, data


def test_the_section_states_the_sizes_and_offsets_the_code_uses() -> None:
    assert protocol.V0_MSG_SIZE == 93 and "exactly **93 bytes**" in SECTION
    assert protocol.V0_PLAINTEXT_SIZE == 57 and "57 bytes, command hash at offset 0" in SECTION
    for row in ("| 0 | 8 | key id", "| 8 | 12 | IV", "| 20 | 16 | authentication tag"):
        assert row in SECTION, row
    assert "| 36 | 57 | ciphertext" in SECTION


def test_plaintext_fields() -> None:
    _, data = example()
    plaintext = data.encode(PROTOCOL_0)
    assert plaintext == data.encode()[1:]  # "without its leading `01`"
    for start, end in ((0, 8), (8, 24), (24, 25), (25, 41), (41, 57)):
        assert shown(plaintext[start:end]), (start, end)


def test_datagram_fields_and_decryption() -> None:
    key, data = example()
    packet = protocol.build_packet(key, data, IV, PROTOCOL_0)
    assert len(packet) == protocol.V0_MSG_SIZE
    for start, end in ((0, 8), (8, 20), (20, 36), (36, 93)):
        assert shown(packet[start:end]), (start, end)
    key_id, blob = protocol.split_packet(packet)
    assert key_id == key.key_id
    assert protocol.ClientData.decode(key.decrypt(blob, PROTOCOL_0), PROTOCOL_0) == data


def test_the_files_page_lists_the_setting_with_its_default() -> None:
    files = (Path(__file__).resolve().parents[2] / "docs" / "files.md").read_text("utf-8")
    assert "| `accept_protocol_0` | boolean | `false` |" in files
