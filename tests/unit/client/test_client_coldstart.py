"""The ``send`` fast path stays lean: it never imports click or the heavy stdlib modules.

Not a timing test (benchmarks measure time); it pins the design that keeps the cold start
short, so a stray import shows up here instead of as a slow client.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

from client_helpers import FIXTURE_KEY, Receiver

import ruroco

HEAVY = ("click", "dataclasses", "typing", "ipaddress", "pathlib", "socket", "re", "contextlib")


def _modules_after(argv: list[str], conf_dir: Path) -> tuple[int, list[str]]:
    code = (
        "import sys\n"
        "from ruroco.client.cli import main\n"
        f"rc = main({argv!r})\n"
        f"loaded = sorted(m for m in {HEAVY!r} if m in sys.modules)\n"
        "import json\n"  # only now: json itself imports re
        "print(json.dumps([rc, loaded]))\n"
    )
    repo = str(Path(ruroco.__file__).resolve().parent.parent)
    env = dict(os.environ, RUROCO_CONF_DIR=str(conf_dir))
    env["PYTHONPATH"] = os.pathsep.join([repo, sysconfig.get_paths()["purelib"]])
    # -S: no site hooks (an editable install's finder would import pathlib/re itself)
    result = subprocess.run(
        [sys.executable, "-S", "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    rc, modules = json.loads(result.stdout.strip().splitlines()[-1])
    return rc, modules


def test_send_path_imports_nothing_heavy(conf_dir: Path, key_file: Path) -> None:
    rx = Receiver("127.0.0.1", FIXTURE_KEY)
    try:
        rc, modules = _modules_after(["send", "-a", rx.address, "-k", str(key_file)], conf_dir)
        assert rc == 0
        assert rx.receive_data().counter > 0  # it really sent
    finally:
        rx.close()
    assert modules == []


def test_help_goes_through_click(conf_dir: Path) -> None:
    rc, modules = _modules_after(["send", "--help"], conf_dir)
    assert rc == 0
    assert "click" in modules
