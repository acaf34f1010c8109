"""The plain-function client API: ``send``, ``gen`` and ``reseed`` (files: docs/files.md).

Used by the CLI and by the Ansible action plugin, whose forks run in parallel on one
controller: ``send`` holds the conf dir's client lock for the whole exchange (optionally
waiting for it), so two senders can never load the same counter and reuse a value. Knocks in
series on one conf dir (the terminal UI, ``ruroco_send``'s forked workers) take their counters
from a reservation shared between processes and skip the fsync'd write; ``ruroco-client
send`` takes from one it finds open (docs/files.md, "Counter reservation").
"""

from __future__ import annotations

import _socket as socket  # see ruroco.ipaddr: socket.py's imports cost ~8 ms of cold start
import os
import sys
import time

from ruroco import log
from ruroco.client.address import Destination, destinations, ensure_port
from ruroco.client.confdir import ensure_conf_dir, resolve_conf_dir
from ruroco.client.counter import Reserved, boot_id, counter_path
from ruroco.client.counter import reseed as reseed_file
from ruroco.client.request import SendRequest, SendResult
from ruroco.errors import RurocoError, error_chain, qpath
from ruroco.ipaddr import parse_ip
from ruroco.lock import InstanceLock
from ruroco.protocol import (
    ClientData,
    Key,
    build_packet,
    check_protocol,
    command_hash,
    generate_key,
    parse_key,
)
from ruroco.protocol import warm_up as _warm_up_cipher

TYPE_CHECKING = False  # typing itself would cost the cold start ~10 ms
if TYPE_CHECKING:
    from typing import TextIO

__all__ = [
    "PreparedRequest",
    "SendRequest",
    "SendResult",
    "check",
    "gen",
    "reseed",
    "send",
    "warm_up",
]

LOCK_FILE = "client.lock"
MAX_KEY_FILE_SIZE = 64 * 1024


# -d takes any u64 like the original; time.sleep overflows above ~2**63 ns, so a delay that
# large is clamped to ~68 years rather than crashing with a traceback.
MAX_DELAY_MS = 2**31 * 1000


def delay_seconds(delay_ms: int) -> float:
    """The pause between destinations, clamped to what ``time.sleep`` accepts."""
    return min(delay_ms, MAX_DELAY_MS) / 1000


def warm_up() -> None:
    """Do now what a process's first knock would do once: build OpenSSL's first cipher (~1 ms
    here) and read the boot id. For a process that forks workers which knock, as Ansible's
    controller does for ``ruroco_send``: each worker inherits both instead of paying them
    inside its knock (docs/performance.md, "The client")."""
    _warm_up_cipher()
    boot_id()


def _conf_dir(conf_dir: str | os.PathLike[str] | None) -> str:
    return resolve_conf_dir() if conf_dir is None else ensure_conf_dir(conf_dir)


def client_lock(conf_dir: str) -> InstanceLock:
    """The lock that serializes every client action on one conf dir (docs/files.md, client.lock)."""
    return InstanceLock(os.path.join(conf_dir, LOCK_FILE), "Client")


