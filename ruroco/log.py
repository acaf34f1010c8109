"""The project's logger: one line per event, journald-friendly, never crashes the caller.

Format ``[YYYY-MM-DDTHH:MM:SS.mmmZ LEVEL ] message`` (as the original), info/debug to stdout,
error to stderr, colour only on a TTY. Control characters in a message (newlines in command
output, for instance) are escaped so that every event stays on exactly one line and nothing
a client influences can forge a second log line. Debug lines appear only with
``RUROCO_LOG=debug``; callers on hot paths check ``debug_enabled()`` before formatting.
"""

from __future__ import annotations

import os
import sys
import time

_COLOURS = {"INFO": "32", "DEBUG": "36", "ERROR": "31"}
_ESCAPES = {i: f"\\x{i:02x}" for i in range(32)} | {10: "\\n", 13: "\\r", 9: "\\t", 127: "\\x7f"}

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


def format_line(level: str, message: str, colour: bool = False, ns: int | None = None) -> str:
    return f"[{timestamp(ns)} {colourize(level, colour)} ] {message.translate(_ESCAPES)}\n"


def _emit(level: str, message: str, stream_name: str) -> None:
    stream = getattr(sys, stream_name)
    if stream is None:
        return
    try:
        fd = stream.fileno()
        colour = _tty.get(fd)
        if colour is None:
            colour = _tty[fd] = stream.isatty()
    except (OSError, ValueError, AttributeError):
        colour = False
    try:
        stream.write(format_line(level, message, colour))
        stream.flush()
    except (OSError, ValueError):
        pass  # a closed journal or pipe must never take the daemon down


def info(message: str) -> None:
    _emit("INFO", message, "stdout")


def error(message: str) -> None:
    _emit("ERROR", message, "stderr")


def debug(message: str) -> None:
    if debug_enabled():
        _emit("DEBUG", message, "stdout")
