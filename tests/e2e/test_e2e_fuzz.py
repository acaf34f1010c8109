"""Fuzz, CI size: 30,000 datagrams of many shapes; nothing but legitimate knocks runs.

The same stage as ``make fuzz`` (bench/fuzz.py, 1,000,000 datagrams), bounded: a real
server + commander pair with default rate limits, fuzz from 30,000 loopback sources
127.4.x.y, legitimate knocks interleaved each from an address 127.3.x.y of its own, paced
on the server's receive queue so the kernel never drops.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # the bench package sits at the repository root
    sys.path.insert(0, str(REPO))

from bench.fuzz import RSS_SLACK_KB, check_fuzz, run_fuzz  # noqa: E402

DATAGRAMS = 30_000

#: Shapes whose every datagram must be refused for exactly this reason (nothing in them is
#: wrong but the one thing the shape changes, and no source comes near its rate limit).
ONE_REASON = {
    "strict_source_mismatch": "source",
    "wrong_destination": "destination",
    "far_future": "future",
    "wrong_version": "version",
}


def test_fuzz_runs_nothing_but_legitimate_knocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RUROCO_LOG", raising=False)  # debug lines for every datagram: no
    r = run_fuzz(tmp_path / "fuzz", datagrams=DATAGRAMS, max_rate=10_000.0, time_limit=45.0)
    shown = json.dumps(r, indent=1)[:6000]
    summary = r["server_summary"]
    legit = r["legit"]
    shapes = r["sent_by_shape"]

    assert r["datagrams"] == DATAGRAMS and not r["timed_out"], shown
    assert min(shapes.values()) > 0, shown
    assert r["tracebacks"] == {"server.log": 0, "commander.log": 0}, shown
    assert r["crashed"] is None, shown
    # nothing a fuzz datagram carried ran; every legitimate knock ran exactly once
    assert r["canary_runs"] == [] and r["commander_canary_runs"] == 0, shown
    assert legit["sent"] >= 20, shown
    assert legit["lost"] == [] and legit["repeated"] == [] and legit["unexpected"] == [], shown
    assert legit["run_lines"] == legit["sent"] == r["commander_runs"], shown
    assert summary["accepted"] == summary["forwarded"] == legit["sent"], shown
    # the server read every datagram (paced: no kernel drops) ...
    assert summary["received"] == r["datagrams_to_server"], shown
    assert r["socket_drops"] == 0, shown
    # ... and each shape met the check meant for it
    for shape, reason in ONE_REASON.items():
        assert summary[f"rejected_{reason}"] == shapes[shape], (shape, shown)
    assert summary["rejected_replay"] == shapes["replayed"] + shapes["old_counter"], shown
    assert summary["rejected_size"] >= shapes["truncated"] + shapes["oversized"], shown
    assert summary["rejected_decrypt"] >= shapes["known_key_garbage"], shown
    assert summary["rejected_unknown_key"] >= shapes["random_94"] * 0.99, shown
    # flat memory
    rss = r["rss_kb"]
    assert rss["warm"] is not None and rss["end"] is not None, shown
    assert rss["end"] <= rss["warm"] + RSS_SLACK_KB, shown
    assert check_fuzz(r) == [], shown
