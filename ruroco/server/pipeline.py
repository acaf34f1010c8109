"""The per-datagram decision: accept or reject with a reason, as a sans-IO object (like h11).

``Decision`` is pure: a datagram, its peer and the time (wall-clock ns for the counter's
future check, monotonic seconds for the rate limiters) go in, an ``Acceptance`` or a
``Rejection`` value comes out. It reads no clock, touches no file and logs nothing; its
state is in memory (the rate-limit windows, the replay floors as a dict). ``screen`` is the
cheap part alone (size, key lookup), for the receive loop to run on every datagram;
``decide`` is all of it. An ``Acceptance`` has already raised the key's floor in memory.

``Pipeline`` is the I/O edge the server runs around it (``settle``): the hand-off room
check (no room: the floor is put back and the packet is ``Busy``), the ``Valid data`` log
line, the fsync'd blocklist write (failure: the floor is put back, a ``persist``
rejection). ``Pipeline.handle`` reads the clocks and does both, for one datagram.

Order (docs/deviations.md #1 and #2)::

    size → key lookup → per-source limit → decrypt → version → replay → future
         → destination → strict source → key policy → global limit      (Decision)
         → hand-off room → persist                           (the edge: Pipeline.settle)

(size: 94 bytes; or 93, protocol 0, with ``accept_protocol_0``.)

Why the global cap counts only packets that passed every check: what a flood can make
expensive is the work *after* authentication - the fsync'd blocklist write and the command
spawn. Decrypting and checking a packet costs microseconds. If every datagram counted
against the global cap (the original's order), anyone could spoof a few hundred packets per
second from random sources and starve every legitimate client; an unknown key id now costs
one dict lookup and no budget at all, and garbage carrying a real key id (the id is sent in
clear) is throttled per source and then fails authentication without touching the global
budget. The trade-off: the server decrypts every packet that carries a known id and passes
its per-source limit, so a flood of such packets costs CPU (bounded by what one core
decrypts, a few hundred thousand per second) rather than being cut off at 100/s; and
``max_requests_per_second_global`` now limits how many commands may *run* per second,
which is what it protects. The original order (both limits on every correctly sized
datagram, before the key lookup) lives only in the benchmarks (``bench/legacy.py``).

The key policy (``ruroco.policy``; docs/security.md, Per-key policy) is asked only once the
packet authenticated and passed every check a replay or a forgery would fail. A packet the
global limit refuses, or the policy for what it says (command, expiry, a claimed address
outside ``sources``) rather than where it came from, is used up: its floor is raised, so it
can never run later (docs/security.md, "Refused packets are used up"). A refusal costs no
global budget and no write of its own: the server writes such floors within two seconds, at
most once a second, and before a reload (``Pipeline.save_refused_floors``).
``Decision.policy`` is an immutable ``Policy``; replacing the attribute swaps it whole.

Protocol 0 (the released ruroco 0.14.2, docs/protocol.md, Protocol 0) differs from protocol 1
only in the cipher and the missing version byte, so it is told apart by the datagram's length
alone and then meets every check above unchanged, with the same floor per key: a 93-byte
packet cannot replay or overtake a 94-byte one of the same key, nor the other way round.
Without ``accept_protocol_0`` a 93-byte datagram is a wrong size, as it always was.

A reload (SIGHUP, ``Decision.reconfigure``) replaces the key table, the policy and the live
settings with new objects built beside the running ones, between two datagrams on the one
thread that calls ``screen`` and ``decide``; nothing is changed in place, and the floors and
rate-limit windows are kept.

Every rejection names the source in the same ``Rejected datagram from <ip> port <port>:``
prefix (``render``), so one fail2ban regex covers all reasons; text is made only when logged.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from typing import NamedTuple

from ruroco import log
from ruroco.errors import qpath
from ruroco.ipaddr import ip_list_text, ip_text, parse_ip
from ruroco.ipc import encode_commander_data
from ruroco.policy import EMPTY, Policy
from ruroco.protocol import (
    KEY_ID_SIZE,
    MSG_SIZE,
    PROTOCOL_0,
    PROTOCOL_OF_SIZE,
    PROTOCOL_VERSION,
    V0_MSG_SIZE,
    ClientData,
    Key,
    ProtocolError,
    hex_list,
    split_packet,
)
from ruroco.server.blocklist import Blocklist, BlocklistError
from ruroco.server.config import ServerConfig
from ruroco.server.ratelimit import PerSourceLimit, WindowLimit

# Reason codes: the keys of ``Decision.stats`` and of the shutdown summary.
SIZE = "size"
UNKNOWN_KEY = "unknown_key"
RATE_SOURCE = "rate_source"
RATE_GLOBAL = "rate_global"
DECRYPT = "decrypt"
VERSION = "version"
REPLAY = "replay"
FUTURE = "future"
DESTINATION = "destination"
SOURCE = "source"
PERSIST = "persist"
POLICY = "policy"
REASONS = (
    SIZE,
    UNKNOWN_KEY,
    RATE_SOURCE,
    DECRYPT,
    VERSION,
    REPLAY,
    FUTURE,
    DESTINATION,
    SOURCE,
    RATE_GLOBAL,
    PERSIST,
    POLICY,  # new reasons go last: the shutdown summary lists them in this order
)

#: Accepted packets that came as protocol 0 (also counted in "accepted").
ACCEPTED_V0 = "accepted_protocol_0"

PREFIX = "Rejected datagram from "
_KEY_ID = struct.Struct(f"{KEY_ID_SIZE}s")

# What follows the prefix, per reason; ``%`` arguments are the rejection's detail tuple,
# where key ids are raw bytes and ``THE_SOURCE`` stands for the source IP, both rendered
# only by ``render``.
DETAIL = {
    SIZE: "Invalid read count %d, expected %s",
    UNKNOWN_KEY: "Could not find key for id %s",
    RATE_SOURCE: "Rate limit exceeded for %s: more than %d requests per second",
    RATE_GLOBAL: "Global rate limit exceeded: more than %d requests per second",
    DECRYPT: "Could not decrypt packet for key %s: authentication failed",
    VERSION: "%s",
    REPLAY: "Invalid counter for key %s - %d is on blocklist, expected > %s",
    FUTURE: "Future counter for key %s - %d exceeds now + skew (%d); not updating blocklist",
    DESTINATION: "Invalid host IP for key %s - expected %s to contain %s",
    SOURCE: "Invalid source IP for key %s - expected %s, actual %s",
    PERSIST: "Could not update block list: %s",
    POLICY: "Refused by the policy for key %s (file %s): %s",
}

# (reason, host, port, detail): a plain tuple, because under a flood building it is most
# of the work done for a rejected datagram. Text is made by ``render`` only when logged.
Rejection = tuple[str, str, int, tuple[object, ...]]
THE_SOURCE = object()


def peer_ip(host: str) -> bytes:
    """The normalized 16-byte form of a ``recvfrom`` host (scope id dropped)."""
    return parse_ip(host.partition("%")[0])


def peer_text(host: str) -> str:
    """The source as logged: mapped IPv4 as IPv4, IPv6 in RFC 5952 form, no scope id."""
    try:
        return ip_text(peer_ip(host))
    except ValueError:
        return host


def render(rejection: Rejection) -> str:
    """``Rejected datagram from <ip> port <port>: <reason text>`` (one form for fail2ban)."""
    reason, host, port, detail = rejection
    source = peer_text(host)
    args = tuple(
        hex_list(a) if isinstance(a, bytes) else source if a is THE_SOURCE else a for a in detail
    )
    return f"{PREFIX}{source} port {port}: {DETAIL[reason] % args}"


def _floor_text(floor: int | None) -> str:
    return "None" if floor is None else f"Some({floor})"


class Acceptance(NamedTuple):
    """A packet that passed every check; ``message`` goes to the commander.

    From ``Decision.decide`` its counter is the key's floor in memory only (``floor`` is
    the one it replaced); from ``Pipeline.settle``/``handle`` it is also persisted."""

    key_id: bytes
    data: ClientData
    ip: bytes
    message: bytes
    host: str
    port: int
    floor: int
    protocol: int = PROTOCOL_VERSION


class Busy(NamedTuple):
    """A packet that passed every check but could not be handed off (no room in the server's
    hand-off queue); its counter was *not* persisted, so the client may simply knock again.
    Not a rejection: the client did nothing wrong, so it gets no ``Rejected datagram`` line."""

    key_id: bytes
    host: str
    port: int
    counter: int


Result = Rejection | Acceptance | Busy


class Decision:
    """The sans-IO decision on one datagram; ``screen`` and ``decide`` never raise.

    ``floors`` (key id -> highest counter of an authentic, fresh packet) is read and raised
    here; the server's ``Blocklist`` holds the same dict and writes it. Nothing else is shared.
    ``policy`` is read-only and may be replaced whole between two datagrams.
    """

    def __init__(
        self,
        config: ServerConfig,
        keys: dict[bytes, Key],
        floors: dict[bytes, int],
        policy: Policy = EMPTY,
    ):
        self.floors = floors
        # A refusal raised a floor that no write has persisted yet (the server writes it
        # within two seconds, at most once a second, and before a reload: ``Pipeline``).
        self.unsaved_floors = False
        self.per_source = PerSourceLimit(config.max_requests_per_second)
        self.global_limit = WindowLimit(config.max_requests_per_second_global)
        self.stats: dict[str, int] = dict.fromkeys((*REASONS, "accepted", ACCEPTED_V0), 0)
        self.reconfigure(config, keys, policy)

    def _sizes(self, config: ServerConfig) -> None:
        """The datagram sizes ``screen`` lets through: 94, and 93 when protocol 0 is on."""
        self.accept_protocol_0 = config.accept_protocol_0
        self.expected = f"{MSG_SIZE} or {V0_MSG_SIZE}" if self.accept_protocol_0 else str(MSG_SIZE)

    def reconfigure(self, config: ServerConfig, keys: dict[bytes, Key], policy: Policy) -> None:
        """Take a reloaded config, key table and policy (docs/files.md, Reload on SIGHUP).

        Call between two datagrams from the thread that decides: every object is complete
        before it is assigned and never changed afterwards, so each datagram meets the old
        state or the new, never a mix. The floors stay (a removed or re-added key keeps its
        floor), and so do the rate-limit windows, only their limits change.
        """
        self.config = config
        self.keys = keys
        self.policy = policy
        self._sizes(config)
        self.ips = frozenset(config.ips)
        self.ips_text = ip_list_text(config.ips)
        self.skew_ns = config.max_clock_skew_seconds * 1_000_000_000
        self.per_source.max = config.max_requests_per_second
        self.global_limit.max = config.max_requests_per_second_global

    def _reject(self, reason: str, host: str, port: int, detail: tuple[object, ...]) -> Rejection:
        self.stats[reason] += 1
        return (reason, host, port, detail)

    def screen(
        self, packet: bytes | bytearray | memoryview, size: int, host: str, port: int
    ) -> Rejection | None:
        """The size and key-id checks alone (what a random flood fails): the rejection, or
        None when ``decide`` has to look further. No clock, no rate-limit budget spent."""
        wrong = size != MSG_SIZE and (size != V0_MSG_SIZE or not self.accept_protocol_0)
        if wrong or len(packet) < size:
            self.stats[SIZE] += 1
            return (SIZE, host, port, (size, self.expected))
        key_id: bytes = _KEY_ID.unpack_from(packet)[0]  # half the cost of bytes(packet[:8])
        if key_id not in self.keys:
            self.stats[UNKNOWN_KEY] += 1
            return (UNKNOWN_KEY, host, port, (key_id,))
        return None

    def decide(
        self,
        packet: bytes | bytearray | memoryview,
        size: int,
        host: str,
        port: int,
        now_ns: int,
        now_s: float,
    ) -> Rejection | Acceptance:
        """Decide on a datagram of ``size`` bytes (``packet`` holds at least that many) from
        ``host``/``port`` at wall-clock ``now_ns`` and monotonic ``now_s``."""
        rejection = self.screen(packet, size, host, port)
        if rejection is not None:
            return rejection
        return self.decide_screened(packet, size, host, port, now_ns, now_s)

    def decide_screened(
        self,
        packet: bytes | bytearray | memoryview,
        size: int,
        host: str,
        port: int,
        now_ns: int,
        now_s: float,
    ) -> Rejection | Acceptance:
        """``decide`` for a datagram ``screen`` has passed: the receive loop screens every
        datagram first and would otherwise screen a known key id's twice, work that counts
        under a flood of known key ids (docs/performance.md, Floods in the default
        deployment)."""
        if not self.per_source.allow(host, now_s):
            return self._reject(
                RATE_SOURCE, host, port, (THE_SOURCE, self.config.max_requests_per_second)
            )
        return self._open(packet, size, host, port, now_ns, now_s)

    def _open(
        self,
        packet: bytes | bytearray | memoryview,
        size: int,
        host: str,
        port: int,
        now_ns: int,
        now_s: float,
    ) -> Rejection | Acceptance:
        """Everything after the key lookup; the caller has screened size and key id, so
        ``size`` is 94 (protocol 1) or, with ``accept_protocol_0``, 93 (protocol 0)."""
        key_id, blob = split_packet(packet[:size])
        protocol = PROTOCOL_OF_SIZE[size]
        key = self.keys[key_id]
        return self._authenticated(key, key_id, blob, protocol, host, port, now_ns, now_s)

    def _authenticated(
        self,
        key: Key,
        key_id: bytes,
        blob: bytes,
        protocol: int,
        host: str,
        port: int,
        now_ns: int,
        now_s: float,
    ) -> Rejection | Acceptance:
        try:
            plaintext = key.decrypt(blob, protocol)
        except ProtocolError:
            return self._reject(DECRYPT, host, port, (key_id,))
        max_future = now_ns + self.skew_ns
        try:
            data = ClientData.decode(plaintext, protocol)
        except ProtocolError as exc:
            return self._reject(VERSION, host, port, (str(exc),))
        counter = data.counter
        floor = self.floors.get(key_id)
        if floor is None or floor >= counter:
            return self._reject(REPLAY, host, port, (key_id, counter, _floor_text(floor)))
        if counter > max_future:
            return self._reject(FUTURE, host, port, (key_id, counter, max_future))
        if data.dst_ip not in self.ips:
            return self._reject(
                DESTINATION, host, port, (key_id, self.ips_text, ip_text(data.dst_ip))
            )
        try:
            src = peer_ip(host)
        except ValueError:  # not an IP socket: nothing to compare or forward
            return self._reject(SOURCE, host, port, (key_id, "an IP source", host))
        if data.strict and data.src_ip is not None and data.src_ip != src:
            return self._reject(SOURCE, host, port, (key_id, ip_text(data.src_ip), ip_text(src)))
        ip = src if data.src_ip is None else data.src_ip
        # Authentic and fresh. A refusal that any copy of these bytes would meet uses the
        # packet up, so it can never run later, after a reload widened the policy say
        # (docs/security.md, "Refused packets are used up"); one that depends on the source
        # address (``Refusal.final`` False) does not.
        rules = self.policy.rules.get(key_id)
        if rules is not None:
            refused = rules.refusal(data.cmd_hash, src, ip, now_ns, data.src_ip is not None)
            if refused is not None:
                if refused.final:
                    self._use_up(key_id, counter)
                detail = (key_id, qpath(rules.file_name), refused.reason)
                return self._reject(POLICY, host, port, detail)
        if not self.global_limit.allow(now_s):
            self._use_up(key_id, counter)
            return self._reject(
                RATE_GLOBAL, host, port, (self.config.max_requests_per_second_global,)
            )
        self.floors[key_id] = counter
        message = encode_commander_data(data.cmd_hash, ip)
        return Acceptance(key_id, data, ip, message, host, port, floor, protocol)

    def _use_up(self, key_id: bytes, counter: int) -> None:
        """Raise the floor for a refused packet; the server writes it later (``Pipeline``)."""
        self.floors[key_id] = counter
        self.unsaved_floors = True

    def _undo(self, accepted: Acceptance) -> None:
        if self.floors.get(accepted.key_id) == accepted.data.counter:
            self.floors[accepted.key_id] = accepted.floor

    def busy(self, accepted: Acceptance) -> Busy:
        """The hand-off had no room: the floor goes back, the client may knock again."""
        self._undo(accepted)
        return Busy(accepted.key_id, accepted.host, accepted.port, accepted.data.counter)

    def not_persisted(self, accepted: Acceptance, error: str) -> Rejection:
        """The floor could not be written: it goes back, and the packet is rejected."""
        self._undo(accepted)
        return self._reject(PERSIST, accepted.host, accepted.port, (error,))

    def persisted(self, accepted: Acceptance) -> Acceptance:
        """The floor is on disk: the packet counts as accepted."""
        self.stats["accepted"] += 1
        if accepted.protocol == PROTOCOL_0:
            self.stats[ACCEPTED_V0] += 1
        return accepted


def valid_data_line(accepted: Acceptance) -> str:
    """The line logged before an accepted counter is persisted (fail2ban and tests read it);
    a protocol-0 packet says so at the end, so an operator can see who still sends them."""
    data = accepted.data
    return (
        f"Valid data for key {hex_list(accepted.key_id)} - trying cmd {data.cmd_hash} and "
        f"counter {data.counter}|{_floor_text(accepted.floor)} with {ip_text(accepted.ip)}"
        + (" (protocol 0)" if accepted.protocol == PROTOCOL_0 else "")
    )


class Pipeline:
    """The I/O edge around a ``Decision``: clocks, the ``Valid data`` line, the floor's file.

    ``handoff_room``, when set, is asked before the floor is persisted; False turns the
    packet into a ``Busy`` result (the server sets it to its forwarder's ``has_room``).
    """

    def __init__(
        self,
        config: ServerConfig,
        keys: dict[bytes, Key],
        blocklist: Blocklist,
        decision: Decision | None = None,
        policy: Policy = EMPTY,
    ) -> None:
        self.config = config
        self.keys = keys
        self.blocklist = blocklist
        if decision is None:
            decision = Decision(config, keys, blocklist.entries, policy)
        self.decision = decision
        self.stats = self.decision.stats
        self.handoff_room: Callable[[], bool] | None = None

    def settle(self, accepted: Acceptance) -> Result:
        """Room check, log line, persist: what happens to an ``Acceptance`` before forwarding."""
        decision = self.decision
        room = self.handoff_room
        if room is not None and not room():
            return decision.busy(accepted)
        log.info(valid_data_line(accepted))
        try:
            self.blocklist.save()
        except BlocklistError as exc:
            return decision.not_persisted(accepted, str(exc))
        decision.unsaved_floors = False  # the write held every floor
        return decision.persisted(accepted)

    def save_refused_floors(self) -> str | None:
        """Write the floors that refusals raised (``Decision.unsaved_floors``); the error line
        if that failed (they stay raised in memory, and the next write tries again)."""
        decision = self.decision
        if not decision.unsaved_floors:
            return None
        try:
            self.blocklist.save()
        except BlocklistError as exc:
            return f"Could not persist the floors of refused packets: {exc}"
        decision.unsaved_floors = False
        return None

    def handle(
        self, packet: bytes | bytearray | memoryview, size: int, host: str, port: int
    ) -> Result:
        """Decide on one datagram now and settle an acceptance (the loop does both inline)."""
        result = self.decision.decide(packet, size, host, port, time.time_ns(), time.monotonic())
        if isinstance(result, Acceptance):
            return self.settle(result)
        return result
