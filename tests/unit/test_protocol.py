"""Protocol vectors (docs/protocol.md) and properties of the wire codec."""

from __future__ import annotations

import binascii
import contextlib
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV
from hypothesis import given
from hypothesis import strategies as st

from ruroco import cmdhash, errors, ipc, protocol
from ruroco.ipaddr import parse_ip
from ruroco.protocol import (
    MSG_SIZE,
    PLAINTEXT_SIZE,
    U64_MAX,
    U128_MAX,
    ClientData,
    Key,
    ProtocolError,
    build_packet,
    command_hash,
    decode_commander_data,
    encode_commander_data,
    generate_key,
    hex_list,
    key_id_of,
    parse_key,
    split_packet,
)

FIXTURE_KEY = "///////////erb7v3q2+796tvu/erb7v3q2+796tvu/erb7v3q2+7w=="
COUNTER = 1725821510 * 10**9


def test_rfc8452_aes256_vector() -> None:
    aead = AESGCMSIV(bytes.fromhex("01" + "00" * 31))
    out = aead.encrypt(bytes.fromhex("03" + "00" * 11), bytes.fromhex("0100000000000000"), None)
    assert out.hex() == "c2ef328e5c71c83b843122130f7364b761e0b97427e3df28"


def test_fixture_key_parses_to_known_id() -> None:
    key = parse_key(FIXTURE_KEY)
    assert key.key_id == b"\xff" * 8
    assert "redacted" in repr(key) and "dead" not in repr(key).lower()


@pytest.mark.parametrize(
    ("name", "digest", "value"),
    [
        ("default", "fe98b07b1ba6b3a2", 18345607124885091234),
        ("open_port", "9b93083959d8550a", 11210312939868804362),
        ("close_port", "2694129e84af1e38", 2779867342034640440),
        ("", "e4a6a0577479b2b4", 16476032584258269876),
        ("test_cycle_cmd", "be5530118e2aa7bc", 13714921092184451004),
    ],
)
def test_command_hash_vectors(name: str, digest: str, value: int) -> None:
    assert command_hash(name) == value
    assert command_hash(name).to_bytes(8, "big").hex() == digest


@given(st.text(max_size=300))
def test_command_hash_of_the_client_equals_the_commanders(name: str) -> None:
    """protocol keeps its own fast copy (no extra module for the client): it must agree with
    ``ruroco.cmdhash`` (what the commander uses) and with plain hashlib."""
    reference = int.from_bytes(hashlib.blake2b(name.encode("utf-8"), digest_size=8).digest(), "big")
    assert command_hash(name) == cmdhash.command_hash(name) == reference


def test_private_fast_imports_are_the_public_objects() -> None:
    """The two private imports (measured in the module's docstring) are the very objects the
    public API exposes, so the fallbacks below cannot behave differently."""
    assert protocol.AESGCMSIV is AESGCMSIV
    assert protocol.blake2b is hashlib.blake2b


_FALLBACK = """
import hashlib, json, sys
from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV  # loads _rust for itself
sys.modules[{blocked!r}] = None  # from here on, importing it raises ImportError
from ruroco import protocol
key = protocol.parse_key({key!r})
iv = bytes(12)
data = protocol.ClientData(protocol.command_hash("open_port"), 7, True, None, bytes(16))
packet = protocol.build_packet(key, data, iv)
print(json.dumps([
    protocol.AESGCMSIV is AESGCMSIV,
    protocol.blake2b is hashlib.blake2b,
    packet.hex(),
    protocol.ClientData.decode(key.decrypt(protocol.split_packet(packet)[1])) == data,
]))
"""


