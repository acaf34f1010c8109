"""Opt-in kernel pre-filter: a classic BPF socket filter that drops, before queueing, every
datagram that is not 94 bytes (or 93, when protocol 0 is accepted) or does not start with a
loaded key id.

Why: under a flood the kernel drops datagrams once the socket queue is full, and it does not
care whether a dropped one was a legitimate knock. Filtering in the kernel keeps random
garbage out of the queue, so the queue holds only datagrams worth reading. The cost is that
those datagrams are never seen by the server and so never logged (every rejection is logged
by default, docs/deviations.md #6, and fail2ban relies on it), which is why the server keeps
it off unless ``kernel_filter = true``. The ``ruroco_server`` role sets it: fail2ban still
sees what it acts on (failed authentication and replays carry a key id and pass), and the
server's drop summary (``ruroco.server.drops``) counts what the filter dropped
(docs/performance.md, Floods in the default deployment).

``SO_ATTACH_FILTER`` needs no privilege and works on a socket inherited from systemd. For a
UDP socket the filter sees the datagram starting at the UDP header: the payload begins at
offset 8 and ``len`` is 8 + payload length (a test checks this against the real kernel).
Besides the 4096-instruction limit, the kernel charges the program against
``net.core.optmem_max``: with the default 131072 (Linux >= 6.9) 511 keys fit here; older
kernels default to 20480, so fewer do, and attaching then fails with a message that says so.

The program is linear with local jumps only (classic BPF jump offsets are 8 bits)::

    ld len; jeq #102, +1, +0; ret #0            size check
    ld len; jeq #102, +2, +0; jeq #101, +1, +0; ret #0    ... with protocol 0 (93 + 8)
    per key: ld [8]; jeq #id[0:4], +0, +3; ld [12]; jeq #id[4:8], +0, +1; ret #-1
    ret #0                                      no key matched
"""

from __future__ import annotations

import ctypes
import errno
import socket
import struct
from collections.abc import Iterable

from ruroco.errors import RurocoError
from ruroco.limits import U32_MAX
from ruroco.protocol import KEY_ID_SIZE, MSG_SIZE, V0_MSG_SIZE

UDP_HEADER = 8
BPF_MAXINSNS = 4096
SO_ATTACH_FILTER = getattr(socket, "SO_ATTACH_FILTER", 26)
SO_DETACH_FILTER = getattr(socket, "SO_DETACH_FILTER", 27)

# Classic BPF opcodes (linux/filter.h, linux/bpf_common.h).
LD_LEN = 0x00 | 0x00 | 0x80  # BPF_LD | BPF_W | BPF_LEN
LD_ABS_W = 0x00 | 0x00 | 0x20  # BPF_LD | BPF_W | BPF_ABS
JEQ_K = 0x05 | 0x10 | 0x00  # BPF_JMP | BPF_JEQ | BPF_K
RET_K = 0x06 | 0x00  # BPF_RET | BPF_K

DROP = 0
KEEP = U32_MAX  # keep the whole datagram

HEAD = 3  # size check
HEAD_PROTOCOL_0 = HEAD + 1  # ... and the second size
PER_KEY = 5
TAIL = 1
MAX_KEYS = (BPF_MAXINSNS - HEAD_PROTOCOL_0 - TAIL) // PER_KEY  # 818, with either head

Instruction = tuple[int, int, int, int]  # (code, jt, jf, k)
_INSN = struct.Struct("=HBBI")


def check_key_count(key_count: int) -> None:
    """Refuse a key set the kernel would reject, with a message that says what to do."""
    if key_count > MAX_KEYS:
        raise RurocoError(
            f"kernel_filter supports at most {MAX_KEYS} keys ({BPF_MAXINSNS} BPF instructions), "
            f"but {key_count} are loaded; set kernel_filter = false or use fewer keys"
        )


def build_program(key_ids: Iterable[bytes], protocol_0: bool = False) -> list[Instruction]:
    """The filter for these key ids (order kept; duplicates are harmless but cost length);
    ``protocol_0`` also passes 93-byte datagrams (``accept_protocol_0``)."""
    ids = list(key_ids)
    check_key_count(len(ids))
    prog: list[Instruction] = [(LD_LEN, 0, 0, 0)]
    if protocol_0:
        prog += [(JEQ_K, 2, 0, UDP_HEADER + MSG_SIZE), (JEQ_K, 1, 0, UDP_HEADER + V0_MSG_SIZE)]
    else:
        prog.append((JEQ_K, 1, 0, UDP_HEADER + MSG_SIZE))
    prog.append((RET_K, 0, 0, DROP))
    for key_id in ids:
        if len(key_id) != KEY_ID_SIZE:
            raise ValueError(f"a key id has {KEY_ID_SIZE} bytes, not {len(key_id)}")
        prog += [
            (LD_ABS_W, 0, 0, UDP_HEADER),
            (JEQ_K, 0, 3, int.from_bytes(key_id[:4], "big")),
            (LD_ABS_W, 0, 0, UDP_HEADER + 4),
            (JEQ_K, 0, 1, int.from_bytes(key_id[4:], "big")),
            (RET_K, 0, 0, KEEP),
        ]
    prog.append((RET_K, 0, 0, DROP))
    return prog


def encode(program: list[Instruction]) -> bytes:
    """``struct sock_filter[]`` in native byte order, as the kernel reads it."""
    return b"".join(_INSN.pack(*insn) for insn in program)


def attach(sock: socket.socket, key_ids: Iterable[bytes], protocol_0: bool = False) -> int:
    """Attach the filter to ``sock``; returns the program length. Raises RurocoError.

    ``struct sock_fprog`` holds a pointer, so the instructions live in a ctypes buffer (plain
    memory, no callback: allowed under MemoryDenyWriteExecute); the kernel copies them during
    the call, so the buffer need not outlive it.
    """
    ids = list(key_ids)
    key_count = len(ids)
    program = build_program(ids, protocol_0)
    code = ctypes.create_string_buffer(encode(program))
    fprog = struct.pack("@HP", len(program), ctypes.addressof(code))
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
    except OSError as exc:
        hint = ""
        if exc.errno == errno.ENOMEM:  # the kernel charges the program against optmem_max
            hint = f" (raise sysctl net.core.optmem_max or use fewer keys than {key_count})"
        raise RurocoError(
            f"Could not attach the kernel filter to the socket: {exc.strerror}{hint}"
        ) from None
    return len(program)


def detach(sock: socket.socket) -> bool:
    """Take a filter off ``sock``; True if there was one.

    systemd keeps the listening socket across server restarts, and a filter attached by an
    earlier start stays on it: with the filter now off, or other key ids, it would go on
    dropping knocks in the kernel. ``ENOENT`` means there was none.
    """
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_DETACH_FILTER, 0)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return False
        raise RurocoError(
            f"Could not remove the kernel filter from the socket: {exc.strerror}"
        ) from None
    return True
