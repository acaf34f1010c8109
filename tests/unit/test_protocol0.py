"""Protocol 0, the released ruroco 0.14.2's format (docs/protocol.md, Protocol 0): known
answers, round trips, and every packet checked against a second, independent AES-GCM.

The independent path (``reference_gcm``) is GCM driven by hand from NIST SP 800-38D: the
counter mode and GHASH over GF(2^128) written out here in Python, with only the raw AES
block function taken from ``cryptography``'s ECB mode. It shares no GCM code with the
``AESGCM`` class that ``ruroco.protocol`` uses, and is itself pinned to the GCM
specification's test cases 13 and 14 (AES-256). The real 0.14.2 binaries check the same
bytes from the outside (tests/e2e/test_interop_v0142.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given
from hypothesis import strategies as st

from ruroco import protocol
from ruroco.ipaddr import parse_ip
from ruroco.limits import U64_MAX, U128_MAX
from ruroco.protocol import (
    MSG_SIZE,
    PLAINTEXT_SIZE,
    PROTOCOL_0,
    V0_CIPHERTEXT_SIZE,
    V0_MSG_SIZE,
    V0_PLAINTEXT_SIZE,
    ClientData,
    Key,
    ProtocolError,
    build_packet,
    command_hash,
    parse_key,
    split_packet,
)

FIXTURE_KEY = "///////////erb7v3q2+796tvu/erb7v3q2+796tvu/erb7v3q2+7w=="
SECRET = bytes.fromhex("deadbeef" * 8)
IV = bytes(range(0x10, 0x1C))


def _gf_mul(x: int, y: int) -> int:
    """Multiplication in GF(2^128) with GCM's bit order (SP 800-38D, algorithm 1)."""
    r = 0xE1 << 120
    z = 0
    for i in range(127, -1, -1):
        if (x >> i) & 1:
            z ^= y
        y = (y >> 1) ^ r if y & 1 else y >> 1
    return z


