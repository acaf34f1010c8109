"""One conf dir, our library holding a counter reservation and the released 0.14.2 client
taking turns on it, ours as one long-lived process and as forked children sharing one range
through ``counter.next`` (docs/files.md, "Counter reservation"): their server runs every
knock, so no counter of either went backwards and none was refused as future-dated.

Needs the 0.14.2 builds, like ``test_interop_v0142.py`` (deselect with ``-k 'not interop'``).
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from pathlib import Path

from e2e_harness import wait_for
from test_interop_v0142 import their_client, theirs  # noqa: F401 - the fixture

# Our library in one long-lived process (as the terminal UI is, and as Ansible's controller
# forks its workers): each line on stdin is one protocol-0 ``send`` (their server reads only
# protocol 0), "knock" in this process, "fork" in a child forked for it; its counter on stdout.
OUR_LIBRARY = """
import os, sys
from ruroco.client.sender import SendRequest, send
conf, address, key = sys.argv[1:4]
out, sys.stdout = sys.stdout, open(os.devnull, "w")
for line in sys.stdin:
    pid = os.fork() if line.strip() == "fork" else -1
    if pid > 0:
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
        continue
    try:
        [result] = send(SendRequest(address, key=key, protocol=0), conf, lock_timeout=20)
        print(result.counter, file=out, flush=True)
    finally:
        if pid == 0:
            os._exit(0)
"""


def test_interop_our_reservation_and_their_client_share_a_conf_dir(
    theirs,  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    conf = home / ".config" / "ruroco"  # their client's conf dir under HOME
    conf.mkdir(parents=True)
    # above the key's floor on their server (its start time), as `reseed` would set it
    (conf / "counter").write_bytes(time.time_ns().to_bytes(16, "big"))
    address = f"127.0.0.1:{theirs.port}"
    ours = subprocess.Popen(
        [sys.executable, "-c", OUR_LIBRARY, str(conf), address, theirs.key_text],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert ours.stdin is not None and ours.stdout is not None
    counters: list[int] = []
    stored: list[int] = []

    def our_knock(how: str = "knock") -> None:
        ours.stdin.write(f"{how}\n")  # type: ignore[union-attr]
        ours.stdin.flush()  # type: ignore[union-attr]
        counters.append(int(ours.stdout.readline()))  # type: ignore[union-attr]
        stored.append(int.from_bytes((conf / "counter").read_bytes(), "big"))

    def theirs_knock() -> int:
        their_client(home, address, theirs.key_text)
        assert len((conf / "counter").read_bytes()) == 16
        return int.from_bytes((conf / "counter").read_bytes(), "big")

    try:
        for _ in range(3):
            our_knock()  # from the second on, out of a reservation
        assert stored[-1] > counters[-1]  # the file holds the reservation's end
        after_theirs = theirs_knock()  # continues above it
        assert after_theirs == stored[-1] + 1
        our_knock()
        our_knock()  # the reservation was dropped: these start above their value
        assert counters[-2] > after_theirs
        their_client(home, address, theirs.key_text)
        our_knock()
        # Forked children of ours (Ansible workers, one knock each) and theirs take turns: the
        # children share one range through counter.next, their client continues above it.
        for _ in range(2):
            our_knock("fork")
            our_knock("fork")  # a knock in series (this one at the latest) reserves ahead
            ceiling = stored[-1]
            our_knock("fork")
            our_knock("fork")
            assert stored[-1] == ceiling > counters[-1]  # out of the range: no write
            after_theirs = theirs_knock()
            assert after_theirs == ceiling + 1
            our_knock("fork")
            assert counters[-1] > after_theirs
    finally:
        ours.stdin.close()
        ours.wait(timeout=10)
    assert all(x < y for x, y in itertools.pairwise(counters)), counters
    runs = 8 + 2 * 6
    wait_for(lambda: len(theirs.runs()) >= runs, 15, f"{runs} runs on their commander")
    assert len(theirs.runs()) == runs
    log = theirs.server.log()
    assert "Invalid counter" not in log and "Future counter" not in log, log
