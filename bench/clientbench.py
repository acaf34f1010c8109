"""Wall time of one ``ruroco-client send`` process, measured from the bench (fork to exit).

hyperfine is not installed here and not needed: ``perf_counter`` around ``subprocess.run``
includes the same fork/exec/exit cost. One untimed run first, so that the counter file
exists and byte-code caches are written; the timed runs are then each a fresh process.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from bench import proc, stats
from ruroco import protocol


def time_runs(argv: list[str], runs: int, env: dict[str, str], timeout: float = 10.0) -> dict:
    """Median/min/max wall time in ms of ``runs`` sequential runs of ``argv``; all must succeed."""
    times: list[float] = []
    failures = 0
    subprocess.run(argv, env=env, capture_output=True, timeout=timeout, check=False)
    for _ in range(runs):
        t0 = time.perf_counter()
        done = subprocess.run(argv, env=env, capture_output=True, timeout=timeout, check=False)
        elapsed = (time.perf_counter() - t0) * 1000
        if done.returncode == 0:
            times.append(elapsed)
        else:
            failures += 1
    out: dict = {"runs": runs, "ok": len(times), "failures": failures}
    if times:
        out.update(
            median_ms=stats.median(times), min_ms=min(times), max_ms=max(times), all_ms=times
        )
    return out


def run_client(root: Path, port: int, runs: int = 30) -> dict:
    """``send`` to a loopback port (a server need not listen: UDP sends do not wait)."""
    root.mkdir(parents=True, exist_ok=True)
    key_file = root / "client.key"
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(protocol.generate_key())
    env = dict(os.environ, RUROCO_CONF_DIR=str(root / "conf"))
    argv = [proc.tool("ruroco-client"), "send", "-a", f"127.0.0.1:{port}", "-k", str(key_file)]
    return time_runs(argv, runs, env)
