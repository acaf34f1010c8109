"""``ruroco-ui`` through Textual's pilot (80×24): the three views, keyboard only.

Knocks here go to a loopback UDP receiver that decrypts them, or to a name under
``.invalid``, which cannot resolve: no datagram leaves the machine. The real server and
commander are in tests/e2e/test_e2e_ui.py.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from client_helpers import FIXTURE_KEY, Receiver, read_counter_file
from textual import events
from textual.pilot import Pilot
from textual.widgets import Button, Checkbox, DataTable, Input, TabbedContent, TextArea
from uipilot import (
    key_id_line,
    key_input,
    result,
    row_texts,
    run_ui,
    screen_text,
    status_line,
    until,
)

from ruroco.client.saved import FILE_NAME, SavedCommand, SavedCommands, parse_document
from ruroco.client.sender import client_lock
from ruroco.ipaddr import parse_ip
from ruroco.protocol import command_hash, hex_list, key_id_of
from ruroco.ui.app import ERROR, NEVER, OK, RurocoUI

REPO = Path(__file__).resolve().parents[3]
UNREACHABLE = SavedCommand("nohost.invalid:80", "open_ssh")


def saved(conf_dir: Path, *commands: SavedCommand) -> None:
    SavedCommands(conf_dir).set(list(commands))


def on_disk(conf_dir: Path) -> list[SavedCommand]:
    return parse_document((conf_dir / FILE_NAME).read_text())


async def paste_key(app: RurocoUI, pilot: Pilot[None], key: str) -> None:
    """The terminal's paste (bracketed paste) into the Dashboard's key field."""
    await pilot.press("f3")
    key_input(app).focus()
    key_input(app).post_message(events.Paste(key))
    await pilot.pause()


async def type_text(pilot: Pilot[None], text: str) -> None:
    await pilot.press(*[{" ": "space"}.get(ch, ch) for ch in text])


async def type_below_the_lines(app: RurocoUI, pilot: Pilot[None]) -> None:
    """Open the Dashboard and start a new line after the last one, ready to type."""
    await pilot.press("f3")
    lines = app.query_one("#lines", TextArea)
    lines.move_cursor(lines.document.end)
    await pilot.press("enter")


# -- Execute -----------------------------------------------------------------------------


def test_execute_is_the_default_view_with_sorted_rows(conf_dir: Path) -> None:
    saved(
        conf_dir,
        SavedCommand("b.example:80", "open_ssh", True, "", True, True, wait_port=22),
        SavedCommand("a.example", "open_ssh"),
        SavedCommand("z.example", "deploy"),
    )

    async def scenario(app: RurocoUI, pilot: Pilot[None]) -> None:
        assert app.query_one(TabbedContent).active == "execute"
        assert app.focused is app.query_one("#commands", DataTable)
        assert row_texts(app) == [
            ("deploy@z.example", "", "never run"),
            ("open_ssh@a.example", "", "never run"),
            ("open_ssh@b.example:80 permissive ipv4 ipv6", "tcp/22", "never run"),
        ]
        text = screen_text(app)
        for visible in ("F1 Execute", "F2 Create", "F3 Dashboard", "r Run", "x Delete", "Quit"):
            assert visible in text

    run_ui(conf_dir, scenario)


def test_rows_show_names_and_addresses_as_typed_never_as_markup(conf_dir: Path) -> None:
    """A saved name or address is text: ``[/]`` once crashed the UI at every start, and an
    IPv6 address in brackets that starts with a letter vanished as a style tag."""
    odd = [
        SavedCommand("[fd00::1]:80", "open_ssh"),
        SavedCommand("[fe80::1%2]:80", "open_ssh"),
        SavedCommand("h", "open[/]ssh"),
        SavedCommand("h", "[bold]x[/bold]"),
        SavedCommand("h", "a[link=x]b", wait_port=22),
    ]
    saved(conf_dir, *odd)

    async def scenario(app: RurocoUI, pilot: Pilot[None]) -> None:
        shown = screen_text(app)
        for command in odd:
            assert command.display_name in shown
        await pilot.press("f3")
        assert app.query_one("#lines", TextArea).text.count("\n") == len(odd) - 1

    run_ui(conf_dir, scenario)


def test_an_empty_list_says_where_to_add_one(conf_dir: Path) -> None:
    async def scenario(app: RurocoUI, pilot: Pilot[None]) -> None:
        assert row_texts(app) == []
        assert "No saved commands: add one in Create (F2)." in screen_text(app)

    run_ui(conf_dir, scenario)


def test_run_sends_like_send_with_the_dashboard_key(conf_dir: Path) -> None:
    rx = Receiver("127.0.0.1")
    entry = SavedCommand(rx.address, "open_ssh", True, "203.0.113.9", True, False)
    saved(conf_dir, entry)

    async def scenario(app: RurocoUI, pilot: Pilot[None]) -> None:
        await paste_key(app, pilot, FIXTURE_KEY)
        await pilot.press("f1", "r")
        await until(pilot, lambda: result(app, entry).state == OK, "the row to turn OK")
        assert result(app, entry).text == f"sent to {rx.address}"
        assert row_texts(app)[0][2] == f"OK: sent to {rx.address}"

    run_ui(conf_dir, scenario)
    data = rx.receive_data()
    assert data.cmd_hash == command_hash("open_ssh")
    assert data.strict is False
    assert data.src_ip == parse_ip("203.0.113.9")
    assert 0 < data.counter <= read_counter_file(conf_dir)  # the file is never behind
    assert rx.nothing_pending()  # IPv4 only: one datagram


def test_enter_runs_the_selected_row_and_the_key_file_of_an_entry_wins(
    conf_dir: Path, key_file: Path
) -> None:
    rx = Receiver("127.0.0.1")
    first = SavedCommand("nohost.invalid", "a_first")
    second = SavedCommand(rx.address, "b_second", key_file=str(key_file))
    saved(conf_dir, first, second)

    async def scenario(app: RurocoUI, pilot: Pilot[None]) -> None:
        await pilot.press("down", "enter")  # no key in the Dashboard: the entry has its own
        await until(pilot, lambda: result(app, second).state == OK, "the second row to be OK")
        assert result(app, first).state == NEVER

    run_ui(conf_dir, scenario)
    assert rx.receive_data().cmd_hash == command_hash("b_second")


def test_a_relative_key_file_is_found_in_the_conf_dir(conf_dir: Path) -> None:
    rx = Receiver("127.0.0.1")
    (conf_dir / "laptop.key").write_text(FIXTURE_KEY)
    entry = SavedCommand(rx.address, "c", key_file="laptop.key")
    saved(conf_dir, entry)

    async def scenario(app: RurocoUI, pilot: Pilot[None]) -> None:
        await pilot.press("r")
        await until(pilot, lambda: result(app, entry).state == OK, "the row to be OK")

    run_ui(conf_dir, scenario)
    assert rx.receive_data().cmd_hash == command_hash("c")


def test_unreachable_name_turns_the_row_to_error_with_the_message(conf_dir: Path) -> None:
    saved(conf_dir, UNREACHABLE)

    async def scenario(app: RurocoUI, pilot: Pilot[None]) -> None:
        await paste_key(app, pilot, FIXTURE_KEY)
        await pilot.press("f1", "r")
        await until(pilot, lambda: result(app, UNREACHABLE).state == ERROR, "an error")
        message = result(app, UNREACHABLE).text
        assert message.startswith("Could not resolve hostname for nohost.invalid:80: ")
        assert row_texts(app)[0][2] == f"error: {message}"
        assert status_line(app) == f"open_ssh@nohost.invalid:80: error: {message}"
        table = screen_text(app).split("Result", 1)[1].split("open_ssh@nohost.invalid:80:")[0]
        assert table.split() == f"open_ssh@nohost.invalid:80 error: {message}".split()  # wrapped

    run_ui(conf_dir, scenario)


def test_without_a_key_the_row_says_where_to_get_one(conf_dir: Path) -> None:
    saved(conf_dir, UNREACHABLE)

    async def scenario(app: RurocoUI, pilot: Pilot[None]) -> None:
        await pilot.press("r")
        await until(pilot, lambda: result(app, UNREACHABLE).state == ERROR, "an error")
        assert result(app, UNREACHABLE).text.startswith("No key: generate or paste one")

    run_ui(conf_dir, scenario)


def test_a_bad_key_is_the_rows_error(conf_dir: Path) -> None:
    saved(conf_dir, UNREACHABLE)

    async def scenario(app: RurocoUI, pilot: Pilot[None]) -> None:
        await paste_key(app, pilot, "not a key")
        await pilot.press("f1", "r")
        await until(pilot, lambda: result(app, UNREACHABLE).state == ERROR, "an error")
        assert result(app, UNREACHABLE).text == "Could not decode base64 key"

    run_ui(conf_dir, scenario)


def test_the_ui_never_freezes_while_a_knock_waits(conf_dir: Path) -> None:
    """A knock that waits for the client lock runs in a worker: keys still work meanwhile."""
    rx = Receiver("127.0.0.1")
    entry = SavedCommand(rx.address, "c", key_file="k.key")
    (conf_dir / "k.key").write_text(FIXTURE_KEY)
    saved(conf_dir, entry)

    async def scenario(app: RurocoUI, pilot: Pilot[None]) -> None:
        with client_lock(str(conf_dir)).acquire():  # another client is sending
            await pilot.press("r")
            await pilot.pause(0.3)
            assert result(app, entry).state == "running"
            await pilot.press("f2")  # the app still answers
            assert app.query_one(TabbedContent).active == "create"
        await until(pilot, lambda: result(app, entry).state == OK, "the knock after the lock")

    run_ui(conf_dir, scenario)
    rx.receive_data()


def test_the_ui_holds_the_client_lock_only_per_knock(conf_dir: Path, key_file: Path) -> None:
    """The original locked the CLI out for the whole GUI session; here a CLI can send."""
    rx = Receiver("127.0.0.1")
    entry = SavedCommand(rx.address, "c", key_file=str(key_file))
    saved(conf_dir, entry)

    async def scenario(app: RurocoUI, pilot: Pilot[None]) -> None:
        with client_lock(str(conf_dir)).acquire():
            pass
        await pilot.press("r")
        await until(pilot, lambda: result(app, entry).state == OK, "the knock")
        with client_lock(str(conf_dir)).acquire():  # free again right after the knock
            pass

    run_ui(conf_dir, scenario)


def test_delete_removes_the_row_and_saves(conf_dir: Path) -> None:
    keep, drop = SavedCommand("a", "keep"), SavedCommand("b", "z_drop")
    saved(conf_dir, keep, drop)

    async def scenario(app: RurocoUI, pilot: Pilot[None]) -> None:
        await pilot.press("down", "x")
        assert [r[0] for r in row_texts(app)] == ["keep@a"]
        assert status_line(app) == "Deleted z_drop@b"
        assert "z_drop" not in app.query_one("#lines", TextArea).text
        await pilot.press("delete")
        assert row_texts(app) == []

    run_ui(conf_dir, scenario)
    assert on_disk(conf_dir) == []


def test_delete_removes_only_the_selected_one_of_identical_rows(conf_dir: Path) -> None:
    """The same entry added twice is two rows; ``x`` deletes the one it is on, not both."""
    saved(conf_dir, SavedCommand("a", "a_first"), SavedCommand("z", "z_last"))

    async def scenario(app: RurocoUI, pilot: Pilot[None]) -> None:
        await pilot.press("f2")
        for _ in range(2):
            app.query_one("#address", Input).value = "h"
            await pilot.press("ctrl+s")
        await pilot.press("f1")
        assert [r[0] for r in row_texts(app)] == ["a_first@a", "default@h", "default@h", "z_last@z"]
        await pilot.press("down", "x")
        assert [r[0] for r in row_texts(app)] == ["a_first@a", "default@h", "z_last@z"]
        assert status_line(app) == "Deleted default@h"

    run_ui(conf_dir, scenario)
    assert on_disk(conf_dir) == [
        SavedCommand("a", "a_first"),
        SavedCommand("h"),
        SavedCommand("z", "z_last"),
    ]


def test_delete_keeps_the_result_of_an_identical_row_left(conf_dir: Path) -> None:
    saved(conf_dir, UNREACHABLE, UNREACHABLE)

    async def scenario(app: RurocoUI, pilot: Pilot[None]) -> None:
        await pilot.press("r")
        await until(pilot, lambda: result(app, UNREACHABLE).state == ERROR, "an error")
        await pilot.press("x")
        assert row_texts(app)[0][2].startswith("error: No key")

    run_ui(conf_dir, scenario)


# -- Create ------------------------------------------------------------------------------


def test_create_adds_a_sorted_entry_and_clears_the_form_but_the_command(conf_dir: Path) -> None:
    saved(conf_dir, SavedCommand("z", "a_first"))

    async def scenario(app: RurocoUI, pilot: Pilot[None]) -> None:
        await pilot.press("f2")
        assert app.focused is app.query_one("#address", Input)
        await type_text(pilot, "server.example:80")
        await pilot.press("tab", "ctrl+a", "ctrl+k")  # the command: default, cleared
        await type_text(pilot, " open ssh ")  # whitespace goes as it is typed
        assert app.query_one("#command", Input).value == "openssh"
        await pilot.press("tab")
        await type_text(pilot, "203.0.113.9")
        await pilot.press("tab", "tab")  # key file: none
        await type_text(pilot, "22")
        await pilot.press("tab", "space", "tab", "space")  # permissive, IPv4 only
        assert app.query_one("#ipv4", Checkbox).value
        await pilot.press("ctrl+s")
        assert status_line(app) == "Added openssh@server.example:80 permissive ipv4"
        for field in ("address", "ip", "key_file", "wait_port"):
            assert app.query_one(f"#{field}", Input).value == ""
        assert not any(app.query_one(f"#{f}", Checkbox).value for f in ("permissive", "ipv4"))
        assert app.query_one("#command", Input).value == "openssh"
        assert [r[0] for r in row_texts(app)] == [
            "a_first@z",
            "openssh@server.example:80 permissive ipv4",
        ]
        assert app.query_one("#lines", TextArea).text.splitlines()[1] == (
            "send --address server.example:80 --command openssh --ip 203.0.113.9 --ipv4"
            " --permissive --wait-port 22"
        )

    run_ui(conf_dir, scenario)
    assert on_disk(conf_dir) == [
        SavedCommand("z", "a_first"),
        SavedCommand("server.example:80", "openssh", True, "203.0.113.9", True, False, None, 22),
    ]


def test_the_add_button_works_from_the_keyboard(conf_dir: Path) -> None:
    async def scenario(app: RurocoUI, pilot: Pilot[None]) -> None:
        await pilot.press("f2")
        await type_text(pilot, "h")
        app.query_one("#add", Button).focus()
        await pilot.press("enter")
        assert [r[0] for r in row_texts(app)] == ["default@h"]

    run_ui(conf_dir, scenario)


def test_create_refuses_what_cannot_be_sent(conf_dir: Path) -> None:
    async def scenario(app: RurocoUI, pilot: Pilot[None]) -> None:
        await pilot.press("f2", "ctrl+s")
        assert status_line(app) == "Not added: An address is needed"
        app.query_one("#address", Input).value = "h"
        app.query_one("#wait_port", Input).value = "70000"
        await pilot.press("ctrl+s")
        assert status_line(app) == "Not added: Wait for port '70000' is not a port (1-65535)"
        app.query_one("#wait_port", Input).value = ""
        app.query_one("#ip", Input).value = "1.2.3"
        await pilot.press("ctrl+s")
        assert status_line(app) == "Not added: IP sent '1.2.3' is not an IP address"
        app.query_one("#ip", Input).value = ""
        app.query_one("#key_file", Input).value = "my key"
        await pilot.press("ctrl+s")
        assert status_line(app).startswith("Not added: A key file path cannot contain spaces")
        assert row_texts(app) == []

    run_ui(conf_dir, scenario)
    assert not (conf_dir / FILE_NAME).exists()


# -- Dashboard ---------------------------------------------------------------------------


def test_dashboard_lines_save_replace_the_list_and_reset_restores(conf_dir: Path) -> None:
    saved(conf_dir, SavedCommand("old", "old"))

    async def scenario(app: RurocoUI, pilot: Pilot[None]) -> None:
        await pilot.press("f3")
        lines = app.query_one("#lines", TextArea)
        assert app.focused is lines
        assert lines.text == "send --address old --command old"
        lines.load_text(
            "send  --command zz   --address b:1 --ipv6\n\n   \n"
            "junk --permissive --address a --command zz --key-file k.key --wait-port 22\n"
        )
        await pilot.press("ctrl+s")
        assert status_line(app) == "Saved 2 commands"
        assert lines.text == (
            "send --address a --command zz --permissive --key-file k.key --wait-port 22\n"
            "send --address b:1 --command zz --ipv6"
        )
        assert [r[0] for r in row_texts(app)] == ["zz@a permissive", "zz@b:1 ipv6"]
        lines.load_text("send --address c --command c")
        await pilot.press("ctrl+r")
        assert lines.text.splitlines()[0].startswith("send --address a --command zz")

    run_ui(conf_dir, scenario)
    assert on_disk(conf_dir) == [
        SavedCommand("a", "zz", True, "", False, False, "k.key", 22),
        SavedCommand("b:1", "zz", False, "", False, True),
    ]


def test_dashboard_save_refuses_a_line_create_would_refuse_and_keeps_the_text(
    conf_dir: Path,
) -> None:
    saved(conf_dir, SavedCommand("old", "old"))

    async def scenario(app: RurocoUI, pilot: Pilot[None]) -> None:
        await pilot.press("f3")
        lines = app.query_one("#lines", TextArea)
        for text, why in (
            ("send --address h --command c\n\ngarbage line here", "line 3: no --address"),
            ("send --address h --wait-port abc", "line 1: --wait-port 'abc' is not a port"),
            ("send --address h --wait-port", "line 1: --wait-port has no value"),
            ("send --address h --ip 1.2.3", "line 1: --ip '1.2.3' is not an IP address"),
        ):
            lines.load_text(text)
            await pilot.press("ctrl+s")
            assert status_line(app).startswith(f"Not saved, nothing changed: {why}")
            assert lines.text == text
            assert lines.cursor_location == (int(why.split()[1].rstrip(":")) - 1, 0)
        assert [r[0] for r in row_texts(app)] == ["old@old"]

    run_ui(conf_dir, scenario)
    assert on_disk(conf_dir) == [SavedCommand("old", "old")]


def test_unsaved_dashboard_lines_survive_an_add_in_create(conf_dir: Path) -> None:
    saved(conf_dir, SavedCommand("old", "old"))

    async def scenario(app: RurocoUI, pilot: Pilot[None]) -> None:
        await type_below_the_lines(app, pilot)
        await type_text(pilot, "send --address t1 --command one")
        await pilot.press("enter")
        await type_text(pilot, "send --address t2 --command two")
        assert "unsaved" in str(app.query_one("#lines", TextArea).border_title).lower()
        await pilot.press("f2")
        app.query_one("#address", Input).value = "h"
        await pilot.press("ctrl+s")
        assert status_line(app).startswith("Added default@h (also to your unsaved Dashboard")
        await pilot.press("f3")
        assert app.query_one("#lines", TextArea).text.splitlines() == [
            "send --address old --command old",
            "send --address t1 --command one",
            "send --address t2 --command two",
            "send --address h --command default",
        ]
        await pilot.press("ctrl+s")
        assert status_line(app) == "Saved 4 commands"

    run_ui(conf_dir, scenario)
    assert [c.display_name for c in on_disk(conf_dir)] == [
        "default@h",
        "old@old",
        "one@t1",
        "two@t2",
    ]


def test_a_delete_in_execute_leaves_the_other_unsaved_dashboard_lines(conf_dir: Path) -> None:
    saved(conf_dir, SavedCommand("a", "a_first"), SavedCommand("b", "b_last"))

    async def scenario(app: RurocoUI, pilot: Pilot[None]) -> None:
        lines = app.query_one("#lines", TextArea)
        await type_below_the_lines(app, pilot)
        await type_text(pilot, "send --address t --command typed")
        await pilot.press("f1", "x")
        assert status_line(app).startswith("Deleted a_first@a (also from your unsaved Dashboard")
        assert lines.text == "send --address b --command b_last\nsend --address t --command typed"
        await pilot.press("x")
        assert lines.text == "send --address t --command typed"
        await pilot.press("f3", "ctrl+r")
        assert lines.text == ""
        assert "unsaved" not in str(lines.border_title).lower()

    run_ui(conf_dir, scenario)


def test_quitting_with_unsaved_lines_asks_once_and_a_second_ctrl_q_quits(conf_dir: Path) -> None:
    saved(conf_dir, SavedCommand("old", "old"))

    async def scenario(app: RurocoUI, pilot: Pilot[None]) -> None:
        lines = app.query_one("#lines", TextArea)
        await type_below_the_lines(app, pilot)
        await type_text(pilot, "send --address t --command typed")
        await pilot.press("f1", "ctrl+q")
        assert not app._exit
        assert app.query_one(TabbedContent).active == "dashboard"
        assert status_line(app) == (
            "Unsaved Dashboard lines: ctrl+s saves them, ctrl+q again quits without them"
        )
        await type_text(pilot, "x")  # another edit: the next ctrl+q asks again
        await pilot.press("ctrl+q")
        assert not app._exit
        await pilot.press("ctrl+q")
        assert app._exit
        assert lines.text.endswith("--command typedx")

    run_ui(conf_dir, scenario)
    assert on_disk(conf_dir) == [SavedCommand("old", "old")]


def test_quitting_without_unsaved_lines_does_not_ask(conf_dir: Path) -> None:
    saved(conf_dir, SavedCommand("old", "old"))

    async def scenario(app: RurocoUI, pilot: Pilot[None]) -> None:
        await type_below_the_lines(app, pilot)
        await type_text(pilot, "send --address t --command typed")
        await pilot.press("ctrl+r", "f1", "ctrl+q")
        assert app._exit

    run_ui(conf_dir, scenario)


def test_key_is_masked_shown_on_demand_and_never_saved(conf_dir: Path) -> None:
    async def scenario(app: RurocoUI, pilot: Pilot[None]) -> None:
        await pilot.press("f3", "ctrl+g")
        key = key_input(app).value
        assert key_id_line(app) == f"Key id: {hex_list(key_id_of(key))}"
        assert key_input(app).password
        assert key not in screen_text(app)
        assert "•" * 20 in screen_text(app)
        await pilot.press("ctrl+t")
        assert not key_input(app).password
        assert str(app.query_one("#toggle_key", Button).label) == "Hide key"
        assert key in screen_text(app)
        await pilot.press("ctrl+t")
        assert key_input(app).password
        app.query_one("#lines", TextArea).load_text("send --address h --command c")
        await pilot.press("ctrl+s")
        assert key not in (conf_dir / FILE_NAME).read_text()
        assert key not in status_line(app)

    run_ui(conf_dir, scenario)
    for path in conf_dir.iterdir():  # counter, lock, list: the key is in none of them
        assert path.is_dir() or FIXTURE_KEY.encode() not in path.read_bytes()


def test_a_pasted_key_shows_its_id_and_a_bad_one_says_why(conf_dir: Path) -> None:
    async def scenario(app: RurocoUI, pilot: Pilot[None]) -> None:
        await pilot.press("f3")
        assert key_id_line(app) == "No key"
        await paste_key(app, pilot, FIXTURE_KEY + "\n")
        await pilot.pause()
        assert key_input(app).value == FIXTURE_KEY
        assert key_id_line(app) == "Key id: [FF, FF, FF, FF, FF, FF, FF, FF]"
        key_input(app).value = FIXTURE_KEY[:-1]
        await pilot.pause()
        assert key_id_line(app) == "Not a key: Could not decode base64 key"
        key_input(app).value = FIXTURE_KEY[:-4]
        await pilot.pause()
        assert key_id_line(app) == "Not a key: Key length must be 32 bytes"

    run_ui(conf_dir, scenario)


def test_reseed_counter(conf_dir: Path) -> None:
    async def scenario(app: RurocoUI, pilot: Pilot[None]) -> None:
        before = time.time_ns()
        await pilot.press("f3", "ctrl+o")
        assert status_line(app) == "Counter reseeded"
        assert before <= read_counter_file(conf_dir) <= time.time_ns()
        with client_lock(str(conf_dir)).acquire():
            await pilot.press("ctrl+o")
        assert status_line(app).startswith("Failed to reseed counter: Client already running")

    run_ui(conf_dir, scenario)


# -- the file ----------------------------------------------------------------------------


def test_unparsable_file_is_preserved_and_the_ui_starts_empty_saying_so(conf_dir: Path) -> None:
    broken = b"list = [\n"
    (conf_dir / FILE_NAME).write_bytes(broken)

    async def scenario(app: RurocoUI, pilot: Pilot[None]) -> None:
        assert row_texts(app) == []
        assert status_line(app).startswith(
            "commands_list.toml parse failed, starting empty (file preserved):"
        )

    run_ui(conf_dir, scenario)
    assert (conf_dir / FILE_NAME).read_bytes() == broken


def test_legacy_file_loads_and_is_saved_in_the_table_form(conf_dir: Path) -> None:
    (conf_dir / FILE_NAME).write_text(
        'list = ["send --address b --command x --ipv4", "send --address a --command x"]\n'
    )

    async def scenario(app: RurocoUI, pilot: Pilot[None]) -> None:
        assert [r[0] for r in row_texts(app)] == ["x@a", "x@b ipv4"]
        await pilot.press("x")

    run_ui(conf_dir, scenario)
    assert (conf_dir / FILE_NAME).read_text().startswith('[[list]]\naddress = "b"\n')


def test_a_failed_save_is_reported_and_the_ui_goes_on(conf_dir: Path) -> None:
    saved(conf_dir, SavedCommand("a", "x"))
    (conf_dir / FILE_NAME).unlink()
    (conf_dir / FILE_NAME).mkdir()  # renaming a file onto it fails (root ignores modes)

    async def scenario(app: RurocoUI, pilot: Pilot[None]) -> None:
        await pilot.press("f2")
        await type_text(pilot, "h")
        await pilot.press("ctrl+s")
        assert status_line(app).startswith(f"Could not save {conf_dir / FILE_NAME}: rename")
        assert [r[0] for r in row_texts(app)] == ["default@h"]

    run_ui(conf_dir, scenario)


# -- the terminal ------------------------------------------------------------------------


def test_every_view_fits_80x24(conf_dir: Path) -> None:
    saved(conf_dir, *(SavedCommand(f"h{i}.example:80", "open_ssh") for i in range(5)))

    async def scenario(app: RurocoUI, pilot: Pilot[None]) -> None:
        bottom = app.size.height - 1  # the footer's line
        for view, last, keys in (
            ("f2", "#add", ["^s Add command", "^q Quit"]),
            ("f3", "#reseed", ["^s Save lines", "^r Reset", "^g New key", "^t Show", "^o Reseed"]),
        ):
            await pilot.press(view)
            await pilot.pause()
            region = app.query_one(last).region
            assert region.height and region.bottom <= bottom and region.right <= app.size.width
            footer = screen_text(app).splitlines()[-1]
            assert all(key in footer for key in keys), footer

    run_ui(conf_dir, scenario)


def test_screenshots_of_the_three_views(tmp_path: Path) -> None:
    """The script that makes docs/img/ui-*.svg, into a temporary directory."""
    out = tmp_path / "img"
    res = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "ui-screenshots.py"), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == ["ui-create.svg", "ui-dashboard.svg", "ui-execute.svg"]
    for name in names:
        svg = (out / name).read_text()
        assert svg.startswith("<svg") and "F1&#160;Execute" in svg
    assert "open_ssh@bastion.example.org:80" in (out / "ui-execute.svg").read_text().replace(
        "&#160;", " "
    )
