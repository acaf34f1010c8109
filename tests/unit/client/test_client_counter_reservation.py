"""Counter reservation (docs/files.md, "Counter reservation" and "counter.next"): knocks in
series reserve values ahead with one write, and any process of this boot (a forked Ansible
worker, the CLI, a long-lived sender) hands them out while the counter file is exactly that
write; nobody else, no crash, no reboot and no planted ``counter.next`` can ever make a counter
go backwards.

Real files and real processes: long-lived library senders driven over a pipe, children forked
from this process (as Ansible forks its workers), the installed ``ruroco-client``, ``kill -9``,
and the original client's update (read, add one, write).
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from client_helpers import FIXTURE_KEY, Receiver, read_counter_file, run_client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ruroco.client import counter, sender
from ruroco.client.counter import (
    RESERVE_AHEAD,
    Reserved,
    boot_id,
    identity,
    next_path,
    read_counter,
    write_counter,
)
from ruroco.fs import write_atomic
from ruroco.limits import U128_MAX
from ruroco.protocol import ClientData, split_packet

# A long-lived library sender, as the terminal UI or a looping ``ruroco_send`` is: each line
# "CONF_DIR ADDRESS DELAY_MS" on stdin is one ``send``; it prints the counters. ADDRESS
# "dual:PORT" sends to 127.0.0.1 and ::1 in one send, as ``send`` does for a name that
# resolves to both families (this machine's "localhost" may not).
SENDER = """
import os, sys
from ruroco.client import sender
from ruroco.client.address import parse_socket_addr
key_file = sys.argv[1]
out, sys.stdout = sys.stdout, open(os.devnull, "w")  # the client's log lines
print("ready", file=out, flush=True)
for line in sys.stdin:
    conf, address, delay = line.split()
    if address.startswith("dual:"):
        port = address.split(":")[1]
        request = sender.SendRequest(
            f"127.0.0.1:{port}", key_file=key_file, send_delay_ms=int(delay)
        )
        dests = [parse_socket_addr(f"127.0.0.1:{port}"), parse_socket_addr(f"[::1]:{port}")]
        with sender.client_lock(conf).acquire(20):
            prepared = sender.PreparedRequest(request, conf)
            results = sender.send_to_destinations(prepared, dests)
    else:
        request = sender.SendRequest(address, key_file=key_file, send_delay_ms=int(delay))
        results = sender.send(request, conf, lock_timeout=20)
    print(" ".join(str(r.counter) for r in results), file=out, flush=True)
"""


class LibrarySender:
    """One sender process; ``send`` returns the counters of one ``send`` call."""

    def __init__(self, key_file: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SENDER, str(key_file)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self._line() == "ready"

    def _line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, "the sender process died"
        return line.strip()

    def request(self, conf_dir: Path, address: str = "127.0.0.1:9", delay_ms: int = 0) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{conf_dir} {address} {delay_ms}\n")
        self.proc.stdin.flush()

    def send(self, conf_dir: Path, address: str = "127.0.0.1:9") -> list[int]:
        self.request(conf_dir, address)
        return [int(v) for v in self._line().split()]

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def shared_key(tmp_path: Path) -> Path:
    path = tmp_path / "shared.key"
    path.write_text(FIXTURE_KEY)
    return path


@pytest.fixture
def senders(shared_key: Path) -> Iterator[tuple[LibrarySender, LibrarySender]]:
    pair = (LibrarySender(shared_key), LibrarySender(shared_key))
    try:
        yield pair
    finally:
        for s in pair:
            s.close()


def _write_in_place(path: str, value: int) -> None:
    """A writer that keeps the inode (and, within one clock tick, the times)."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, (value + 5).to_bytes(16, "big"), 0)
    finally:
        os.close(fd)


def _original_update(path: str) -> int:
    """What the original client does per packet: read, add one, write atomically."""
    value = read_counter(path)
    assert value is not None
    write_counter(path, value + 1)
    return value + 1


