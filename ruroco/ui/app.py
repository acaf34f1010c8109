"""``ruroco-ui``: the original's client GUI as a Textual terminal app (docs/ui.md).

Three views over the saved commands (``ruroco.client.saved``), state kept across switches:

* **Execute** (default): one row per saved command and its last result; running it knocks
  in a thread of its own (``ruroco.ui.knock``), so the screen never freezes.
* **Create**: a form that adds an entry.
* **Dashboard**: the list as editable ``send --address …`` lines, and the key.

The key lives only in the Dashboard's masked input: never in the saved file, a log or a
temporary file. The client lock is taken per knock, not for the session
(docs/deviations.md #22).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import (
    Button,
    Checkbox,
    DataTable,
    Footer,
    Input,
    Label,
    Static,
    TabbedContent,
    TabPane,
    TextArea,
)

from ruroco.client.request import DEFAULT_PROTOCOL
from ruroco.client.saved import (
    DEFAULT_COMMAND,
    LineError,
    SavedCommand,
    SavedCommands,
    is_blank,
    parse_lines,
    parse_port,
    render_lines,
    strip_whitespace,
)
from ruroco.client.sender import reseed
from ruroco.errors import RurocoError
from ruroco.ipaddr import parse_ip
from ruroco.protocol import generate_key, hex_list, key_id_of
from ruroco.ui import knock
from ruroco.ui.knock import describe_error

NEVER, RUNNING, OK, ERROR = "never", "running", "ok", "error"
_STYLES = {NEVER: "dim", RUNNING: "yellow", OK: "bold green", ERROR: "bold red"}


@dataclass(frozen=True)
class Status:
    """The last result of one saved command: what is known, nothing more."""

    state: str = NEVER
    text: str = "never run"

    def render(self) -> Text:
        prefix = {OK: "OK: ", ERROR: "error: "}.get(self.state, "")
        return Text(prefix + self.text, style=_STYLES[self.state])


class KnockStatus(Message):
    """A knock's progress or result, posted from its thread."""

    def __init__(self, command: SavedCommand, status: Status) -> None:
        super().__init__()
        self.command = command
        self.status = status


