# Copyright: ruroco contributors
# MIT License (see LICENSE or https://opensource.org/license/mit)
"""Key strings for modules that run on managed hosts.

Modules travel to targets without the ruroco package, so this is a standard-library copy of
the key rules of ``ruroco.protocol`` (strict base64 of an 8-byte id plus a 32-byte key). The
collection's unit tests check that both parsers agree on arbitrary input.
"""

from __future__ import annotations

import base64
import binascii
import os

KEY_ID_SIZE = 8
AES_KEY_SIZE = 32

# Rust's str::trim set (Unicode White_Space); str.strip() would also strip \x1c-\x1f.
_WHITESPACE = (
    " \t\n\x0b\x0c\r\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
    "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


class InvalidKey(ValueError):
    """A key string that the ruroco server and client would reject; the text is never included."""


def parse_key(text):
    """Return ``(key_id, secret)`` bytes, raising InvalidKey with the original's messages."""
    stripped = text.strip(_WHITESPACE)
    try:
        raw = base64.b64decode(stripped.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise InvalidKey("Could not decode base64 key") from None
    # b64decode accepts non-zero trailing bits (e.g. "QR=="); the original requires canonical form.
    if base64.b64encode(raw).decode("ascii") != stripped:
        raise InvalidKey("Could not decode base64 key")
    if len(raw) < KEY_ID_SIZE:
        raise InvalidKey("Key too short")
    if len(raw) - KEY_ID_SIZE != AES_KEY_SIZE:
        raise InvalidKey("Key length must be 32 bytes")
    return raw[:KEY_ID_SIZE], raw[KEY_ID_SIZE:]


def generate_key():
    """A new key string: 56 base64 characters ending in ``==`` (id first, then key)."""
    return encode_key(os.urandom(KEY_ID_SIZE), os.urandom(AES_KEY_SIZE))


def encode_key(key_id, secret):
    """The canonical key string, as ``gen`` prints it (no whitespace, no newline)."""
    return base64.b64encode(key_id + secret).decode("ascii")


def key_id_log(key_id):
    """The key id as the server logs it (Rust ``{:X?}``, ``ruroco.protocol.hex_list``): ``[1A, 0, FF]``."""
    return "[" + ", ".join("%X" % byte for byte in bytearray(key_id)) + "]"
