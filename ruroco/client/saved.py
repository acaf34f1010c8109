"""The saved commands of the terminal UI: ``<conf dir>/commands_list.toml`` (docs/ui.md).

The file is the original GUI's: a TOML table ``list`` of entries with six fields
(``address``, ``command``, ``permissive``, ``ip``, ``ipv4``, ``ipv6``), or, in its older
form, a list of ``send --address …`` text lines. Two optional fields are ours (``key_file``,
``wait_port``; docs/deviations.md #22), written only when set: a list without them is
written in the original's form with the original's fields only, and the original, which
ignores keys it does not know, still loads ours.

No Textual here: the model is tested on its own and could serve another front end.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ruroco.errors import os_reason, qpath
from ruroco.fs import resolve_path, write_atomic
from ruroco.ipaddr import parse_ip
from ruroco.tomlconfig import basic_string

FILE_NAME = "commands_list.toml"
#: Where the content of a file that could not be parsed is kept before the first save
#: replaces it (the original overwrites it).
UNPARSABLE_SUFFIX = ".unparsable"
DEFAULT_COMMAND = "default"

# Rust's ``char::is_whitespace`` (Unicode White_Space), which the original's
# ``split_whitespace`` and ``trim`` use. Python's ``str.split()`` differs: it also splits at
# U+001C … U+001F.
RUST_WHITESPACE = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


def split_whitespace(text: str) -> list[str]:
    """``text`` split at runs of Rust whitespace, no empty parts (no quoting, as the original)."""
    parts: list[str] = []
    current: list[str] = []
    for ch in text:
        if ch in RUST_WHITESPACE:
            if current:
                parts.append("".join(current))
                current = []
        else:
            current.append(ch)
    if current:
        parts.append("".join(current))
    return parts


def strip_whitespace(text: str) -> str:
    """``text`` without any whitespace: what the Create view keeps of a command name."""
    return "".join(ch for ch in text if ch not in RUST_WHITESPACE)


def is_blank(text: str) -> bool:
    """Rust's ``text.trim().is_empty()``."""
    return all(ch in RUST_WHITESPACE for ch in text)


def parse_port(text: str) -> int | None:
    """A TCP port 1 … 65535 in ASCII digits; None otherwise."""
    if not (text.isascii() and text.isdigit()):
        return None
    value = int(text)
    return value if 0 < value <= 65535 else None


@dataclass(frozen=True)
class SavedCommand:
    """One saved command: what ``ruroco-client send`` needs except the key.

    ``key_file`` (a key of its own instead of the Dashboard's) and ``wait_port`` (a TCP port
    on the address's host to wait for after the knock) are the two optional fields of ours.
    """

    address: str = ""
    command: str = DEFAULT_COMMAND
    permissive: bool = False
    ip: str = ""
    ipv4: bool = False
    ipv6: bool = False
    key_file: str | None = None
    wait_port: int | None = None

    @property
    def display_name(self) -> str:
        """``command@address`` and the set flags, as the original's rows show it."""
        flags = [
            name
            for name, on in (
                ("permissive", self.permissive),
                ("ipv4", self.ipv4),
                ("ipv6", self.ipv6),
            )
            if on
        ]
        return " ".join([f"{self.command}@{self.address}", *flags])

    @property
    def sort_key(self) -> tuple[str, str]:
        """The original's order: by command, then address (code points = UTF-8 bytes)."""
        return (self.command, self.address)

    def to_line(self) -> str:
        """The original's text line (``send --address … --permissive``), then our fields."""
        parts = ["send"]
        if not is_blank(self.address):
            parts += ["--address", self.address]
        if not is_blank(self.command):
            parts += ["--command", self.command]
        if not is_blank(self.ip):
            parts += ["--ip", self.ip]
        flags = (("--ipv4", self.ipv4), ("--ipv6", self.ipv6), ("--permissive", self.permissive))
        parts += [flag for flag, on in flags if on]
        if self.key_file is not None and not is_blank(self.key_file):
            parts += ["--key-file", self.key_file]
        if self.wait_port is not None:
            parts += ["--wait-port", str(self.wait_port)]
        return _rstrip(" ".join(parts))

    @classmethod
    def from_line(cls, line: str) -> SavedCommand:
        """Parse a text line as the original does: whitespace-separated tokens, no quoting;
        ``--address``/``--command``/``--ip`` take the next token whatever it is, the three
        flags count anywhere, everything else is ignored and a missing field is empty.
        ``--key-file PATH`` and ``--wait-port N`` are ours (an invalid port is ignored).
        Lenient, because the legacy file holds such lines; ``check_line`` is the strict one."""
        values: dict[str, Any] = {"address": "", "command": "", "ip": ""}
        for option, value in _options(split_whitespace(line)):
            name = option[2:].replace("-", "_")
            if option in _FLAGS:
                values[name] = True
            elif value is not None:
                values[name] = parse_port(value) if option == "--wait-port" else value
        return cls(**values)