class ExecuteView(Vertical):
    """One row per saved command; Enter or ``r`` runs it, ``x`` or Delete removes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "run", "Run"),
        Binding("x,delete", "delete", "Delete"),
    ]

    def compose(self) -> ComposeResult:
        yield DataTable(id="commands", cursor_type="row")
        yield Label("No saved commands: add one in Create (F2).", id="empty")

    @property
    def ui(self) -> RurocoUI:
        assert isinstance(self.app, RurocoUI)
        return self.app

    def on_resize(self) -> None:
        self.refresh_rows()

    def refresh_rows(self) -> None:
        """Rebuild the table from the saved list, keeping the cursor's row. The result column
        takes the width left over and wraps, so a long error is read whole in 80 columns."""
        table: DataTable[str | Text] = self.query_one("#commands", DataTable)
        commands = self.ui.saved.commands
        row = table.cursor_row
        waits = ["" if c.wait_port is None else f"tcp/{c.wait_port}" for c in commands]
        name_width = min(max([len("Command"), *(len(c.display_name) for c in commands)]), 40)
        wait_width = max([len("Wait"), *map(len, waits)])
        spare = (self.size.width or self.app.size.width) - name_width - wait_width
        with self.prevent(DataTable.RowHighlighted):  # keep the status line's message
            table.clear(columns=True)
            table.add_column("Command", key="name", width=name_width)
            table.add_column("Wait", key="wait", width=wait_width)
            # 2 cells of padding per column, 1 for the vertical scrollbar
            table.add_column("Result", key="result", width=max(spare - 7, 16))
            for index, (command, wait) in enumerate(zip(commands, waits, strict=True)):
                table.add_row(  # Text, not str: a str cell is read as markup
                    Text(command.display_name),
                    Text(wait),
                    self.ui.status_of(command).render(),
                    key=str(index),
                    height=None,
                )
            if commands:
                table.move_cursor(row=min(max(row, 0), len(commands) - 1))
        self.query_one("#empty", Label).display = not commands

    def selected(self) -> SavedCommand | None:
        table = self.query_one("#commands", DataTable)
        commands = self.ui.saved.commands
        return commands[table.cursor_row] if 0 <= table.cursor_row < len(commands) else None

    @on(DataTable.RowSelected)
    def _selected(self) -> None:
        self.action_run()

    @on(DataTable.RowHighlighted)
    def _highlighted(self) -> None:
        """Moving the cursor shows that row's whole result (a cell may be cut off)."""
        command = self.selected()
        if command is not None and self.query_one("#commands").has_focus:
            self.ui.say(f"{command.display_name}: {self.ui.status_of(command).render().plain}")

    def action_run(self) -> None:
        command = self.selected()
        if command is None:
            return
        if self.ui.status_of(command).state == RUNNING:
            self.ui.say(f"{command.display_name} is running already")
            return
        self.ui.set_status(command, Status(RUNNING, "sending…"))
        # A daemon thread, not a Textual worker: quitting must not wait for a knock that
        # waits up to 30 s for its port (the counter file is only ever replaced atomically).
        threading.Thread(
            target=self._knock, args=(command, self.ui.key), name="knock", daemon=True
        ).start()

    def _knock(self, command: SavedCommand, key: str) -> None:
        """Knock in the background; results reach the screen as messages (thread-safe)."""

        def report(status: Status) -> None:
            with contextlib.suppress(RuntimeError):  # the app has ended: nobody to tell
                self.post_message(KnockStatus(command, status))

        try:
            text = knock.knock(
                command,
                key,
                self.ui.conf_dir,
                lambda t: report(Status(RUNNING, t)),
                self.ui.protocol,
            )
            report(Status(OK, text))
        except Exception as exc:  # any failure is the row's result, never a traceback
            report(Status(ERROR, describe_error(exc)))

    @on(KnockStatus)
    def _knock_status(self, message: KnockStatus) -> None:
        self.ui.set_status(message.command, message.status)

    def action_delete(self) -> None:
        """Delete the selected row only; an identical row left keeps the shared result."""
        command = self.selected()
        if command is None:
            return
        self.ui.change(
            lambda: self.ui.saved.remove(command),
            f"Deleted {command.display_name}",
            lambda lines: lines.remove_line(command),
        )
        if command not in self.ui.saved.commands:
            self.ui.statuses.pop(command, None)


