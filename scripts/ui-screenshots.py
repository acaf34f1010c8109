#!/usr/bin/env python3
"""Write the SVG screenshots of ruroco-ui's three views (docs/ui.md) into a directory.

    python scripts/ui-screenshots.py [DIR]      # default: docs/img (make ui-screenshots)

Deterministic: fixed example entries in a throw-away conf dir, results set directly (no
datagram is sent), and an obviously fake key (id 01 23 45 67 89 AB CD EF, AES key all
zeros) that stays masked. Run it again whenever the UI changes and commit the three files.
"""

from __future__ import annotations

import asyncio
import base64
import sys
import tempfile
from pathlib import Path

from textual.widgets import Input

from ruroco.client.saved import SavedCommand, SavedCommands
from ruroco.ui.app import ERROR, OK, RurocoUI, Status

SIZE = (80, 24)
FAKE_KEY = base64.b64encode(bytes.fromhex("0123456789abcdef") + bytes(32)).decode("ascii")
EXAMPLES = [
    SavedCommand("bastion.example.org:80", "open_ssh", wait_port=22),
    SavedCommand("192.0.2.10", "deploy", True, "198.51.100.7", True, False),
    SavedCommand("[2001:db8::10]:8080", "restart_app", ipv6=True, key_file="ops.key"),
    SavedCommand("backup.example.net", "backup"),
]
RESULTS = {
    EXAMPLES[0]: Status(OK, "open: 192.0.2.1:22 accepted after 0.4s (1 knock)"),
    EXAMPLES[1]: Status(OK, "sent to 192.0.2.10:80"),
    EXAMPLES[3]: Status(
        ERROR,
        "Could not resolve hostname for backup.example.net:80: Name or service not known"
        " (os error -2)",
    ),
}


async def shoot(conf_dir: str, out: Path) -> None:
    app = RurocoUI(conf_dir)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        for command, status in RESULTS.items():
            app.set_status(command, status)
        app.say("open_ssh@bastion.example.org:80: OK: open: 192.0.2.1:22 accepted after 0.4s")
        await pilot.pause()
        app.save_screenshot("ui-execute.svg", str(out))
        await pilot.press("f2")
        for field, text in (("address", "vpn.example.com:80"), ("wait_port", "443")):
            app.query_one(f"#{field}", Input).value = text
        app.say("Fill in the fields, then ctrl+s (or the button) adds the command")
        await pilot.pause()
        app.save_screenshot("ui-create.svg", str(out))
        await pilot.press("f3")
        app.query_one("#key", Input).value = FAKE_KEY
        app.say("Key id shown; the key itself stays masked and only in memory")
        await pilot.pause()
        app.save_screenshot("ui-dashboard.svg", str(out))


def main(argv: list[str]) -> int:
    out = Path(argv[0] if argv else "docs/img")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ruroco-ui-shots-") as conf_dir:
        SavedCommands(conf_dir).set(EXAMPLES)
        asyncio.run(shoot(conf_dir, out))
    for name in ("ui-execute.svg", "ui-create.svg", "ui-dashboard.svg"):
        print(out / name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