_VALUE_OPTIONS = ("--address", "--command", "--ip", "--key-file", "--wait-port")
_FLAGS = ("--ipv4", "--ipv6", "--permissive")


def _options(tokens: list[str]) -> Iterator[tuple[str, str | None]]:
    """The options in a line's tokens, as the original reads them: an option with a value
    takes the next token whatever it is (None if the line ends), a flag stands alone, and
    any other word is skipped."""
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token in _VALUE_OPTIONS:
            i += 1
            yield token, tokens[i] if i < len(tokens) else None
        elif token in _FLAGS:
            yield token, None
        i += 1


def check_line(line: str) -> SavedCommand:
    """A line typed in the Dashboard as an entry, refusing what the Create form refuses (no
    address, an IP sent that is not an IP, a wait port that is not a port) and an option
    without its value: the lenient reading would save those as a quietly empty or dropped
    field that fails only when the entry is run. ``ValueError`` says why."""
    for option, value in _options(split_whitespace(line)):
        if value is None:
            if option in _VALUE_OPTIONS:
                raise ValueError(f"{option} has no value")
        elif option == "--wait-port" and parse_port(value) is None:
            raise ValueError(f"--wait-port {value!r} is not a port (1-65535)")
        elif option == "--ip":
            try:
                parse_ip(value)
            except ValueError:
                raise ValueError(f"--ip {value!r} is not an IP address") from None
    entry = SavedCommand.from_line(line)
    if is_blank(entry.address):
        raise ValueError("no --address (an address is needed)")
    return entry


def _rstrip(text: str) -> str:
    """Rust's ``trim_end``: strip trailing whitespace as Rust counts it."""
    end = len(text)
    while end and text[end - 1] in RUST_WHITESPACE:
        end -= 1
    return text[:end]


def sort_commands(commands: list[SavedCommand]) -> list[SavedCommand]:
    """Sorted by ``(command, address)``, stable, as the original keeps its list."""
    return sorted(commands, key=lambda c: c.sort_key)


class LineError(ValueError):
    """A line of the Dashboard's text that cannot be saved: its number (from 1) and why."""

    def __init__(self, number: int, reason: str) -> None:
        super().__init__(f"line {number}: {reason}")
        self.number = number


def parse_lines(text: str) -> list[SavedCommand]:
    """The Dashboard's text: one entry per line that is not blank (``check_line``). The first
    line that is not an entry raises ``LineError``: saving part of the lines would drop the
    rest from the list without a word."""
    commands = []
    for number, line in enumerate(text.splitlines(), 1):  # numbered as the TextArea does
        if is_blank(line):
            continue
        try:
            commands.append(check_line(line))
        except ValueError as exc:
            raise LineError(number, str(exc)) from None
    return commands


def render_lines(commands: list[SavedCommand]) -> str:
    """The Dashboard's text: one line per entry, newline-separated (no trailing newline)."""
    return "\n".join(c.to_line() for c in commands)


class FormatError(ValueError):
    """Content that is neither the table form nor the legacy string form."""


_STR_FIELDS = ("address", "command", "ip")
_BOOL_FIELDS = ("permissive", "ipv4", "ipv6")


def _from_table(item: object) -> SavedCommand:
    if not isinstance(item, dict):
        raise FormatError("an entry of list is not a table")
    values: dict[str, Any] = {}
    for name in _STR_FIELDS + _BOOL_FIELDS:
        if name not in item:
            raise FormatError(f"an entry has no {name}")
        kind = str if name in _STR_FIELDS else bool
        if not isinstance(item[name], kind):
            raise FormatError(f"{name} of an entry is not a {kind.__name__}")
        values[name] = item[name]
    key_file = item.get("key_file")
    if key_file is not None and not isinstance(key_file, str):
        raise FormatError("key_file of an entry is not a string")
    port = item.get("wait_port")
    if port is not None and (
        isinstance(port, bool) or not isinstance(port, int) or not 0 < port <= 65535
    ):
        raise FormatError("wait_port of an entry is not a port (1-65535)")
    return SavedCommand(**values, key_file=key_file, wait_port=port)


