"""The ruroco wire protocols, versions 1 and 0: the single source of truth for every byte.

Protocol 1, packet (94 bytes): key_id(8) ‖ iv(12) ‖ tag(16) ‖ ciphertext(58), AES-256-GCM-SIV,
no AAD. Plaintext (58 bytes): version(1) ‖ cmd_hash u64 BE ‖ counter u128 BE ‖ strict(1) ‖
src_ip(16) ‖ dst_ip(16). Protocol 0 (the released ruroco 0.14.2; docs/protocol.md, Protocol 0):
the same layout without the version byte, so 57 and 93 bytes, and AES-256-GCM instead of
GCM-SIV. The two differ only in the cipher and that byte; everything else here serves both.
Client, server and the Ansible collection import this module.
The commander never loads cryptography: it takes the command hash from ``ruroco.cmdhash``
(the same function as ``command_hash`` here) and the 24-byte commander message from
``ruroco.ipc`` (re-exported here, loaded on first use).

Two private imports, kept for the client's cold start and measured: an A/B of wheel
builds (``ruroco-client send``, median of 30, alternating) put ``cryptography.hazmat.bindings.
_rust`` at ~7 ms and 37 modules and ``_blake2`` at ~3-4 ms; the bench row "Client wall time if
protocol.py used only public imports" (bench/RESULTS.md) loads both public modules first and
shows what they cost together. Each falls back to the public API
(``cryptography...aead.AESGCMSIV``, ``hashlib.blake2b``); tests run both fallbacks.
"""

from __future__ import annotations

import binascii
import os

try:  # Private, measured: the class itself, without the public aead module's package (typing,
    # enum, re: +37 modules, +7 ms median of ``ruroco-client send``). The same class object
    # (pinned by a test); the public import is the fallback and a test runs it.
    from cryptography.hazmat.bindings._rust import openssl as _rust_openssl

    AESGCMSIV = _rust_openssl.aead.AESGCMSIV
    AESGCM = _rust_openssl.aead.AESGCM  # protocol 0; the same module, so it costs nothing more
except (ImportError, AttributeError):
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM, AESGCMSIV

from ruroco.errors import ProtocolError as ProtocolError  # re-exported: defined without crypto
from ruroco.ipaddr import UNSPECIFIED, ip_text
from ruroco.limits import U64_MAX as U64_MAX  # re-exported for callers of protocol
from ruroco.limits import U128_MAX as U128_MAX

try:  # Private, measured: hashlib also loads _hashlib and with it the system libcrypto
    # (+3-4 ms median of ``ruroco-client send``); the same C function, a test runs the fallback.
    from _blake2 import blake2b
except ImportError:
    from hashlib import blake2b

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: typing costs the client's cold start ~10 ms
if TYPE_CHECKING:  # re-exported lazily (``__getattr__``): the client never needs them
    from ruroco.ipc import COMMANDER_DATA_SIZE as COMMANDER_DATA_SIZE
    from ruroco.ipc import decode_commander_data as decode_commander_data
    from ruroco.ipc import encode_commander_data as encode_commander_data

_FROM_IPC = ("COMMANDER_DATA_SIZE", "decode_commander_data", "encode_commander_data")

PROTOCOL_VERSION = 1
PROTOCOL_0 = 0  # the released ruroco 0.14.2: no version byte, AES-256-GCM
PROTOCOLS = (PROTOCOL_0, PROTOCOL_VERSION)
KEY_ID_SIZE = 8
AES_KEY_SIZE = 32
IV_SIZE = 12
TAG_SIZE = 16
PLAINTEXT_SIZE = 58
CIPHERTEXT_SIZE = IV_SIZE + TAG_SIZE + PLAINTEXT_SIZE  # 86
MSG_SIZE = KEY_ID_SIZE + CIPHERTEXT_SIZE  # 94
V0_PLAINTEXT_SIZE = PLAINTEXT_SIZE - 1  # 57
V0_CIPHERTEXT_SIZE = CIPHERTEXT_SIZE - 1  # 85
V0_MSG_SIZE = MSG_SIZE - 1  # 93
# The only thing that tells the two formats apart on the wire is the datagram's length.
PROTOCOL_OF_SIZE = {MSG_SIZE: PROTOCOL_VERSION, V0_MSG_SIZE: PROTOCOL_0}
_PLAINTEXT_SIZES = (V0_PLAINTEXT_SIZE, PLAINTEXT_SIZE)  # indexed by protocol
_CIPHERS: tuple[type[AESGCM] | type[AESGCMSIV], ...] = (AESGCM, AESGCMSIV)
_CIPHERTEXT_SIZES = (V0_CIPHERTEXT_SIZE, CIPHERTEXT_SIZE)