def reference_gcm(key: bytes, iv: bytes, plaintext: bytes, aad: bytes = b"") -> tuple[bytes, bytes]:
    """``(ciphertext, tag)`` of AES-GCM with a 96-bit IV, built from the AES block alone."""
    assert len(iv) == 12
    aes = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    h = int.from_bytes(aes.update(bytes(16)), "big")
    j0 = iv + b"\x00\x00\x00\x01"
    out = bytearray()
    for n in range(0, len(plaintext), 16):
        block = iv + ((2 + n // 16) % 2**32).to_bytes(4, "big")  # inc32(J0), inc32 again, ...
        stream = aes.update(block)
        out += bytes(a ^ b for a, b in zip(plaintext[n : n + 16], stream, strict=False))
    ciphertext = bytes(out)

    def pad(data: bytes) -> bytes:
        return data + bytes(-len(data) % 16)

    lengths = (8 * len(aad)).to_bytes(8, "big") + (8 * len(ciphertext)).to_bytes(8, "big")
    ghash_input = pad(aad) + pad(ciphertext) + lengths
    s = 0
    for n in range(0, len(ghash_input), 16):
        s = _gf_mul(s ^ int.from_bytes(ghash_input[n : n + 16], "big"), h)
    tag = (int.from_bytes(aes.update(j0), "big") ^ s).to_bytes(16, "big")
    return ciphertext, tag


def reference_packet(key_id: bytes, secret: bytes, iv: bytes, plaintext: bytes) -> bytes:
    """The 0.14.2 datagram as its ``handler_ops.rs`` lays it out: id ‖ IV ‖ tag ‖ ciphertext."""
    ciphertext, tag = reference_gcm(secret, iv, plaintext)
    return key_id + iv + tag + ciphertext


def example() -> ClientData:
    return ClientData(
        command_hash("open_ssh"),
        1_700_000_000_000_000_000,
        False,
        parse_ip("198.51.100.7"),
        parse_ip("203.0.113.10"),
    )


# -- the independent path is itself right -----------------------------------------------------


def test_reference_gcm_matches_the_gcm_specification_test_cases_13_and_14() -> None:
    """AES-256, zero key and IV: the empty message (case 13) and one zero block (case 14)."""
    assert reference_gcm(bytes(32), bytes(12), b"") == (
        b"",
        bytes.fromhex("530f8afbc74536b9a963b4f1c4cb738b"),
    )
    assert reference_gcm(bytes(32), bytes(12), bytes(16)) == (
        bytes.fromhex("cea7403d4d606b6e074ec5d3baf39d18"),
        bytes.fromhex("d0d1c8a799996bf0265b98b5d48ab919"),
    )


# -- known answers ----------------------------------------------------------------------------


def test_plaintext_is_the_version_1_plaintext_without_its_version_byte() -> None:
    data = example()
    v0, v1 = data.encode(PROTOCOL_0), data.encode()
    assert len(v0) == V0_PLAINTEXT_SIZE == 57 and len(v1) == PLAINTEXT_SIZE == 58
    assert v1 == b"\x01" + v0
    assert v0 == bytes.fromhex(
        "5aea07630f1c6490"  # command hash of open_ssh
        "000000000000000017979cfe362a0000"  # counter
        "00"  # permissive
        "00000000000000000000ffffc6336407"  # 198.51.100.7
        "00000000000000000000ffffcb00710a"  # 203.0.113.10
    )


KNOWN_ANSWERS = [
    (  # the worked example of docs/protocol.md, Protocol 0
        example(),
        IV,
        "ffffffffffffffff"
        "101112131415161718191a1b"
        "58cfc587e7358331d391c277293a48f1"
        "5e8b6eb48b5e0739869bdb2368c9ba1593afbf3853e3e33a8da40fd48e3f9e4da9984aca117786d7d3"
        "93dd35688c360b79d5ebf71eca4b3f7a",
    ),
    (  # strict, no claimed source, IPv6 destination, counter 1, an all-zero IV
        ClientData(command_hash("default"), 1, True, None, parse_ip("2001:db8::1")),
        bytes(12),
        "ffffffffffffffff"
        "000000000000000000000000"
        "4d6252d80492fd0e03cebda6c8bfdabd"
        "612baba79b851760898ad913b43677d97020a99741abefd55dbb4693833d42dad09d6425b32aa7a9cf"
        "2a28dbcfbf746d3d8c516f08a14dd397",
    ),
]


@pytest.mark.parametrize(("data", "iv", "expected"), KNOWN_ANSWERS)
def test_known_answer_packets(data: ClientData, iv: bytes, expected: str) -> None:
    key = parse_key(FIXTURE_KEY)
    packet = build_packet(key, data, iv, PROTOCOL_0)
    assert len(packet) == V0_MSG_SIZE == 93
    assert packet.hex() == expected
    assert packet == reference_packet(key.key_id, SECRET, iv, data.encode(PROTOCOL_0))
    key_id, blob = split_packet(packet)
    assert key_id == key.key_id and len(blob) == V0_CIPHERTEXT_SIZE
    assert ClientData.decode(key.decrypt(blob, PROTOCOL_0), PROTOCOL_0) == data


def test_the_two_protocols_differ_in_cipher_and_version_byte_only() -> None:
    """Same key, IV and request: the protocol-1 packet is not the protocol-0 one plus a byte
    (another cipher), and neither opens as the other."""
    key = parse_key(FIXTURE_KEY)
    v0 = build_packet(key, example(), IV, PROTOCOL_0)
    v1 = build_packet(key, example(), IV)
    assert len(v1) == MSG_SIZE and v1[:20] == v0[:20] and v1[20:36] != v0[20:36]
    with pytest.raises(ProtocolError, match="Ciphertext must be 86 bytes, got 85"):
        key.decrypt(split_packet(v0)[1])
    with pytest.raises(ProtocolError, match="Ciphertext must be 85 bytes, got 86"):
        key.decrypt(split_packet(v1)[1], PROTOCOL_0)
    # a 57-byte protocol-1 plaintext under GCM-SIV would be another size: no confusion
    with pytest.raises(ProtocolError, match="Plaintext must be 58 bytes, got 57"):
        key.encrypt(example().encode(PROTOCOL_0), IV)


# -- properties -------------------------------------------------------------------------------

ips = st.one_of(
    st.binary(min_size=4, max_size=4).map(lambda b: b"\x00" * 10 + b"\xff\xff" + b),
    st.binary(min_size=16, max_size=16),
)
datas = st.builds(
    ClientData,
    st.integers(0, U64_MAX),
    st.integers(0, U128_MAX),
    st.booleans(),
    st.one_of(st.none(), ips),
    ips,
)


@given(datas)
def test_plaintext_round_trip(data: ClientData) -> None:
    plaintext = data.encode(PROTOCOL_0)
    assert len(plaintext) == V0_PLAINTEXT_SIZE
    assert ClientData.decode(plaintext, PROTOCOL_0) == data


@given(
    st.binary(min_size=8, max_size=8),
    st.binary(min_size=32, max_size=32),
    st.binary(min_size=12, max_size=12),
    datas,
)
def test_packet_round_trip_equals_the_hand_driven_gcm(
    key_id: bytes, secret: bytes, iv: bytes, data: ClientData
) -> None:
    key = Key(key_id, secret)
    packet = build_packet(key, data, iv, PROTOCOL_0)
    assert packet == reference_packet(key_id, secret, iv, data.encode(PROTOCOL_0))
    assert ClientData.decode(key.decrypt(split_packet(packet)[1], PROTOCOL_0), PROTOCOL_0) == data


@given(st.binary(min_size=V0_PLAINTEXT_SIZE, max_size=V0_PLAINTEXT_SIZE))
def test_every_57_byte_plaintext_decodes(data: bytes) -> None:
    """No version byte, so nothing to refuse: every field is taken as it stands."""
    decoded = ClientData.decode(data, PROTOCOL_0)
    again = decoded.encode(PROTOCOL_0)
    assert again[:24] == data[:24] and again[25:] == data[25:]
    assert decoded.strict == (data[24] != 0)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_only_raise_protocol_errors(data: bytes) -> None:
    key = Key(b"\x00" * 8, b"\x00" * 32)
    try:
        _, blob = split_packet(data)
        ClientData.decode(key.decrypt(blob, PROTOCOL_0), PROTOCOL_0)
    except ProtocolError:
        pass


@given(st.integers(0, V0_MSG_SIZE - 1), st.integers(1, 255))
def test_any_changed_byte_fails_the_tag(index: int, flip: int) -> None:
    """The key id is not authenticated but picks the key; every other byte is."""
    key = parse_key(FIXTURE_KEY)
    packet = bytearray(build_packet(key, example(), IV, PROTOCOL_0))
    packet[index] ^= flip
    key_id, blob = split_packet(bytes(packet))
    if index < 8:
        assert key_id != key.key_id
        return
    with pytest.raises(ProtocolError, match="authentication tag mismatch"):
        key.decrypt(blob, PROTOCOL_0)


def test_fresh_iv_per_packet() -> None:
    key = parse_key(FIXTURE_KEY)
    first, second = (build_packet(key, example(), protocol=PROTOCOL_0) for _ in range(2))
    assert first[8:20] != second[8:20] and first[20:] != second[20:]


@pytest.mark.parametrize("bad", [2, -1, True, False, "0", None, 1.0])
def test_only_0_and_1_are_protocols(bad: object) -> None:
    key = parse_key(FIXTURE_KEY)
    with pytest.raises(ProtocolError, match="Unsupported protocol"):
        build_packet(key, example(), IV, bad)  # type: ignore[arg-type]
    with pytest.raises(ProtocolError, match="Unsupported protocol"):
        ClientData.decode(bytes(57), bad)  # type: ignore[arg-type]


def test_a_wiped_key_keeps_no_secret_of_ours_and_both_ciphers_were_made_before() -> None:
    """Both ciphers exist from the start, so a wipe can never leave a protocol-0 cipher to be
    made later from zeroed bytes."""
    key = parse_key(FIXTURE_KEY)
    key.wipe()
    assert key._secret == bytearray(32)
    packet = build_packet(key, example(), IV, PROTOCOL_0)
    assert packet == reference_packet(key.key_id, SECRET, IV, example().encode(PROTOCOL_0))


def test_the_protocol_0_cipher_is_the_public_aesgcm_class() -> None:
    assert protocol.AESGCM is AESGCM


_FALLBACK = """
import json, sys
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
sys.modules["cryptography.hazmat.bindings._rust"] = None
from ruroco import protocol
key = protocol.parse_key({key!r})
data = protocol.ClientData(protocol.command_hash("open_ssh"), 7, True, None, bytes(16))
packet = protocol.build_packet(key, data, bytes(12), 0)
print(json.dumps([protocol.AESGCM is AESGCM, packet.hex()]))
"""


def test_public_fallback_builds_the_same_protocol_0_packet() -> None:
    """Without the private binding the public ``AESGCM`` is used, byte for byte the same."""
    repo = str(Path(protocol.__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run(
        [sys.executable, "-c", _FALLBACK.format(key=FIXTURE_KEY)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    same, packet = json.loads(result.stdout)
    data = ClientData(command_hash("open_ssh"), 7, True, None, bytes(16))
    assert same
    assert bytes.fromhex(packet) == reference_packet(
        b"\xff" * 8, SECRET, bytes(12), data.encode(PROTOCOL_0)
    )