def fork_knock(conf_dir: Path, key_file: Path, address: str = "127.0.0.1:9") -> list[int]:
    """One ``send`` in a child forked from this process (which has imported the client), as
    an Ansible worker runs ``ruroco_send``; the counters it used."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: one knock, no cleanup handlers of the parent
        code = 1
        try:
            os.close(read_end)
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - the client's log lines
            request = sender.SendRequest(address, key_file=str(key_file))
            results = sender.send(request, conf_dir, lock_timeout=20)
            os.write(write_end, " ".join(str(r.counter) for r in results).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    with os.fdopen(read_end) as fh:
        return [int(v) for v in fh.read().split()]


def cli_knock(conf_dir: Path, key_file: Path, address: str = "127.0.0.1:9") -> None:
    result = run_client("send", "-a", address, "-k", str(key_file), conf_dir=conf_dir)
    assert result.returncode == 0, result.stderr


def put_record(path: str, last: int, boot: bytes | None = None, ceiling: int | None = None) -> None:
    """Write a well-formed ``counter.next`` for the counter file at ``path`` as it is now
    (``boot``/``ceiling`` to make it claim another boot or another value of the file)."""
    value = read_counter(path)
    assert value is not None
    this_boot = boot_id()
    assert this_boot is not None
    key = counter._record_key(
        this_boot if boot is None else boot,
        identity(os.stat(path)),
        value if ceiling is None else ceiling,
    )
    Path(next_path(path)).write_bytes(counter._record(key, last))


def open_range(path: str) -> int:
    """Knock twice (the second reserves ahead); the counter file's value, the range's end."""
    Reserved(path).next()
    Reserved(path).next()
    ceiling = read_counter(path)
    assert ceiling is not None
    return ceiling


# --- in one process ------------------------------------------------------------------------


def test_first_knock_writes_exactly_what_it_needs(tmp_path: Path) -> None:
    """A process's first knock leaves the file as the original would: its last value."""
    path = str(tmp_path / "counter")
    write_counter(path, 1000)
    assert Reserved(path).next() == 1001 == read_counter(path)
    first = Reserved(path)
    assert (first.next(2), first.next(1)) == (1002, 1003)  # a second knock: reserves ahead
    assert read_counter(path) == 1001 + RESERVE_AHEAD


def test_later_knocks_hand_out_without_writing(tmp_path: Path) -> None:
    path = str(tmp_path / "counter")
    write_counter(path, 5)
    Reserved(path).next()
    ceiling_values = [Reserved(path).next() for _ in range(3)]
    assert ceiling_values == [7, 8, 9]
    inode, content = os.stat(path).st_ino, Path(path).read_bytes()
    more = [Reserved(path).next() for _ in range(RESERVE_AHEAD - 3)]
    assert more == list(range(10, 7 + RESERVE_AHEAD))
    assert os.stat(path).st_ino == inode and Path(path).read_bytes() == content  # no write
    assert len(content) == 16 and int.from_bytes(content, "big") == 6 + RESERVE_AHEAD
    assert Reserved(path).next() == 7 + RESERVE_AHEAD  # used up: the next write reserves again
    assert read_counter(path) == 6 + 2 * RESERVE_AHEAD
    assert sorted(os.listdir(tmp_path)) == ["counter", "counter.next"]  # and no temp file
    assert os.stat(next_path(path)).st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    "writer",
    [
        pytest.param(lambda p, v: write_counter(p, v + 1), id="original-client-adds-one"),
        pytest.param(lambda p, v: write_counter(p, v - 500), id="reseed-lower"),
        pytest.param(lambda p, v: write_atomic(p, v.to_bytes(16, "big")), id="same-value-new-file"),
        pytest.param(_write_in_place, id="in-place-higher"),
    ],
)
def test_reservation_is_dropped_when_someone_else_wrote(tmp_path: Path, writer) -> None:
    path = str(tmp_path / "counter")
    write_counter(path, 10_000)
    Reserved(path).next()
    Reserved(path).next()  # reserved up to 10_001 + RESERVE_AHEAD
    ceiling = read_counter(path)
    assert ceiling is not None
    writer(path, ceiling)
    now = read_counter(path)
    assert now is not None
    assert Reserved(path).next() == now + 1  # from the file, never from the stale range
    assert read_counter(path) == now + 1  # exactly what it used, as after any foreign write
    assert Reserved(path).next() == now + 2  # in series again: reserves ahead
    assert read_counter(path) == now + 1 + RESERVE_AHEAD