def check_protocol(protocol: int) -> int:
    """``protocol`` if it is 0 or 1; a ProtocolError naming it otherwise."""
    if type(protocol) is not int or protocol not in PROTOCOLS:  # not True/False either
        raise ProtocolError(f"Unsupported protocol {protocol!r}, expected 0 or 1")
    return protocol


# Rust's str::trim set (Unicode White_Space); str.strip() would also strip \x1c-\x1f.
_WHITESPACE = (
    " \t\n\x0b\x0c\r\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
    "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


def hex_list(data: bytes) -> str:
    """Rust ``{:X?}`` of a byte array, e.g. ``[0, 1, 7F, FF]``: how key ids appear in logs."""
    return "[" + ", ".join(f"{b:X}" for b in data) + "]"


class Key:
    """A parsed shared key: public 8-byte id plus the AES-256 key, which is never shown."""

    __slots__ = ("_aeads", "_secret", "key_id")

    def __init__(
        self, key_id: bytes, secret: bytes, protocols: tuple[int, ...] = PROTOCOLS
    ) -> None:
        if len(key_id) != KEY_ID_SIZE or len(secret) != AES_KEY_SIZE:
            raise ProtocolError("Key length must be 32 bytes")
        self.key_id = bytes(key_id)
        self._secret = bytearray(secret)
        # The ciphers of ``protocols`` up front: one made later, from ``_secret``, could meet a
        # key that ``wipe`` already zeroed. Indexed by protocol, None where not wanted: a
        # knock needs one, and in a forked worker each costs ~60-170 us of copied pages
        # (docs/performance.md, "The client").
        self._aeads = tuple(
            _CIPHERS[p](bytes(self._secret)) if p in protocols else None for p in PROTOCOLS
        )

    def _aead(self, protocol: int) -> AESGCM | AESGCMSIV:
        aead = self._aeads[check_protocol(protocol)]
        if aead is None:
            raise ProtocolError(f"This key was not parsed for protocol {protocol}")
        return aead

    def __repr__(self) -> str:
        return f"Key(id={hex_list(self.key_id)}, key=<redacted>)"

    __str__ = __repr__

    def wipe(self) -> None:
        """Best-effort zeroization of our copy of the secret (the AEAD object keeps its own)."""
        for i in range(len(self._secret)):
            self._secret[i] = 0

    def encrypt(
        self, plaintext: bytes, iv: bytes | None = None, protocol: int = PROTOCOL_VERSION
    ) -> bytes:
        """The datagram for ``plaintext``: 94 bytes from 58 (protocol 1, AES-256-GCM-SIV) or
        93 from 57 (protocol 0, AES-256-GCM); a fresh random IV unless given."""
        aead = self._aead(protocol)
        size = _PLAINTEXT_SIZES[protocol]
        if len(plaintext) != size:
            raise ProtocolError(f"Plaintext must be {size} bytes, got {len(plaintext)}")
        iv = os.urandom(IV_SIZE) if iv is None else iv
        out = aead.encrypt(iv, plaintext, None)  # ciphertext ‖ tag
        return self.key_id + iv + out[-TAG_SIZE:] + out[:-TAG_SIZE]

    def decrypt(self, blob: bytes, protocol: int = PROTOCOL_VERSION) -> bytes:
        """Decrypt what follows the key id (iv ‖ tag ‖ ciphertext): 86 bytes (protocol 1) or
        85 (protocol 0)."""
        aead = self._aead(protocol)
        size = _CIPHERTEXT_SIZES[protocol]
        if len(blob) != size:
            raise ProtocolError(f"Ciphertext must be {size} bytes, got {len(blob)}")
        try:
            return aead.decrypt(
                blob[:IV_SIZE],
                blob[IV_SIZE + TAG_SIZE :] + blob[IV_SIZE : IV_SIZE + TAG_SIZE],
                None,
            )
        except Exception as exc:
            from cryptography.exceptions import InvalidTag  # lazily: it imports typing

            if isinstance(exc, InvalidTag):
                raise ProtocolError(
                    "Could not decrypt packet (authentication tag mismatch)"
                ) from None
            raise


def parse_key(text: str, protocols: tuple[int, ...] = PROTOCOLS) -> Key:
    """Parse the textual key (base64 of id ‖ key) with the original's strict rules; the key
    serves ``protocols`` (both unless a caller knows the one it needs)."""
    stripped = text.strip(_WHITESPACE)
    try:
        raw = binascii.a2b_base64(stripped.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise ProtocolError("Could not decode base64 key") from None
    # strict_mode still accepts non-zero trailing bits (e.g. "QR=="): require canonical form.
    if binascii.b2a_base64(raw, newline=False).decode("ascii") != stripped:
        raise ProtocolError("Could not decode base64 key")
    if len(raw) < KEY_ID_SIZE:
        raise ProtocolError("Key too short")
    if len(raw) - KEY_ID_SIZE != AES_KEY_SIZE:
        raise ProtocolError("Key length must be 32 bytes")
    buf = bytearray(raw)
    try:
        return Key(bytes(buf[:KEY_ID_SIZE]), bytes(buf[KEY_ID_SIZE:]), protocols)
    finally:
        for i in range(len(buf)):
            buf[i] = 0


def generate_key() -> str:
    """A new key string: 56 base64 characters ending in ``==`` (id first, then key)."""
    secret = os.urandom(AES_KEY_SIZE)
    key_id = os.urandom(KEY_ID_SIZE)
    return binascii.b2a_base64(key_id + secret, newline=False).decode("ascii")


def warm_up() -> None:
    """Build and use one cipher of each protocol, so the process's one-time OpenSSL set-up
    happens now; best effort, it never raises.

    The first cipher a process builds costs ~1 ms here (OpenSSL loads its provider and
    fetches the algorithm); every later one costs microseconds. A process that imports the
    client and then forks workers, as Ansible does for ``ruroco_send``, calls this once, so
    no worker pays it inside its knock (docs/performance.md, "The client"). A cipher this
    OpenSSL lacks (GCM-SIV before OpenSSL 3.2, or in FIPS mode) fails later, in the knock
    that needs it, with the error it always had.
    """
    for cipher, size in zip(_CIPHERS, _PLAINTEXT_SIZES, strict=True):
        # A full plaintext: OpenSSL before 3.5 refuses GCM-SIV on empty data. Any error is
        # left to the knock (a speed-up only); contextlib would cost the cold start ~3 ms.
        try:  # noqa: SIM105
            cipher(bytes(AES_KEY_SIZE)).encrypt(bytes(IV_SIZE), bytes(size), None)
        except Exception:
            pass


def key_id_of(text: str) -> bytes:
    """The id of a key string, validating the whole key (for tools that show only the id)."""
    key = parse_key(text)
    key.wipe()
    return key.key_id


def command_hash(name: str) -> int:
    """BLAKE2b with an 8-byte digest (not a truncated 64-byte one), as a big-endian u64.

    The same function as ``ruroco.cmdhash.command_hash`` (which the commander uses, without
    cryptography); kept here so the client's start loads no extra module. A test pins both.
    """
    return int.from_bytes(blake2b(name.encode("utf-8"), digest_size=8).digest(), "big")


class ClientData:
    """The authenticated plaintext; IPs are 16-byte wire forms (see ``ruroco.ipaddr``)."""

    __slots__ = ("cmd_hash", "counter", "dst_ip", "src_ip", "strict")

    def __init__(
        self, cmd_hash: int, counter: int, strict: bool, src_ip: bytes | None, dst_ip: bytes
    ) -> None:
        if not 0 <= cmd_hash <= U64_MAX:
            raise ProtocolError("cmd_hash must fit in 64 bits")
        if not 0 <= counter <= U128_MAX:
            raise ProtocolError("counter must fit in 128 bits")
        if (src_ip is not None and len(src_ip) != 16) or len(dst_ip) != 16:
            raise ProtocolError("IP addresses must be 16 bytes")
        self.cmd_hash = cmd_hash
        self.counter = counter
        self.strict = strict
        self.src_ip = None if src_ip == UNSPECIFIED else src_ip
        self.dst_ip = dst_ip

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ClientData):
            return NotImplemented
        return self.encode() == other.encode()

    def __hash__(self) -> int:
        return hash(self.encode())

    def __repr__(self) -> str:
        src = None if self.src_ip is None else ip_text(self.src_ip)
        return (
            f"ClientData(cmd_hash={self.cmd_hash}, counter={self.counter}, strict={self.strict},"
            f" src_ip={src}, dst_ip={ip_text(self.dst_ip)})"
        )

    def encode(self, protocol: int = PROTOCOL_VERSION) -> bytes:
        """The plaintext: 58 bytes with the version byte (protocol 1) or 57 without (0)."""
        return b"".join(
            (
                b"\x01" if check_protocol(protocol) == PROTOCOL_VERSION else b"",
                self.cmd_hash.to_bytes(8, "big"),
                self.counter.to_bytes(16, "big"),
                b"\x01" if self.strict else b"\x00",
                UNSPECIFIED if self.src_ip is None else self.src_ip,
                self.dst_ip,
            )
        )

    @classmethod
    def decode(cls, data: bytes, protocol: int = PROTOCOL_VERSION) -> ClientData:
        """Read a plaintext of ``protocol``; protocol 1 refuses any version byte but 1."""
        size = _PLAINTEXT_SIZES[check_protocol(protocol)]
        if len(data) != size:
            raise ProtocolError(f"Plaintext must be {size} bytes, got {len(data)}")
        if protocol == PROTOCOL_VERSION:
            if data[0] != PROTOCOL_VERSION:
                raise ProtocolError(
                    f"Unsupported protocol version {data[0]}, expected {PROTOCOL_VERSION}"
                )
            data = data[1:]
        return cls(
            cmd_hash=int.from_bytes(data[0:8], "big"),
            counter=int.from_bytes(data[8:24], "big"),
            strict=data[24] != 0,
            src_ip=bytes(data[25:41]),
            dst_ip=bytes(data[41:57]),
        )


def split_packet(packet: bytes | bytearray | memoryview) -> tuple[bytes, bytes]:
    """``(key_id, blob)`` of a 94-byte (protocol 1) or 93-byte (protocol 0) datagram; the
    server's decision splits with it and learns the protocol from the length."""
    if len(packet) not in PROTOCOL_OF_SIZE:
        raise ProtocolError(
            f"Packet must be {MSG_SIZE} (or {V0_MSG_SIZE}, protocol 0) bytes, got {len(packet)}"
        )
    return bytes(packet[:KEY_ID_SIZE]), bytes(packet[KEY_ID_SIZE:])


def build_packet(
    key: Key, data: ClientData, iv: bytes | None = None, protocol: int = PROTOCOL_VERSION
) -> bytes:
    """The datagram a client sends: protocol 1 (94 bytes) unless ``protocol`` is 0 (93)."""
    return key.encrypt(data.encode(protocol), iv, protocol)


def __getattr__(name: str) -> object:
    """The commander message's names, from ``ruroco.ipc`` on first use."""
    if name in _FROM_IPC:
        from ruroco import ipc

        value = getattr(ipc, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