class CreateView(VerticalScroll):
    """The form that adds a saved command; the command name loses all whitespace as typed
    (names are hashed verbatim, and the saved line form cannot carry spaces)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("ctrl+s", "add", "Add command")]

    def compose(self) -> ComposeResult:
        for label, field_id, value, hint in (
            ("Address", "address", "", "host, host:port, ip:port or [ipv6]:port"),
            ("Command", "command", DEFAULT_COMMAND, "name in the server's commands.toml"),
            ("IP sent", "ip", "", "claimed source IP (optional)"),
            ("Key file", "key_file", "", "own key file (optional; else the Dashboard's key)"),
            ("Wait for port", "wait_port", "", "TCP port to wait for (optional)"),
        ):
            with Horizontal(classes="row"):
                yield Label(label, classes="label")
                yield Input(value, placeholder=hint, id=field_id, compact=True)
        with Horizontal(classes="checks"):
            yield Checkbox("permissive", id="permissive", compact=True)
            yield Checkbox("IPv4 only", id="ipv4", compact=True)
            yield Checkbox("IPv6 only", id="ipv6", compact=True)
        yield Button("Add command", id="add", compact=True)

    @property
    def ui(self) -> RurocoUI:
        assert isinstance(self.app, RurocoUI)
        return self.app

    @on(Input.Changed, "#command")
    def _strip_command(self, event: Input.Changed) -> None:
        stripped = strip_whitespace(event.value)
        if stripped != event.value:
            event.input.value = stripped

    @on(Button.Pressed, "#add")
    def _pressed(self) -> None:
        self.action_add()

    def _value(self, field_id: str) -> str:
        return self.query_one(f"#{field_id}", Input).value.strip()

    def _checked(self, field_id: str) -> bool:
        return self.query_one(f"#{field_id}", Checkbox).value

    def entry(self) -> SavedCommand:
        """The form as an entry; ``ValueError`` with the reason if it cannot be one."""
        address, ip, key_file, port = (
            self._value(f) for f in ("address", "ip", "key_file", "wait_port")
        )
        if not address:
            raise ValueError("An address is needed")
        if ip:
            try:
                parse_ip(ip)
            except ValueError:
                raise ValueError(f"IP sent {ip!r} is not an IP address") from None
        if any(ch.isspace() for ch in key_file):
            raise ValueError("A key file path cannot contain spaces (the saved lines cannot)")
        wait_port = parse_port(port) if port else None
        if port and wait_port is None:
            raise ValueError(f"Wait for port {port!r} is not a port (1-65535)")
        return SavedCommand(
            address=address,
            command=self.query_one("#command", Input).value,
            permissive=self._checked("permissive"),
            ip=ip,
            ipv4=self._checked("ipv4"),
            ipv6=self._checked("ipv6"),
            key_file=key_file or None,
            wait_port=wait_port,
        )

    def action_add(self) -> None:
        """Add the entry and clear the form except the command, as the original does."""
        try:
            command = self.entry()
        except ValueError as exc:
            self.ui.say(f"Not added: {exc}")
            return
        if self.ui.change(
            lambda: self.ui.saved.add(command),
            f"Added {command.display_name}",
            lambda lines: lines.add_line(command),
        ):
            for field_id in ("address", "ip", "key_file", "wait_port"):
                self.query_one(f"#{field_id}", Input).value = ""
            for field_id in ("permissive", "ipv4", "ipv6"):
                self.query_one(f"#{field_id}", Checkbox).value = False


class DashboardView(VerticalScroll):
    """The saved list as text lines, and the key: masked, in memory only."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "save", "Save lines"),
        Binding("ctrl+r", "reset", "Reset lines"),
        Binding("ctrl+g", "generate", "New key"),
        Binding("ctrl+t", "toggle_key", "Show/hide key"),
        Binding("ctrl+o", "reseed", "Reseed"),
    ]

    def compose(self) -> ComposeResult:
        yield TextArea(id="lines", soft_wrap=False, show_line_numbers=False, compact=True)
        with Horizontal(classes="buttons"):
            yield Button("Save lines", id="save", compact=True)
            yield Button("Reset lines", id="reset", compact=True)
        with Horizontal(classes="row"):
            yield Label("Key", classes="label")
            yield Input(
                placeholder="generate (ctrl+g) or paste your key here",
                password=True,
                id="key",
                compact=True,
            )
        yield Label("No key", id="key_id")
        with Horizontal(classes="buttons"):
            yield Button("New key", id="generate", compact=True)
            yield Button("Show key", id="toggle_key", compact=True)
            yield Button("Reseed counter", id="reseed", compact=True)

    @property
    def ui(self) -> RurocoUI:
        assert isinstance(self.app, RurocoUI)
        return self.app

    #: The text the lines were last reset to: any other text is unsaved edits.
    _saved_text = ""
    #: The text a quit was refused for: a second ``ctrl+q`` on the same text quits.
    _quit_warned_text: str | None = None

    def reset_text(self) -> None:
        area = self.query_one("#lines", TextArea)
        area.load_text(render_lines(self.ui.saved.commands))
        self._saved_text = area.text
        self._show_edited()

    @property
    def edited(self) -> bool:
        """Whether the lines hold edits that are not saved."""
        return self.query_one("#lines", TextArea).text != self._saved_text

    def may_quit(self) -> bool:
        """Whether quitting loses nothing, or the operator was told so for these very lines
        (the last ``ctrl+q`` refused the same text): typed lines are work, and the first
        ``ctrl+q`` only says how to keep them."""
        text = self.query_one("#lines", TextArea).text
        if not self.edited or text == self._quit_warned_text:
            return True
        self._quit_warned_text = text
        return False

    @on(TextArea.Changed, "#lines")
    def _show_edited(self) -> None:
        """The box's title says when the lines are no longer the saved list."""
        self.query_one("#lines", TextArea).border_title = (
            "Unsaved edits: ctrl+s saves them, ctrl+r resets"
            if self.edited
            else "Saved commands: one send line each"
        )

    def follow(self, same_change: Callable[[DashboardView], str] | None) -> str:
        """Show the list after a change of it. Unsaved edits are the operator's work, so
        they are kept, and the change made elsewhere is made to them too (``same_change``,
        which returns what to add to the status line); without one the lines are reset."""
        if same_change is None or not self.edited:
            self.reset_text()
            return ""
        return same_change(self)

    def add_line(self, command: SavedCommand) -> str:
        """Append ``command``'s line to the lines, on a line of its own."""
        area = self.query_one("#lines", TextArea)
        end = area.document.end
        area.insert(command.to_line() if end[1] == 0 else "\n" + command.to_line(), end)
        return " (also to your unsaved Dashboard lines)"

    def remove_line(self, command: SavedCommand) -> str:
        """Remove the first line that reads as ``command``, if one does."""
        area = self.query_one("#lines", TextArea)
        lines = area.document.lines
        for row, line in enumerate(lines):
            if not is_blank(line) and SavedCommand.from_line(line) == command:
                if row + 1 < len(lines):
                    area.delete((row, 0), (row + 1, 0))
                else:  # the last line: take the line break before it
                    start = (row - 1, len(lines[row - 1])) if row else (0, 0)
                    area.delete(start, (row, len(line)))
                return " (also from your unsaved Dashboard lines)"
        return " (your unsaved Dashboard lines had no such line)"

    @on(Button.Pressed)
    async def _pressed(self, event: Button.Pressed) -> None:
        if event.button.id in ("save", "reset", "generate", "toggle_key", "reseed"):
            await self.run_action(event.button.id)

    def action_save(self) -> None:
        """Replace the whole list with the lines that are not blank, then show it as saved.
        One line that Create would refuse refuses the whole save: the text stays as typed,
        with the cursor on that line, for the operator to fix."""
        area = self.query_one("#lines", TextArea)
        try:
            commands = parse_lines(area.text)
        except LineError as exc:
            area.move_cursor((exc.number - 1, 0))
            self.ui.say(f"Not saved, nothing changed: {exc}")
            return
        n = len(commands)
        self.ui.change(
            lambda: self.ui.saved.set(commands), f"Saved {n} command{'' if n == 1 else 's'}"
        )

    def action_reset(self) -> None:
        self.reset_text()
        self.ui.say("Lines reset to the saved list")

    def action_generate(self) -> None:
        self.query_one("#key", Input).value = generate_key()
        self.ui.say("New key generated: copy it to the server's config dir as <name>.key")

    def action_toggle_key(self) -> None:
        field = self.query_one("#key", Input)
        field.password = not field.password
        self.query_one("#toggle_key", Button).label = "Show key" if field.password else "Hide key"

    def action_reseed(self) -> None:
        try:
            reseed(self.ui.conf_dir)
        except (RurocoError, OSError) as exc:
            self.ui.say(f"Failed to reseed counter: {describe_error(exc)}")
            return
        self.ui.say("Counter reseeded")

    @on(Input.Changed, "#key")
    def _key_changed(self, event: Input.Changed) -> None:
        label = self.query_one("#key_id", Label)
        if is_blank(event.value):
            label.update("No key")
            return
        try:
            label.update(f"Key id: {hex_list(key_id_of(event.value))}")
        except RurocoError as exc:
            label.update(Text(f"Not a key: {describe_error(exc)}"))


