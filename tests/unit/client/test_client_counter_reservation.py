"""Counter reservation (docs/files.md, "Counter reservation"): a process that knocks again
reserves values ahead with one write and hands them out while the file still holds the end of
its range; nobody else, and no crash, can ever make a counter go backwards.

Real files and real processes: long-lived library senders driven over a pipe, the installed
``ruroco-client``, ``kill -9``, and the original client's update (read, add one, write).
"""

from __future__ import annotations

import itertools
import os
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

from ruroco.client import counter
from ruroco.client.counter import RESERVE_AHEAD, Reserved, read_counter, write_counter
from ruroco.fs import write_atomic
from ruroco.limits import U128_MAX

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


@pytest.fixture(autouse=True)
def fresh_process_state() -> Iterator[None]:
    """Each test starts as a process that has never knocked (the pytest process is reused)."""
    counter.forget_reservations()
    yield
    counter.forget_reservations()


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
    assert sorted(os.listdir(tmp_path)) == ["counter"]  # the format and the files: unchanged


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
    assert read_counter(path) == now + RESERVE_AHEAD


def test_overflow_near_the_top_reserves_what_is_left(tmp_path: Path) -> None:
    path = str(tmp_path / "counter")
    write_counter(path, U128_MAX - 3)
    Reserved(path).next()
    assert [Reserved(path).next(), Reserved(path).next()] == [U128_MAX - 1, U128_MAX]
    assert read_counter(path) == U128_MAX
    with pytest.raises(counter.CounterError, match="counter overflow"):
        Reserved(path).next()


def test_forked_child_never_reuses_the_parents_reservation(tmp_path: Path) -> None:
    path = str(tmp_path / "counter")
    write_counter(path, 1)
    Reserved(path).next()
    parent_first = Reserved(path).next()  # the parent now holds a reservation
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
    assert child == parent_first + RESERVE_AHEAD  # above the parent's whole range
    assert Reserved(path).next() > child  # and the parent's range is dropped


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
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(ops=st.lists(st.sampled_from(["a", "b", "original", "a2"]), min_size=1, max_size=14))
def test_any_interleaving_only_ever_rises(
    tmp_path: Path, senders: tuple[LibrarySender, LibrarySender], ops: list[str]
) -> None:
    """Two library processes (``a2``: two destinations in one send) and the original's
    update, in any order: each value is above every value handed out before it."""
    a, b = senders
    conf = Path(os.path.join(tmp_path, f"conf-{time.monotonic_ns()}"))  # fresh per example
    conf.mkdir()
    path = str(conf / "counter")
    write_counter(path, 10**18)
    handed: list[int] = []
    for op in ops:
        if op == "a":
            handed += a.send(conf)
        elif op == "a2":
            handed += a.send(conf, "dual:9")
        elif op == "b":
            handed += b.send(conf)
        else:
            handed.append(_original_update(path))
        stored = read_counter(path)
        assert stored is not None and stored >= handed[-1]
    assert all(x < y for x, y in itertools.pairwise(handed)), (ops, handed)


def test_kill_9_with_a_reservation_then_the_next_sender_is_above_it(
    conf_dir: Path, shared_key: Path, senders: tuple[LibrarySender, LibrarySender]
) -> None:
    a, b = senders
    handed = a.send(conf_dir) + a.send(conf_dir) + a.send(conf_dir)  # a holds a reservation
    ceiling = read_counter_file(conf_dir)
    assert ceiling > handed[-1]  # reserved ahead, persisted before any of it was used
    a.kill()
    after = b.send(conf_dir) + b.send(conf_dir)
    assert min(after) > ceiling
    result = run_client("send", "-a", "127.0.0.1:9", "-k", str(shared_key), conf_dir=conf_dir)
    assert result.returncode == 0, result.stderr
    assert read_counter_file(conf_dir) > max(after)


def test_kill_9_between_two_destinations(
    conf_dir: Path, senders: tuple[LibrarySender, LibrarySender]
) -> None:
    """Killed while it holds the lock between its two datagrams: the next sender starts above
    both values, the sent and the never sent one."""
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
    assert after > sent + 1
