"""Reading TOML config files with errors that name the file and the key, never the content.

Config errors never echo the file (docs/deviations.md #5): tomllib's messages carry only the
position, and the typed getters here report the key and the expected type, not the value.
"""

from __future__ import annotations

import datetime
import os
import tomllib
from pathlib import Path
from typing import Any, overload

from ruroco import trust
from ruroco.errors import RurocoError, os_reason, qpath


class ConfigError(RurocoError):
    """A config file that cannot be read or does not have the expected shape."""


def read_toml(
    path: str | os.PathLike[str], what: str, trusted: trust.Trust | None = None
) -> dict[str, Any]:
    """Load ``path``; ``what`` names the file's role in messages (e.g. "server config").

    With ``trusted`` the file and the way to it must pass ``ruroco.trust`` first, and the
    content comes from the very descriptor that was checked.
    """
    try:
        if trusted is None:
            with open(path, "rb") as fh:
                raw = fh.read()
        else:
            raw = trusted.read_file(path, what)[0]
    except OSError as exc:
        raise ConfigError(f"Could not read {qpath(path)}: {os_reason(exc)}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(
            f"Could not parse {what} {qpath(path)}: file is not valid UTF-8"
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"Could not parse {what} {qpath(path)}: {exc}") from None
    except RecursionError:  # tomllib recurses per nesting level; a hostile file can be deep
        raise ConfigError(f"Could not parse {what} {qpath(path)}: nesting too deep") from None


class Table:
    """Typed access to one TOML table, with messages that point at ``file: key``."""

    def __init__(self, data: dict[str, Any], path: str | os.PathLike[str], what: str) -> None:
        self.data = data
        self.path = path
        self.what = what

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"Could not parse {self.what} {qpath(self.path)}: {key!s} {problem}")

    @overload
    def text(self, key: str, default: str, required: bool = False) -> str: ...
    @overload
    def text(self, key: str, default: None = None, required: bool = False) -> str | None: ...
    def text(self, key: str, default: str | None = None, required: bool = False) -> str | None:
        if key not in self.data:
            if required:
                raise self.fail(key, "is required")
            return default
        value = self.data[key]
        if not isinstance(value, str):
            raise self.fail(key, f"must be a string, not {value_kind(value)}")
        if "\0" in value:  # the OS would cut the string there, or refuse it with a traceback
            raise self.fail(key, "must not contain a NUL character")
        return value

    @overload
    def path_value(self, key: str, default: Path) -> Path: ...
    @overload
    def path_value(self, key: str, default: None = None) -> Path | None: ...
    def path_value(self, key: str, default: Path | None = None) -> Path | None:
        value = self.text(key)
        return default if value is None else Path(value)

    def flag(self, key: str, default: bool) -> bool:
        if key not in self.data:
            return default
        value = self.data[key]
        if not isinstance(value, bool):
            raise self.fail(key, f"must be true or false, not {value_kind(value)}")
        return value

    def integer(self, key: str, default: int, minimum: int = 0, maximum: int | None = None) -> int:
        if key not in self.data:
            return default
        value = self.data[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"must be an integer, not {value_kind(value)}")
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
            raise self.fail(key, f"must be an integer {bound}")
        return value

    def str_list(self, key: str, required: bool = False) -> list[str] | None:
        if key not in self.data:
            if required:
                raise self.fail(key, "is required")
            return None
        value = self.data[key]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(key, "must be an array of strings")
        for index, item in enumerate(value):
            if "\0" in item:
                raise self.fail(f"{key}[{index}]", "must not contain a NUL character")
        return value


def value_kind(value: object) -> str:
    """How error messages name a TOML value's type ("a string", "a local time", ...)."""
    if isinstance(value, datetime.time):
        return "a local time"
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a float",
        str: "a string",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def basic_string(text: str) -> str:
    """``text`` as a TOML basic string: quotes and backslashes escaped, control characters as
    ``\\uXXXX``, so any key file stem or command name can be written back into TOML."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'
