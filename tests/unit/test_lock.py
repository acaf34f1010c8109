"""flock instance lock (docs/files.md, Locks): held across processes, released on exit."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ruroco.errors import RurocoError
from ruroco.lock import InstanceLock

HOLD = """
import sys, time
from ruroco.lock import InstanceLock
lock = InstanceLock(sys.argv[1], "Client").acquire()
print("held", flush=True)
sys.stdin.readline()
"""


def test_creates_file_and_reacquires_after_release(tmp_path: Path) -> None:
    path = tmp_path / "client.lock"
    path.write_text("12345\n")  # old PID-file content is irrelevant
    lock = InstanceLock(path, "Client").acquire()
    lock.release()
    with InstanceLock(path, "Client"):
        assert path.exists()
    assert path.exists()


def test_second_holder_fails_fast(tmp_path: Path) -> None:
    path = tmp_path / "client.lock"
    with InstanceLock(path, "Client"), pytest.raises(RurocoError, match="Client already running"):
        InstanceLock(path, "Client").acquire()


def test_other_thread_cannot_take_it(tmp_path: Path) -> None:
    path = tmp_path / "c.lock"
    errors: list[str] = []
    with InstanceLock(path, "Commander"):

        def grab() -> None:
            try:
                InstanceLock(path, "Commander").acquire()
            except RurocoError as exc:
                errors.append(str(exc))

        t = threading.Thread(target=grab)
        t.start()
        t.join()
    assert errors and errors[0].startswith("Commander already running (lock at ")


def test_missing_parent(tmp_path: Path) -> None:
    with pytest.raises(RurocoError, match="Lock file unavailable at"):
        InstanceLock(tmp_path / "nope" / "x.lock", "Client").acquire()


def test_waits_for_another_process_with_timeout(tmp_path: Path) -> None:
    path = tmp_path / "client.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(RurocoError, match="already running"):
            InstanceLock(path, "Client").acquire(timeout=0.05)
        assert holder.stdin is not None
        holder.stdin.write("go\n")
        holder.stdin.flush()
        lock = InstanceLock(path, "Client").acquire(timeout=10)  # granted once the holder exits
        lock.release()
    finally:
        holder.kill()
        holder.wait()
