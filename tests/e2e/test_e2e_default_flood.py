"""Floods against the default deployment, CI size: every shape of ``make bench``'s
``flood_default_<shape>`` stages (bench/defaultflood.py) for 3 s each at 20,000 datagrams/s.

The server runs with the config.toml and ruroco.socket that the ``ruroco_server`` role's own
templates render with its defaults, on a socket opened as systemd opens it; 16,000 spoofed
sources; one real ``ruroco-client send`` per second. Bounded like test_e2e_fuzz.py: a rate
a slow CI box sustains (the 60 s runs at the C sender's full rate are ``make bench``'s).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # the bench package sits at the repository root
    sys.path.insert(0, str(REPO))

from bench.defaultflood import SHAPES, check_default_flood, run_default_flood  # noqa: E402

SECONDS = 3.0
RATE = 20_000.0


@pytest.mark.parametrize("shape", SHAPES)
def test_every_knock_runs_through_a_flood_of_the_default_deployment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shape: str
) -> None:
    monkeypatch.delenv("RUROCO_LOG", raising=False)  # no debug line per datagram
    r = run_default_flood(tmp_path / shape, shape, duration=SECONDS, rate=RATE)
    shown = json.dumps({k: v for k, v in r.items() if k != "config"}, indent=1)[:5000]
    # the deployment is the role's: kernel filter on, the socket's receive buffer set
    assert re.search(r"^kernel_filter = true$", r["config"], re.MULTILINE), shown
    assert re.search(r"^ReceiveBuffer=\S+$", r["socket_unit"], re.MULTILINE), shown
    sent, summary = r["flood"]["sent"], r["server_summary"]
    assert sent >= RATE * SECONDS * 0.5, shown
    assert r["legit_sent"] >= 2, shown
    assert check_default_flood(r) == [], shown
    assert summary["accepted"] == summary["forwarded"] == r["legit_ran"], shown
    if shape in ("random", "oversized", "small"):
        # nothing of these can be a knock: the kernel dropped every one, the server read
        # only the knocks
        assert r["socket_drops"] == sent, shown
        assert summary["received"] == r["legit_sent"], shown
    elif shape == "known":
        # every datagram carries the key id: all reach the server, none is accepted
        assert summary["rejected_decrypt"] + summary["rejected_rate_source"] == sent, shown
        assert r["socket_drops"] == 0, shown
    else:  # mix: random, known, oversized, small in turn; only the known quarter passes
        known = summary["rejected_decrypt"] + summary["rejected_rate_source"]
        assert r["socket_drops"] + known == sent, shown
        assert abs(known - sent / 4) <= 32, shown