def test_overflow_near_the_top_reserves_what_is_left(tmp_path: Path) -> None:
    path = str(tmp_path / "counter")
    write_counter(path, U128_MAX - 3)
    Reserved(path).next()
    assert [Reserved(path).next(), Reserved(path).next()] == [U128_MAX - 1, U128_MAX]
    assert read_counter(path) == U128_MAX
    with pytest.raises(counter.CounterError, match="counter overflow"):
        Reserved(path).next()


def test_forked_child_continues_the_parents_range(tmp_path: Path) -> None:
    """Parent and child share one range through ``counter.next``: neither writes the counter
    file, and every value is above the one before, whoever took it."""
    path = str(tmp_path / "counter")
    write_counter(path, 1)
    ceiling = open_range(path)
    before = os.stat(path)
    parent_first = Reserved(path).next()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.write(write_end, str(Reserved(path).next()).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    with os.fdopen(read_end) as fh:
        child = int(fh.read())
    assert child == parent_first + 1
    assert Reserved(path).next() == child + 1
    assert identity(os.stat(path)) == identity(before) and read_counter(path) == ceiling


# --- counter.next: what is never trusted --------------------------------------------------


def test_simulated_reboot_starts_above_the_durable_ceiling(tmp_path: Path) -> None:
    """After a power loss the page cache is gone and the boot id is new: a record of another
    boot, even one that claims values are left, is ignored, and the next value is above the
    ceiling the counter file holds durably."""
    path = str(tmp_path / "counter")
    write_counter(path, 10_000)
    ceiling = open_range(path)
    put_record(path, 10_002, boot=b"00000000-0000-4000-8000-000000000000")  # 998 "left"
    assert Reserved(path).next() == ceiling + 1
    assert read_counter(path) == ceiling + 1  # a fresh, exact reservation


def test_a_process_of_a_later_boot_ignores_this_boots_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "counter")
    write_counter(path, 10_000)
    ceiling = open_range(path)
    monkeypatch.setattr(counter, "_boot_id", b"11111111-1111-4111-8111-111111111111")
    assert Reserved(path).next() == ceiling + 1


def test_a_record_above_the_ceiling_is_never_used(tmp_path: Path) -> None:
    """``last`` above the file's value would hand out values the durable ceiling does not
    cover: the record is invalid, and the next value comes from the file."""
    path = str(tmp_path / "counter")
    write_counter(path, 10_000)
    ceiling = open_range(path)
    put_record(path, ceiling + 5)
    assert Reserved(path).next() == ceiling + 1
    assert read_counter(path) == ceiling + 1


def test_a_record_of_another_value_of_the_file_is_ignored(tmp_path: Path) -> None:
    path = str(tmp_path / "counter")
    write_counter(path, 10_000)
    ceiling = open_range(path)
    put_record(path, ceiling - 900, ceiling=ceiling + 1000)  # claims a larger range
    assert Reserved(path).next() == ceiling + 1


def _garble_empty(data: bytes) -> bytes:
    return b""


