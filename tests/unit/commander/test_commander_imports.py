"""The commander loads no crypto and no msgpack: it trusts only its socket and never decrypts.

Checked in a fresh interpreter, so modules another test imported do not count.
"""

from __future__ import annotations

import json
import subprocess
import sys


def test_commander_modules_load_neither_cryptography_nor_msgpack() -> None:
    code = (
        "import sys\n"
        "import ruroco.commander.cli, ruroco.commander.commander, ruroco.commander.executor\n"
        "import json\n"
        "print(json.dumps(sorted(m for m in ('cryptography', 'msgpack') if m in sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
