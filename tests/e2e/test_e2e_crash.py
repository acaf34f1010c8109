"""Crash, CI size: 8 × ``kill -9`` of the server under knocks, then every packet replayed.

The same stage as ``make fuzz`` runs with 40 kills (bench/crash.py). A real server is
SIGKILLed at random moments (some during its start-up) while valid knocks arrive and is
restarted on the same port each time; afterwards it is killed once more without traffic,
restarted, and every packet ever sent is sent again.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # the bench package sits at the repository root
    sys.path.insert(0, str(REPO))

from bench.crash import check_crash, run_crash  # noqa: E402

KILLS = 8


def test_kill_9_never_runs_a_knock_twice(tmp_path: Path) -> None:
    r = run_crash(tmp_path / "crash", kills=KILLS, time_limit=45.0)
    shown = json.dumps({k: v for k, v in r.items() if k != "knocks"}, indent=1)[:6000]
    knocks = r["knocks"]

    assert r["kills"] == KILLS and not r["timed_out"] and r["crashed"] is None, shown
    assert r["tracebacks"] == {"server.log": 0, "commander.log": 0}, shown
    # the blocklist file decoded after every kill and its floor never went down
    assert r["decode_errors"] == [] and not r["floor_went_down"], shown
    # knocks did get through between the kills
    assert r["handed_over"] >= KILLS and knocks["ran"] >= KILLS, shown
    # whatever ran was sent by us, accepted by a server, and ran once
    assert knocks["repeated"] == [] and knocks["unexpected"] == [], shown
    assert r["ran_not_accepted"] == [], shown
    assert r["commander_runs"] == knocks["run_lines"], shown
    # every knock logged as handed over ran exactly once, and its counter had been persisted
    assert r["handed_over_not_run"] == [], shown
    assert r["floor_not_covering_handover"] == [], shown
    # the replay of every packet ever sent made the server accept only the fresh sentinel
    assert r["replayed"] == knocks["sent"] - 1, shown
    assert r["replay_accepted"] == [r["sentinel"]], shown
    assert r["runs_after_replay"] == [r["sentinel"]], shown
    assert r["final_summary"]["rejected_replay"] == r["replayed"], shown
    assert r["last_knock_ran"] and r["sentinel_ran"], shown
    assert check_crash(r) == [], shown
