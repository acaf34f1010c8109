"""The project's logger: one line per event, journald-friendly, never crashes the caller.

Format ``[YYYY-MM-DDTHH:MM:SS.mmmZ LEVEL ] message`` (as the original), info/debug to stdout,
error to stderr, colour only on a TTY. Debug lines appear only with ``RUROCO_LOG=debug``;
callers on hot paths check ``debug_enabled()`` before formatting.

Escaping: nothing a message contains (command output, for instance) can forge a second log
line, split one, or change how a terminal or log viewer shows it. These characters are
written as text instead:

* ``\\n``, ``\\r``, ``\\t`` for newline, carriage return and tab;
* every other character that Python does not call printable (``str.isprintable``: controls,
  format characters such as bidi overrides and zero-width spaces, separators other than the
  space, surrogates, private-use and unassigned code points) as ``\\xNN``, ``\\uNNNN`` or
  ``\\UNNNNNNNN`` by its code point, so NEL is ``\\x85``, CSI ``\\x9b``, the line separator
  ``\\u2028`` and a right-to-left override ``\\u202e``. Lone surrogates (from undecodable
  file names) would otherwise make the write fail.

A backslash itself is left as is, so the escapes are for reading, not for decoding.

Length: a logged message is capped at ``MAX_MESSAGE_CHARS`` characters of escaped text;
the rest is replaced by ``… (N more characters not logged)`` where N counts characters of
the original message. At most 4 UTF-8 bytes per character plus the prefix keeps every line
below journald's default line limit (``LineMax=48K``), which would otherwise split it.
``escape_capped`` applies the same escaping and cap to one part of a message, so a caller
that logs several long parts in one message (a command's stdout and stderr) can cap each
part and keep all of them visible.
"""

from __future__ import annotations

import io
import os
import sys
import time
from bisect import bisect_right
from itertools import accumulate

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: typing costs the client's cold start ~10 ms
if TYPE_CHECKING:
    from typing import TextIO

_COLOURS = {"INFO": "32", "DEBUG": "36", "ERROR": "31"}


class _EscapeTable(dict[int, str]):
    """``str.translate`` table: a character Python does not call printable becomes its escape.

    Filled on demand (printable characters map to themselves, so each is looked up once);
    cleared when large, since command output may bring many distinct characters.
    """

    def __missing__(self, code: int) -> str:
        if len(self) > 8192:
            self.clear()
        char = chr(code)
        if char.isprintable():
            text = char
        elif code in _SHORT:
            text = _SHORT[code]
        elif code < 0x100:
            text = f"\\x{code:02x}"
        elif code < 0x10000:
            text = f"\\u{code:04x}"
        else:
            text = f"\\U{code:08x}"
        self[code] = text
        return text


_SHORT = {0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t"}
_ESCAPES = _EscapeTable()

# Escaped characters per logged message: 12,000 × 4 UTF-8 bytes + prefix < 48 KiB.
MAX_MESSAGE_CHARS = 12_000
# Suggested cap for one part of a message, such as one output stream of a command.
MAX_PART_CHARS = 4096
# Smallest cap ``escape_capped`` accepts: room for the marker with any count.
MIN_CAP = 64

_debug: bool | None = None
_tty: dict[int, bool] = {}


def parse_log_env(value: str | None) -> bool:
    """``RUROCO_LOG`` enables debug lines when it equals ``debug`` in any case."""
    return value is not None and value.lower() == "debug"


def debug_enabled() -> bool:
    global _debug
    if _debug is None:
        _debug = parse_log_env(os.environ.get("RUROCO_LOG"))
    return _debug


def timestamp(ns: int | None = None) -> str:
    """UTC time with millisecond precision, 24 characters, ending in ``Z``."""
    ns = time.time_ns() if ns is None else ns
    secs, rem = divmod(ns, 1_000_000_000)
    t = time.gmtime(secs)
    return (
        f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T"
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.{rem // 1_000_000:03d}Z"
    )


def colourize(level: str, colour: bool) -> str:
    return f"\x1b[{_COLOURS[level]}m{level}\x1b[0m" if colour else level


def escape(text: str) -> str:
    """``text`` with every character listed in the module docstring escaped; no cap."""
    # Every escaped character is non-printable, so the common case skips the table.
    return text if text.isprintable() else text.translate(_ESCAPES)


def _marker(omitted: int) -> str:
    return f" … ({omitted} more characters not logged)"


def escape_capped(text: str, limit: int = MAX_PART_CHARS) -> str:
    """``escape(text)``, cut to at most ``limit`` characters including the marker.

    An escape sequence is never cut in half. The result contains nothing ``escape`` would
    change, so escaping it again (as ``format_line`` does) leaves it as it is.
    """
    if limit < MIN_CAP:
        raise ValueError(f"limit must be at least {MIN_CAP}, not {limit}")
    if len(text) <= limit:
        escaped = escape(text)
        if len(escaped) <= limit:
            return escaped
    budget = limit - len(_marker(len(text)))  # the real count has no more digits
    table = _ESCAPES
    pieces = [table[ord(c)] for c in text[:budget]]  # each piece is at least one character
    kept = bisect_right(list(accumulate(map(len, pieces))), budget)
    return "".join(pieces[:kept]) + _marker(len(text) - kept)


def format_line(level: str, message: str, colour: bool = False, ns: int | None = None) -> str:
    text = escape_capped(message, MAX_MESSAGE_CHARS)
    return f"[{timestamp(ns)} {colourize(level, colour)} ] {text}\n"


def _colour(stream: TextIO) -> bool:
    """Colour only on a TTY; whether a descriptor is one is asked once."""
    # A StringIO (the Ansible action plugin collects the client's lines in one) has no
    # descriptor: asking for it would raise, for every line.
    if type(stream) is io.StringIO:
        return False
    try:
        fd = stream.fileno()
        colour = _tty.get(fd)
        if colour is None:
            colour = _tty[fd] = stream.isatty()
    except (OSError, ValueError, AttributeError):
        colour = False
    return colour


def _emit(level: str, message: str, stream_name: str) -> None:
    stream = getattr(sys, stream_name)
    if stream is None:
        return
    colour = _colour(stream)
    line = format_line(level, message, colour)
    try:
        try:
            stream.write(line)
        except UnicodeEncodeError:  # a non-UTF-8 locale: write the line, not nothing
            encoding = getattr(stream, "encoding", None) or "ascii"
            stream.write(line.encode(encoding, "backslashreplace").decode(encoding))
        stream.flush()
    except (OSError, ValueError, LookupError):
        pass  # a closed journal or pipe must never take the daemon down


def info(message: str) -> None:
    _emit("INFO", message, "stdout")


def error(message: str) -> None:
    _emit("ERROR", message, "stderr")


def debug(message: str) -> None:
    if debug_enabled():
        _emit("DEBUG", message, "stdout")