def parse_document(text: str) -> list[SavedCommand]:
    """The entries of a ``commands_list.toml`` text, sorted; ``FormatError`` if it is neither
    form. Unknown keys are ignored, as the original's reader ignores them."""
    try:
        doc = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as exc:
        raise FormatError(f"not TOML: {exc}") from None
    items = doc.get("list")
    if not isinstance(items, list):
        raise FormatError("no list")
    if all(isinstance(item, str) for item in items) and items:
        return sort_commands([SavedCommand.from_line(item) for item in items])
    return sort_commands([_from_table(item) for item in items])


def render_document(commands: list[SavedCommand]) -> str:
    """The table form the original writes; our two fields only in entries that have them."""
    if not commands:
        return "list = []\n"
    blocks = []
    for c in commands:
        lines = [
            "[[list]]",
            f"address = {basic_string(c.address)}",
            f"command = {basic_string(c.command)}",
            f"permissive = {_bool(c.permissive)}",
            f"ip = {basic_string(c.ip)}",
            f"ipv4 = {_bool(c.ipv4)}",
            f"ipv6 = {_bool(c.ipv6)}",
        ]
        if c.key_file is not None:
            lines.append(f"key_file = {basic_string(c.key_file)}")
        if c.wait_port is not None:
            lines.append(f"wait_port = {c.wait_port}")
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def _bool(value: bool) -> str:
    return "true" if value else "false"


class SavedCommands:
    """The list in memory and its file: loaded once, saved whole after every change.

    Every change keeps the list sorted and writes it atomically (``ruroco.fs.write_atomic``).
    A file that could not be parsed is left alone at load (``message`` says why) and its
    content is copied to ``commands_list.toml.unparsable`` before the first save replaces it.
    """

    def __init__(self, conf_dir: str | os.PathLike[str]) -> None:
        self.path = str(resolve_path(conf_dir) / FILE_NAME)
        self.commands: list[SavedCommand] = []
        self.message: str | None = None
        self._unparsable: bytes | None = None
        self.load()

    def load(self) -> None:
        """Read the file; a missing or empty one is an empty list without a message."""
        self.commands, self.message, self._unparsable = [], None, None
        try:
            with open(self.path, "rb") as fh:
                raw = fh.read()
        except FileNotFoundError:
            return
        except OSError as exc:
            self.message = f"Could not read {qpath(self.path)}: {os_reason(exc)}"
            return
        try:
            self.commands = parse_document(raw.decode("utf-8"))
        except (UnicodeDecodeError, FormatError) as exc:
            if raw.strip():
                self._unparsable = raw
                reason = "not UTF-8" if isinstance(exc, UnicodeDecodeError) else str(exc)
                self.message = (
                    f"{FILE_NAME} parse failed, starting empty (file preserved): {reason}"
                )

    def add(self, command: SavedCommand) -> None:
        self.set([*self.commands, command])

    def remove(self, command: SavedCommand) -> None:
        """Remove one entry equal to ``command``: the row the operator chose. Equal entries
        are interchangeable, so which one goes does not matter; the original removes all of
        them at once (docs/deviations.md #22)."""
        commands = list(self.commands)
        if command in commands:
            commands.remove(command)
        self.set(commands)

    def set(self, commands: list[SavedCommand]) -> None:
        """Replace the whole list, sort it and save it (``RurocoError`` if saving fails; the
        list in memory is the new one either way, as in the original)."""
        self.commands = sort_commands(commands)
        self.save()

    def save(self) -> None:
        if self._unparsable is not None:
            write_atomic(self.path + UNPARSABLE_SUFFIX, self._unparsable, 0o600)
            self._unparsable = None
        write_atomic(self.path, render_document(self.commands).encode("utf-8"), 0o600)


__all__ = [
    "FILE_NAME",
    "FormatError",
    "LineError",
    "SavedCommand",
    "SavedCommands",
    "check_line",
    "parse_document",
    "parse_lines",
    "render_document",
    "render_lines",
    "sort_commands",
    "split_whitespace",
    "strip_whitespace",
]
