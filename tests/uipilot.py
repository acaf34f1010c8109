"""Driving ``ruroco-ui`` with Textual's headless pilot in an 80×24 terminal, from plain
(synchronous) pytest tests: each test hands a coroutine that gets the app and its pilot."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from rich.console import Console
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Label, Static

from ruroco.client.saved import SavedCommand
from ruroco.ui.app import RurocoUI, Status

SIZE = (80, 24)
WAIT = 20.0

Scenario = Callable[[RurocoUI, Pilot[None]], Awaitable[None]]


def run_ui(conf_dir: Path | str, scenario: Scenario, protocol: int = 1) -> RurocoUI:
    """Start the app on ``conf_dir``, run ``scenario`` against it, shut it down."""
    app = RurocoUI(str(conf_dir), protocol)

    async def main() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            await scenario(app, pilot)

    asyncio.run(main())
    return app


async def until(
    pilot: Pilot[None], predicate: Callable[[], object], what: str, timeout: float = WAIT
) -> None:
    """Let the app run until ``predicate()`` holds; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await pilot.pause(0.05)


def row_texts(app: RurocoUI) -> list[tuple[str, str, str]]:
    """The Execute table as text: (name, wait, result) per row, top to bottom."""
    table = app.query_one("#commands", DataTable)
    return [
        tuple(str(getattr(cell, "plain", cell)) for cell in table.get_row_at(i))
        for i in range(table.row_count)
    ]


def result(app: RurocoUI, command: SavedCommand) -> Status:
    return app.status_of(command)


def status_line(app: RurocoUI) -> str:
    return str(app.query_one("#status", Static).render())


def key_id_line(app: RurocoUI) -> str:
    return str(app.query_one("#key_id", Label).render())


def key_input(app: RurocoUI) -> Input:
    return app.query_one("#key", Input)


def screen_text(app: RurocoUI) -> str:
    """What the terminal shows, as plain text (the SVG screenshot's content)."""
    width, height = app.size
    console = Console(
        width=width, height=height, file=io.StringIO(), record=True, color_system=None
    )
    console.print(
        app.screen._compositor.render_update(full=True, screen_stack=app._background_screens)
    )
    return console.export_text()