@pytest.mark.parametrize(
    "garble",
    [
        pytest.param(_garble_empty, id="empty"),
        pytest.param(lambda d: d[:-1], id="no-newline"),
        pytest.param(lambda d: d[: len(d) // 2], id="torn-half"),
        pytest.param(lambda d: d + b"0", id="trailing-byte"),
        pytest.param(lambda d: d.replace(b" 000", b" 001", 1), id="bad-checksum"),
        pytest.param(lambda d: os.urandom(len(d)), id="random-bytes"),
        pytest.param(lambda d: b"\xff" * 4096, id="large"),
    ],
)
def test_a_garbled_record_means_no_reservation(tmp_path: Path, garble) -> None:
    path = str(tmp_path / "counter")
    write_counter(path, 10_000)
    ceiling = open_range(path)
    record = Path(next_path(path))
    record.write_bytes(garble(record.read_bytes()))
    assert Reserved(path).next() == ceiling + 1  # never lower, never an error
    assert read_counter(path) == ceiling + 1
    assert Reserved(path).next() == ceiling + 2  # the record is whole again: in series
    assert read_counter(path) == ceiling + 1 + RESERVE_AHEAD


def test_a_symlink_planted_as_the_record_is_refused(tmp_path: Path) -> None:
    """Neither read nor written through: a record behind the link claiming a lower ``last``
    is not used, the link's target is untouched, and no knock writes it."""
    path = str(tmp_path / "counter")
    write_counter(path, 10_000)
    ceiling = open_range(path)
    target = tmp_path / "elsewhere"
    os.rename(next_path(path), target)
    put_record(path, 10_005)  # a valid record that would hand out 10_006 again
    os.replace(next_path(path), target)
    planted = target.read_bytes()
    os.symlink(target, next_path(path))
    values = [Reserved(path).next() for _ in range(3)]
    assert values == [ceiling + 1, ceiling + 2, ceiling + 3]  # each with its own write
    assert read_counter(path) == ceiling + 3
    assert target.read_bytes() == planted and os.path.islink(next_path(path))
    dangling = tmp_path / "dangling-target"
    os.unlink(next_path(path))
    os.symlink(dangling, next_path(path))
    assert Reserved(path).next() == ceiling + 4
    assert not dangling.exists()  # O_CREAT did not follow the link


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the file to another user")
def test_a_record_of_another_user_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "counter")
    write_counter(path, 10_000)
    ceiling = open_range(path)
    put_record(path, 10_005)
    os.chown(next_path(path), 65534, 65534)
    planted = Path(next_path(path)).read_bytes()
    assert [Reserved(path).next(), Reserved(path).next()] == [ceiling + 1, ceiling + 2]
    assert Path(next_path(path)).read_bytes() == planted  # never written either


def test_a_record_others_may_write_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "counter")
    write_counter(path, 10_000)
    ceiling = open_range(path)
    put_record(path, 10_005)
    os.chmod(next_path(path), 0o666)
    assert Reserved(path).next() == ceiling + 1


def test_a_fifo_planted_as_the_record_neither_blocks_nor_counts(tmp_path: Path) -> None:
    path = str(tmp_path / "counter")
    write_counter(path, 10_000)
    ceiling = open_range(path)
    os.unlink(next_path(path))
    os.mkfifo(next_path(path), 0o600)
    assert Reserved(path).next() == ceiling + 1