def read_key_text(request: SendRequest) -> str:
    if request.key is not None:
        if request.key_file is not None:
            raise RurocoError("Give either a key file or a key, not both")
        return request.key
    if request.key_file is None:
        raise RurocoError("A key file is required")
    try:
        with open(request.key_file, "rb") as fh:
            raw = fh.read(MAX_KEY_FILE_SIZE + 1)
        if len(raw) > MAX_KEY_FILE_SIZE:  # e.g. -k /dev/zero: fail instead of eating memory
            raise ValueError(f"larger than {MAX_KEY_FILE_SIZE} bytes, not a key file")
        return raw.decode("utf-8")
    except (OSError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        raise RurocoError(f"Could not read key file {qpath(request.key_file)}") from exc


def _address_and_claim(request: SendRequest) -> tuple[str, bytes | None]:
    """The address with its port and the claimed source IP; the protocol checked too, so a
    bad value uses up nothing."""
    address = ensure_port(request.address)
    src_ip: bytes | None = None
    if request.ip is not None:
        try:
            src_ip = parse_ip(request.ip)
        except ValueError as exc:
            raise RurocoError(f"Invalid --ip value {qpath(request.ip)}") from exc
    check_protocol(request.protocol)
    return address, src_ip


def check(request: SendRequest) -> list[str]:
    """What ``send`` would refuse, with the same errors, without the lock or the counter: a
    dry run (``ruroco_send`` in check mode). Returns the destinations it would send to."""
    address, _ = _address_and_claim(request)
    parse_key(read_key_text(request), (request.protocol,)).wipe()
    return [d.text for d in destinations(address, request.ipv4, request.ipv6)]


class PreparedRequest:
    """A validated request: address, source IP, key and loaded counter, checked in that order.

    The order is the original's, so the same bad input yields the same error, and a missing
    or invalid key is reported before the counter file is ever created.
    """

    __slots__ = ("address", "counter", "key", "request", "src_ip")

    def __init__(
        self,
        request: SendRequest,
        conf_dir: str,
        reserve_ahead: bool = True,
        key_text: str | None = None,
    ) -> None:
        self.request = request
        self.address, self.src_ip = _address_and_claim(request)
        key_text = read_key_text(request) if key_text is None else key_text
        path = counter_path(conf_dir)
        log.info(f"Loading counter from {qpath(path)} ...")
        self.key: Key = parse_key(key_text, (request.protocol,))
        del key_text
        try:
            self.counter = Reserved(path, time.time_ns(), reserve_ahead)
        except BaseException:
            self.key.wipe()
            raise


def _crypto_version() -> str:
    import cryptography

    return f"cryptography {cryptography.__version__}"


def send_datagram(dest: Destination, packet: bytes) -> str:
    """Send one datagram from a fresh socket; returns the local address it left from."""
    try:
        sock = socket.socket(dest.family, socket.SOCK_DGRAM)
        try:
            sock.bind(("0.0.0.0", 0) if dest.is_ipv4 else ("::", 0))
            sock.connect(dest.sockaddr())
            sock.send(packet)
            local = sock.getsockname()
        finally:
            sock.close()
    except OSError as exc:
        raise RurocoError(f"Could not connect/send data to {dest.text}") from exc
    return f"{local[0]}:{local[1]}" if dest.is_ipv4 else f"[{local[0]}]:{local[1]}"


def send_to_destinations(prepared: PreparedRequest, dests: list[Destination]) -> list[SendResult]:
    """Try every destination in order; fail only if none of them took the datagram."""
    request = prepared.request
    cmd_hash = command_hash(request.command)
    results: list[SendResult] = []
    failures: list[str] = []
    for index, dest in enumerate(dests):
        if index and request.send_delay_ms > 0:
            time.sleep(delay_seconds(request.send_delay_ms))
        value = prepared.counter.last
        try:
            value = prepared.counter.next(len(dests) - index)
            log.info(f"Connecting to {dest.text}...")
            data = ClientData(cmd_hash, value, not request.permissive, prepared.src_ip, dest.ip)
            local = send_datagram(dest, build_packet(prepared.key, data, None, request.protocol))
            log.info(f"Sent command {request.command} from {local} to udp://{dest.text}")
            results.append(SendResult(dest.text, value, None))
        except RurocoError as exc:
            reason = ": ".join(error_chain(exc))
            log.error(f"Could not send to {dest.text}: {reason}")
            failures.append(f"{dest.text}: {reason}")
            results.append(SendResult(dest.text, value, reason))
    if len(failures) < len(dests):
        return results
    raise RurocoError(f"Could not send to any destination: {'; '.join(failures)}")


def send_locked(
    request: SendRequest, conf_dir: str, reserve_ahead: bool = True, key_text: str | None = None
) -> list[SendResult]:
    """``send`` for a caller that already holds the client lock of ``conf_dir`` (and may
    have read the key already: ``key_text``)."""
    prepared = PreparedRequest(request, conf_dir, reserve_ahead, key_text)
    try:
        log.info(f"Connecting to udp://{prepared.address}, using {_crypto_version()} ...")
        dests = destinations(prepared.address, request.ipv4, request.ipv6)
        log.info(f"Found addresses [{', '.join(d.text for d in dests)}] for {prepared.address}")
        return send_to_destinations(prepared, dests)
    finally:
        prepared.key.wipe()


def send(
    request: SendRequest,
    conf_dir: str | os.PathLike[str] | None = None,
    lock_timeout: float | None = None,
    reserve_ahead: bool = True,
) -> list[SendResult]:
    """Send ``request`` under the client lock; ``lock_timeout`` None fails at once if held.

    ``reserve_ahead`` False (``ruroco-client send``, one knock per process): take the value
    from a reservation another knock left open, but never reserve ahead, so a row of such
    knocks leaves the file at the last value used, as the original does (docs/files.md,
    "Counter reservation")."""
    directory = _conf_dir(conf_dir)
    _address_and_claim(request)  # the original's order of errors: the address before the key
    # The key is read before the lock: a slow source (``-k <(gpg -d …)`` at its passphrase
    # prompt, a FIFO) must not hold the lock that every other knock of the conf dir needs.
    key_text = read_key_text(request)
    with client_lock(directory).acquire(lock_timeout):
        return send_locked(request, directory, reserve_ahead, key_text)


def gen(conf_dir: str | os.PathLike[str] | None = None, out: TextIO | None = None) -> str:
    """Write a new key to stdout with no newline (so ``gen > user.key`` is exactly the key)."""
    directory = _conf_dir(conf_dir)
    with client_lock(directory).acquire():
        key = generate_key()
        stream = sys.stdout if out is None else out
        stream.write(key)
        stream.flush()
        return key


def reseed(conf_dir: str | os.PathLike[str] | None = None, value: int | None = None) -> int:
    """Overwrite the counter with the current time in ns (or ``value``) under the lock."""
    directory = _conf_dir(conf_dir)
    with client_lock(directory).acquire():
        new = reseed_file(counter_path(directory), value)
        log.info("Counter reseeded")
        return new