class RurocoUI(App[None]):
    """The app: the saved list, the per-entry results and the three views."""

    TITLE = "ruroco"
    ENABLE_COMMAND_PALETTE = False
    CSS = """
    TabbedContent { height: 1fr; }
    #commands { height: 1fr; }
    #empty { padding: 1 2; }
    .row { height: 1; margin: 0 0 1 0; }
    .label { width: 15; }
    .row Input { width: 1fr; }
    .checks { height: 1; margin: 0 0 1 0; }
    .checks Checkbox { margin: 0 2 0 0; }
    .buttons { height: 1; margin: 1 0; }
    .buttons Button { margin: 0 2 0 0; }
    #lines { height: 8; border: round $secondary; }
    #key_id { color: $text-muted; }
    #status { height: auto; min-height: 1; max-height: 3; padding: 0 1; background: $boost; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f1", "show('execute')", "Execute", show=False, priority=True),
        Binding("f2", "show('create')", "Create", show=False, priority=True),
        Binding("f3", "show('dashboard')", "Dashboard", show=False, priority=True),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]
    #: What the first ``ctrl+q`` says while the Dashboard's lines hold unsaved edits.
    UNSAVED_QUIT = "Unsaved Dashboard lines: ctrl+s saves them, ctrl+q again quits without them"
    VIEWS: ClassVar[dict[str, str]] = {
        "execute": "#commands",
        "create": "#address",
        "dashboard": "#lines",
    }

    def __init__(self, conf_dir: str, protocol: int = DEFAULT_PROTOCOL) -> None:
        super().__init__()
        self.conf_dir = conf_dir
        self.protocol = protocol
        self.saved = SavedCommands(conf_dir)
        self.statuses: dict[SavedCommand, Status] = {}

    def compose(self) -> ComposeResult:
        with TabbedContent(initial="execute"):
            with TabPane("F1 Execute", id="execute"):
                yield ExecuteView()
            with TabPane("F2 Create", id="create"):
                yield CreateView()
            with TabPane("F3 Dashboard", id="dashboard"):
                yield DashboardView()
        yield Static(Text(self.saved.message or ""), id="status")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(ExecuteView).refresh_rows()
        self.query_one(DashboardView).reset_text()
        self.query_one("#commands").focus()
        if self.saved.message:
            self.say(self.saved.message)

    @property
    def key(self) -> str:
        """The Dashboard's key text (never stored anywhere else)."""
        return self.query_one("#key", Input).value

    async def action_quit(self) -> None:
        """Quit, unless the Dashboard holds unsaved lines the operator was not yet warned of:
        then show them and say how to keep them; ``ctrl+q`` again quits."""
        if self.query_one(DashboardView).may_quit():
            await super().action_quit()
            return
        self.action_show("dashboard")
        self.say(self.UNSAVED_QUIT)

    def action_show(self, view: str) -> None:
        self.query_one(TabbedContent).active = view
        self.query_one(self.VIEWS[view]).focus()

    @on(TabbedContent.TabActivated)
    def _activated(self, event: TabbedContent.TabActivated) -> None:
        view = event.pane.id or ""
        if view in self.VIEWS:
            self.query_one(self.VIEWS[view]).focus()

    def say(self, message: str) -> None:
        """Show one line in the status bar (the UI's log; never the key)."""
        self.query_one("#status", Static).update(Text(message))

    def status_of(self, command: SavedCommand) -> Status:
        return self.statuses.get(command, Status())

    def set_status(self, command: SavedCommand, status: Status) -> None:
        """Record a result and show it in every row of that entry."""
        self.statuses[command] = status
        self.query_one(ExecuteView).refresh_rows()
        selected = self.query_one(ExecuteView).selected()
        if selected == command or status.state == ERROR:
            self.say(f"{command.display_name}: {status.render().plain}")

    def change(
        self,
        edit: Callable[[], None],
        done: str,
        same_change: Callable[[DashboardView], str] | None = None,
    ) -> bool:
        """Apply an edit of the saved list (which saves it), then refresh both list views;
        a failed save is reported and the list in memory kept, as in the original.
        ``same_change`` makes the edit to unsaved Dashboard lines (``DashboardView.follow``)."""
        try:
            edit()
        except (RurocoError, OSError) as exc:
            message, ok = f"Could not save {self.saved.path}: {describe_error(exc)}", False
        else:
            message, ok = done, True
        self.query_one(ExecuteView).refresh_rows()
        self.say(message + self.query_one(DashboardView).follow(same_change))
        return ok