def test_without_a_boot_id_every_knock_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No procfs: no range is shared (a record could outlive a crash unnoticed)."""
    monkeypatch.setattr(counter, "_boot_id", None)
    path = str(tmp_path / "counter")
    write_counter(path, 5)
    assert [Reserved(path).next() for _ in range(3)] == [6, 7, 8]
    assert read_counter(path) == 8
    assert not os.path.exists(next_path(path))


def test_the_cli_takes_from_an_open_range_but_opens_none(conf_dir: Path, shared_key: Path) -> None:
    path = str(conf_dir / "counter")
    write_counter(path, 10_000)
    rx = Receiver("127.0.0.1")
    try:
        for _ in range(2):  # CLI after CLI: each leaves the file at its value, as the original
            cli_knock(conf_dir, shared_key, rx.address)
            assert rx.receive_data().counter == read_counter(path)
        ceiling = open_range(path)  # a library knock in series opens a range
        before = os.stat(path)
        cli_knock(conf_dir, shared_key, rx.address)
        assert rx.receive_data().counter == 10_005  # after 10_001, 10_002 (CLI), 10_003, 10_004
    finally:
        rx.close()
    assert ceiling == 10_002 + RESERVE_AHEAD
    assert identity(os.stat(path)) == identity(before)  # no write: the value came from the range


# --- several processes -----------------------------------------------------------------------


def test_two_library_processes_and_the_cli_interleaved(
    conf_dir: Path, shared_key: Path, senders: tuple[LibrarySender, LibrarySender]
) -> None:
    """Every datagram, whoever sent it, carries a counter above every earlier one."""
    a, b = senders
    rx = Receiver("127.0.0.1")
    try:
        for round_ in range(4):
            a.send(conf_dir, rx.address)
            a.send(conf_dir, rx.address)
            b.send(conf_dir, rx.address)
            if round_ % 2:
                result = run_client(
                    "send", "-a", rx.address, "-k", str(shared_key), conf_dir=conf_dir
                )
                assert result.returncode == 0, result.stderr
            a.send(conf_dir, rx.address)
        arrived = [rx.receive_data().counter for _ in range(4 * 4 + 2)]
        assert rx.nothing_pending()
    finally:
        rx.close()
    assert all(x < y for x, y in itertools.pairwise(arrived)), arrived
    assert read_counter_file(conf_dir) >= arrived[-1]


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    ops=st.lists(
        st.sampled_from(["a", "b", "a2", "fork", "fork", "cli", "original", "reboot"]),
        min_size=1,
        max_size=16,
    )
)
def test_any_interleaving_only_ever_rises(
    tmp_path: Path,
    shared_key: Path,
    senders: tuple[LibrarySender, LibrarySender],
    ops: list[str],
) -> None:
    """Two long-lived library processes (``a2``: two destinations in one send), children
    forked from this process (Ansible workers), ``ruroco-client send``, the original's update
    and a simulated reboot (``counter.next`` of another boot), in any order: each value is
    above every value handed out before it, and the file never below any."""
    a, b = senders
    conf = Path(os.path.join(tmp_path, f"conf-{time.monotonic_ns()}"))  # fresh per example
    conf.mkdir()
    path = str(conf / "counter")
    write_counter(path, 10**18)
    rx = Receiver("127.0.0.1")
    handed: list[int] = []
    try:
        for op in ops:
            if op == "a":
                handed += a.send(conf)
            elif op == "a2":
                handed += a.send(conf, "dual:9")
            elif op == "b":
                handed += b.send(conf)
            elif op == "fork":
                handed += fork_knock(conf, shared_key)
            elif op == "cli":
                cli_knock(conf, shared_key, rx.address)
                handed.append(rx.receive_data().counter)
            elif op == "original":
                handed.append(_original_update(path))
            elif os.path.exists(next_path(path)):  # reboot: the record is of another boot
                data = Path(next_path(path)).read_bytes()
                last = int(data.split()[-2]) if len(data.split()) > 2 else 0
                put_record(path, last, boot=b"00000000-0000-4000-8000-000000000000")
            stored = read_counter(path)
            assert stored is not None and stored >= handed[-1] if handed else True
    finally:
        rx.close()
    assert all(x < y for x, y in itertools.pairwise(handed)), (ops, handed)


def test_many_forked_children_at_once_share_one_range(conf_dir: Path, shared_key: Path) -> None:
    """Two batches of ten workers forked at once, as Ansible's forks knock many hosts, and a
    CLI knock in between: they queue for the lock, and the datagrams, in the order they were
    sent, carry strictly rising counters; only the first two knocks write the counter file."""
    path = str(conf_dir / "counter")
    write_counter(path, 10**18)
    rx = Receiver("127.0.0.1")
    try:
        pids: list[int] = []
        codes: list[int] = []
        for i in range(20):
            if i == 10:  # the CLI fails at once if the lock is taken: between two batches
                codes += [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]
                pids = []
                cli_knock(conf_dir, shared_key, rx.address)
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - the client's log lines
                    request = sender.SendRequest(rx.address, key_file=str(shared_key))
                    sender.send(request, conf_dir, lock_timeout=20)
                    code = 0
                finally:
                    os._exit(code)
            pids.append(pid)
        codes += [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]
        arrived = _arrived(rx)
    finally:
        rx.close()
    assert codes == [0] * 20
    assert len(arrived) == 21
    # in the order sent, and dense: nothing dropped the range, nobody took a value twice
    assert arrived == list(range(10**18 + 1, 10**18 + 22)), arrived
    assert read_counter(path) == 10**18 + 1 + RESERVE_AHEAD  # the first wrote, the second reserved


def test_kill_9_with_a_reservation_then_the_next_sender_is_above_it(
    conf_dir: Path, shared_key: Path, senders: tuple[LibrarySender, LibrarySender]
) -> None:
    """The range belongs to the conf dir, not to the process that reserved it: after a
    ``kill -9`` the others continue it, above everything the killed one handed out."""
    a, b = senders
    handed = a.send(conf_dir) + a.send(conf_dir) + a.send(conf_dir)  # a reserved ahead
    ceiling = read_counter_file(conf_dir)
    assert ceiling > handed[-1]  # reserved ahead, persisted before any of it was used
    a.kill()
    after = b.send(conf_dir) + b.send(conf_dir) + fork_knock(conf_dir, shared_key)
    assert after == [handed[-1] + 1, handed[-1] + 2, handed[-1] + 3]
    assert read_counter_file(conf_dir) == ceiling  # no write
    _original_update(str(conf_dir / "counter"))  # the original: above the whole range
    result = run_client("send", "-a", "127.0.0.1:9", "-k", str(shared_key), conf_dir=conf_dir)
    assert result.returncode == 0, result.stderr
    assert read_counter_file(conf_dir) == ceiling + 2


def test_kill_9_between_two_destinations(
    conf_dir: Path, senders: tuple[LibrarySender, LibrarySender]
) -> None:
    """Killed while it holds the lock between its two datagrams: the next sender starts above
    the value sent."""
    a, b = senders
    rx = Receiver("127.0.0.1")
    try:
        a.send(conf_dir)
        a.request(conf_dir, f"dual:{rx.port}", delay_ms=5000)  # 127.0.0.1, then ::1
        sent = rx.receive_data().counter
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait(timeout=10)
    finally:
        rx.close()
    [after] = b.send(conf_dir)
    assert after == sent + 1  # the second value was never taken: each is recorded when taken


def _arrived(rx: Receiver) -> list[int]:
    """The counters of every datagram waiting at ``rx``, in order."""
    out = []
    rx.sock.setblocking(False)
    try:
        while True:
            _key_id, blob = split_packet(rx.sock.recv(4096))
            out.append(ClientData.decode(rx.key.decrypt(blob)).counter)
    except BlockingIOError:
        return out


def test_kill_9_at_any_point_of_forked_knocks(conf_dir: Path, shared_key: Path) -> None:
    """Forked knocks killed at random moments (mid-write of ``counter.next`` or of the counter
    file, with the lock held, before or after the datagram): whatever arrived rises strictly,
    and the knocks after them, a forked one, the original's and the CLI's, are above it all."""
    path = str(conf_dir / "counter")
    write_counter(path, 10**18)
    rx = Receiver("127.0.0.1")
    rng = random.Random(1234)
    try:
        handed = fork_knock(conf_dir, shared_key, rx.address)
        assert _arrived(rx) == handed
        for i in range(60):
            if i % 20 == 10:  # a foreign write now and then drops the shared range
                handed.append(_original_update(path))
            pid = os.fork()
            if pid == 0:
                try:
                    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - the child's log lines
                    request = sender.SendRequest(rx.address, key_file=str(shared_key))
                    sender.send(request, conf_dir, lock_timeout=20)
                finally:
                    os._exit(0)
            time.sleep(rng.uniform(0, 0.008))
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            handed += _arrived(rx)
        handed += fork_knock(conf_dir, shared_key, rx.address)
        handed.append(_original_update(path))
        cli_knock(conf_dir, shared_key, rx.address)
        time.sleep(0.1)
        handed += _arrived(rx)[1:]  # the first is fork_knock's, the last the CLI's
    finally:
        rx.close()
    assert all(x < y for x, y in itertools.pairwise(handed)), handed
    assert read_counter(path) == handed[-1]