@pytest.mark.parametrize("blocked", ["cryptography.hazmat.bindings._rust", "_blake2"])
def test_public_fallback_when_the_private_import_is_unavailable(blocked: str) -> None:
    """Each private import made unavailable in a fresh interpreter: ``protocol`` takes the
    public API instead and builds the same packet, byte for byte."""
    repo = str(Path(protocol.__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")]))
    code = _FALLBACK.format(blocked=blocked, key=FIXTURE_KEY)
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    same_aead, same_hash, packet, round_trip = json.loads(result.stdout)
    assert same_aead and same_hash and round_trip
    key = parse_key(FIXTURE_KEY)
    data = ClientData(command_hash("open_port"), 7, True, None, bytes(16))
    assert packet == build_packet(key, data, bytes(12)).hex()


def test_commander_message_names_are_re_exported_from_ipc() -> None:
    assert protocol.COMMANDER_DATA_SIZE == ipc.COMMANDER_DATA_SIZE == 24
    assert encode_commander_data is ipc.encode_commander_data
    assert decode_commander_data is ipc.decode_commander_data
    assert ProtocolError is errors.ProtocolError
    with pytest.raises(AttributeError):
        protocol.no_such_name  # noqa: B018


def test_plaintext_vector_default() -> None:
    data = ClientData(command_hash("default"), COUNTER, True, None, parse_ip("127.0.0.1"))
    assert data.encode().hex() == (
        "01"
        "fe98b07b1ba6b3a2"
        "000000000000000017f3598501473c00"
        "01"
        "00000000000000000000000000000000"
        "00000000000000000000ffff7f000001"
    )


def test_plaintext_vector_open_port() -> None:
    data = ClientData(
        command_hash("open_port"), 2**64 + 5, False, parse_ip("192.168.178.123"), parse_ip("::1")
    )
    assert data.encode().hex() == (
        "01"
        "9b93083959d8550a"
        "00000000000000010000000000000005"
        "00"
        "00000000000000000000ffffc0a8b27b"
        "00000000000000000000000000000001"
    )


def test_packet_vector() -> None:
    key = parse_key(FIXTURE_KEY)
    data = ClientData(command_hash("default"), COUNTER, True, None, parse_ip("127.0.0.1"))
    packet = build_packet(key, data, bytes(range(12)))
    assert packet.hex() == (
        "ffffffffffffffff"
        "000102030405060708090a0b"
        "e246f1a20fd9b64f9adfe07ff3f4d1e8"
        "1a6f688f839e59a78627e6a1d78327e39adfba9d55ffd67cba6ab09243db85e23f03f7ef42097c6b43e0"
        "10d546204518165f657c2a473207bc5b"
    )
    key_id, blob = split_packet(packet)
    assert key_id == key.key_id
    assert ClientData.decode(key.decrypt(blob)) == data


def test_commander_data_vectors() -> None:
    h = command_hash("default")
    assert encode_commander_data(h, parse_ip("1.2.3.4")).hex() == (
        "fe98b07b1ba6b3a200000000000000000000ffff01020304"
    )
    assert encode_commander_data(h, parse_ip("2606:4700:4700::1111")).hex() == (
        "fe98b07b1ba6b3a226064700470000000000000000001111"
    )
    assert decode_commander_data(encode_commander_data(42, parse_ip("::1"))) == (
        42,
        parse_ip("::1"),
    )
    with pytest.raises(ProtocolError):
        decode_commander_data(b"\x00" * 23)


def test_max_and_min_size() -> None:
    big = ClientData(U64_MAX, U128_MAX, True, parse_ip("::"), parse_ip("::"))
    small = ClientData(0, 0, False, parse_ip("0.0.0.0"), parse_ip("0.0.0.0"))
    assert len(big.encode()) == len(small.encode()) == PLAINTEXT_SIZE


def test_unspecified_src_is_no_claim_but_ipv4_zero_is_a_claim() -> None:
    assert ClientData(1, 1, True, parse_ip("::"), parse_ip("::1")).src_ip is None
    assert ClientData(1, 1, True, parse_ip("0.0.0.0"), parse_ip("::1")).src_ip == parse_ip(
        "0.0.0.0"
    )


def test_roundtrip_long_name() -> None:
    data = ClientData(
        command_hash("x" * 6000),
        COUNTER,
        True,
        parse_ip("192.168.178.123"),
        parse_ip("192.168.178.124"),
    )
    assert ClientData.decode(data.encode()) == data


def test_rejects_unknown_version() -> None:
    raw = bytearray(ClientData(1, 1, True, None, parse_ip("::1")).encode())
    raw[0] = 0xFF
    with pytest.raises(ProtocolError, match="Unsupported protocol version 255, expected 1"):
        ClientData.decode(bytes(raw))


def test_strict_reader_accepts_any_nonzero() -> None:
    raw = bytearray(ClientData(1, 1, False, None, parse_ip("::1")).encode())
    raw[25] = 7
    assert ClientData.decode(bytes(raw)).strict is True


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (binascii.b2a_base64(b"abcd", newline=False).decode(), "Key too short"),
        ("DEADBEEF", "Key too short"),
        (binascii.b2a_base64(b"i" * 32, newline=False).decode(), "Key length must be 32 bytes"),
        ("not valid base64!!!", "Could not decode base64 key"),
        ("QR==", "Could not decode base64 key"),  # non-zero trailing bits
        (FIXTURE_KEY[:-2], "Could not decode base64 key"),  # padding required
        (FIXTURE_KEY[:20] + "\n" + FIXTURE_KEY[20:], "Could not decode base64 key"),
    ],
)
def test_key_errors(text: str, message: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_key(text)
    assert str(info.value) == message


def test_key_with_whitespace() -> None:
    assert parse_key(f"  {FIXTURE_KEY}  \n").key_id == parse_key(FIXTURE_KEY).key_id
    data = ClientData(1, 1, False, None, parse_ip("::1")).encode()
    iv = bytes(12)
    assert parse_key(f"\u3000{FIXTURE_KEY}\u00a0").encrypt(data, iv) == parse_key(
        FIXTURE_KEY
    ).encrypt(data, iv)


def test_generated_key_shape() -> None:
    text = generate_key()
    assert len(text) == 56 and text.endswith("==")
    assert len(binascii.a2b_base64(text)) == 40
    assert key_id_of(text) == binascii.a2b_base64(text)[:8]
    assert generate_key() != text


def test_fresh_iv_per_packet_and_tamper_detection() -> None:
    key = parse_key(generate_key())
    data = ClientData(1, 2, True, None, parse_ip("::1"))
    p1, p2 = build_packet(key, data), build_packet(key, data)
    assert p1 != p2 and len(p1) == MSG_SIZE
    for index in (8, 20, 40, 93):  # iv, tag, ciphertext
        bad = bytearray(p1)
        bad[index] ^= 1
        with pytest.raises(ProtocolError):
            key.decrypt(bytes(bad[8:]))
    with pytest.raises(ProtocolError):
        parse_key(generate_key()).decrypt(p1[8:])


@given(
    st.sampled_from([(0,), (1,), (0, 1)]),
    st.sampled_from([0, 1]),
    st.integers(0, U128_MAX),
)
def test_a_key_serves_exactly_the_protocols_it_was_parsed_for(
    protocols: tuple[int, ...], protocol_no: int, counter: int
) -> None:
    """A knock builds only the cipher it needs; the other protocol is refused with a clear
    error instead of a cipher made later from a secret ``wipe`` may have zeroed."""
    key = parse_key(FIXTURE_KEY, protocols)
    full = parse_key(FIXTURE_KEY)
    data = ClientData(command_hash("default"), counter, True, None, parse_ip("::1"))
    if protocol_no in protocols:
        packet = build_packet(key, data, None, protocol_no)
        assert full.decrypt(packet[8:], protocol_no) == data.encode(protocol_no)
        assert key.decrypt(build_packet(full, data, None, protocol_no)[8:], protocol_no)
    else:
        message = f"This key was not parsed for protocol {protocol_no}"
        with pytest.raises(ProtocolError, match=message):
            build_packet(key, data, None, protocol_no)
        with pytest.raises(ProtocolError, match=message):
            key.decrypt(build_packet(full, data, None, protocol_no)[8:], protocol_no)
    key.wipe()
    if protocol_no in protocols:  # a cipher built before the wipe keeps working
        assert len(build_packet(key, data, None, protocol_no)) in (MSG_SIZE, MSG_SIZE - 1)


class _MissingCipher:
    """A cipher as an OpenSSL without it behaves: AES-GCM-SIV before 3.2 or in FIPS mode."""

    def __init__(self, key: bytes) -> None:
        raise ValueError("unsupported by this OpenSSL")


def test_warm_up_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Ansible action plugin calls it at import, in the controller's main process: an
    error there would end every playbook, where the knock would only have failed its task."""
    monkeypatch.setattr(protocol, "_CIPHERS", (_MissingCipher, _MissingCipher))
    protocol.warm_up()


def test_hex_list() -> None:
    assert hex_list(bytes([0, 1, 0x7F, 0x80, 0xFF])) == "[0, 1, 7F, 80, FF]"


ips = st.one_of(
    st.binary(min_size=4, max_size=4).map(lambda b: b"\x00" * 10 + b"\xff\xff" + b),
    st.binary(min_size=16, max_size=16),
)


@given(
    st.integers(0, U64_MAX),
    st.integers(0, U128_MAX),
    st.booleans(),
    st.one_of(st.none(), ips),
    ips,
)
def test_plaintext_roundtrip(cmd: int, counter: int, strict: bool, src, dst) -> None:
    data = ClientData(cmd, counter, strict, src, dst)
    assert ClientData.decode(data.encode()) == data


@given(
    st.binary(min_size=PLAINTEXT_SIZE, max_size=PLAINTEXT_SIZE), st.binary(min_size=12, max_size=12)
)
def test_packet_roundtrip(plaintext: bytes, iv: bytes) -> None:
    key = Key(b"\x01" * 8, b"\x02" * 32)
    packet = key.encrypt(plaintext, iv)
    assert len(packet) == MSG_SIZE
    assert key.decrypt(split_packet(packet)[1]) == plaintext


@given(st.binary(max_size=200))
def test_arbitrary_bytes_only_raise_protocol_errors(data: bytes) -> None:
    key = Key(b"\x00" * 8, b"\x00" * 32)
    try:
        _, blob = split_packet(data)
        ClientData.decode(key.decrypt(blob))
    except ProtocolError:
        pass


@given(st.binary(min_size=PLAINTEXT_SIZE, max_size=PLAINTEXT_SIZE))
def test_arbitrary_plaintexts_decode_or_reject(data: bytes) -> None:
    try:
        decoded = ClientData.decode(data)
    except ProtocolError:
        assert data[0] != 1
    else:
        assert decoded.encode()[:25] == data[:25]
        assert decoded.strict == (data[25] != 0)
        assert decoded.encode()[42:] == data[42:]


@given(st.text(max_size=80))
def test_parse_key_only_raises_protocol_errors(text: str) -> None:
    with contextlib.suppress(ProtocolError):
        parse_key(text)
