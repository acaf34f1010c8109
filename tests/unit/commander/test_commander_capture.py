"""Command output capture is bounded, in memory and on disk (security review, finding 3)."""

from __future__ import annotations

import gc
import os
import re
import tempfile
import threading
from pathlib import Path

import pytest
from commander_helpers import wait_for

from ruroco.commander.commands import Command
from ruroco.commander.executor import MAX_LOGGED_OUTPUT, Executor, Outcome, Status
from ruroco.ipaddr import parse_ip

NOTE = re.compile(r" … \((\d+) more bytes not logged\)$")
RSS_BOUND = 32 * 1024 * 1024  # generous: the capture itself keeps at most 3 x 64 KiB


@pytest.fixture(autouse=True)
def private_tmpdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The old capture files lived in $TMPDIR; point it at a fresh dir to watch it."""
    capture = tmp_path / "tmpdir"
    capture.mkdir()
    monkeypatch.setenv("TMPDIR", str(capture))
    monkeypatch.setattr(tempfile, "tempdir", str(capture))
    return capture


def rss() -> int:
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1)) * 1024  # type: ignore[union-attr]


def bytes_open_under(directory: Path, ignore: set[str]) -> int:
    """Size of every file we hold open below ``directory``, unlinked ones included (the old
    capture files were unnamed, so only our descriptor table shows them)."""
    total = 0
    for fd in set(os.listdir("/proc/self/fd")) - ignore:
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith(str(directory)):
                total += os.stat(f"/proc/self/fd/{fd}").st_size
        except OSError:
            continue
    return total


def dropped(text: str) -> int:
    match = NOTE.search(text)
    assert match, f"no 'more bytes not logged' note in {text[-80:]!r}"
    return int(match.group(1))


def test_endless_output_is_capped_in_memory_and_never_on_disk(
    executor: Executor, private_tmpdir: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """(c) ``yes`` until the 2 s timeout: a fixed amount is kept, the rest counted, no disk."""
    result: dict[str, Outcome] = {}
    before = rss()
    open_before = set(os.listdir("/proc/self/fd"))  # capfd's own file is in $TMPDIR too
    thread = threading.Thread(
        target=lambda: result.setdefault(
            "o", executor.run(Command("t", "yes & yes >&2", 2), parse_ip("::1"))
        )
    )
    thread.start()
    peak_rss, on_disk = before, 0
    while thread.is_alive():
        peak_rss = max(peak_rss, rss())
        on_disk = max(on_disk, bytes_open_under(private_tmpdir, open_before))
        thread.join(0.05)
    outcome = result["o"]
    assert outcome.status is Status.TIMEOUT
    for text in (outcome.stdout, outcome.stderr):
        assert dropped(text) > 0
        kept = NOTE.sub("", text)
        assert kept.startswith("y\ny\n") and len(kept.encode()) <= MAX_LOGGED_OUTPUT
    assert on_disk == 0
    assert list(private_tmpdir.iterdir()) == []
    assert peak_rss - before < RSS_BOUND
    out, err = capfd.readouterr()
    assert len(out) + len(err) < 4 * MAX_LOGGED_OUTPUT  # escaped "\n" doubles the kept text


def test_exactly_the_bytes_beyond_the_cap_are_counted(executor: Executor) -> None:
    outcome = executor.run(
        Command("t", "head -c 200000 /dev/zero | tr '\\0' a; printf 'x%.0s' $(seq 70000) >&2", 10),
        parse_ip("::1"),
    )
    assert outcome.status is Status.SUCCESS
    assert dropped(outcome.stdout) == 200_000 - MAX_LOGGED_OUTPUT
    assert NOTE.sub("", outcome.stdout) == "a" * MAX_LOGGED_OUTPUT
    assert dropped(outcome.stderr) == 70_000 - MAX_LOGGED_OUTPUT


def test_output_just_under_the_cap_is_logged_whole(executor: Executor) -> None:
    outcome = executor.run(
        Command("t", f"head -c {MAX_LOGGED_OUTPUT} /dev/zero | tr '\\0' b", 10), parse_ip("::1")
    )
    assert outcome.stdout == "b" * MAX_LOGGED_OUTPUT


def test_missing_tmpdir_does_not_matter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Output never touches $TMPDIR any more, so a missing one is no error."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "missing"))
    outcome = Executor().run(Command("t", "echo fine", 5), parse_ip("::1"))
    assert (outcome.status, outcome.stdout) == (Status.SUCCESS, "fine")


def _pipes_and_pidfds() -> set[tuple[str, str]]:
    """The kinds of descriptor the executor opens (its pipes, pidfds), by number and target.

    Only these are compared: in the full suite, threads and garbage of earlier tests may open
    or close sockets and files of their own in this process at any moment."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except FileNotFoundError:  # the listing's own descriptor, or one closed meanwhile
            continue
        if target.startswith("pipe:") or "pidfd" in target:
            found.add((fd, target))
    return found


def test_no_descriptor_is_left_open(executor: Executor) -> None:
    gc.collect()  # close what earlier tests left to the garbage collector before counting
    before = _pipes_and_pidfds()
    executor.run(Command("t", "echo out; echo err >&2", 5), parse_ip("::1"))
    executor.run(Command("t", "sleep 10 & sleep 10", 0), parse_ip("::1"))
    executor.run(Command("t", "exec >&-; exec 2>&-; sleep 0.1", 5), parse_ip("::1"))
    executor.close()  # warm shells waiting for the next request hold their pipes until then
    assert _pipes_and_pidfds() - before == set()


def test_pipes_do_not_leak_into_concurrent_commands(executor: Executor, tmp_path: Path) -> None:
    """(f) Each sh gets 0, 1, 2 and nothing else, while other commands' pipes are open."""
    go = tmp_path / "go"
    cmd = f"while [ ! -e {go} ]; do sleep 0.01; done; cd -P /proc/self && ls fd"
    outcomes: list[Outcome] = []
    threads = [
        threading.Thread(
            target=lambda: outcomes.append(executor.run(Command("t", cmd, 30), parse_ip("::1")))
        )
        for _ in range(6)
    ]
    for t in threads:
        t.start()
    assert wait_for(lambda: len(_sh_children()) >= 6, 10)
    go.touch()
    for t in threads:
        t.join(30)
    assert [sorted(o.stdout.split()) for o in outcomes] == [["0", "1", "2"]] * 6


def _sh_children() -> list[int]:
    kids = []
    for task in os.listdir("/proc/self/task"):
        try:
            kids += Path(f"/proc/self/task/{task}/children").read_text().split()
        except OSError:
            continue
    return [int(k) for k in kids]
