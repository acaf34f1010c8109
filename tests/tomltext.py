"""TOML text for the config files tests write: one writer, so every test quotes alike.

``toml_str`` escapes every control character (and DEL) as ``\\uXXXX`` and keeps non-ASCII
text as is; ``json.dumps`` would be shorter but leaves DEL raw and writes characters outside
the BMP as surrogate pairs, both invalid in TOML.
"""

from __future__ import annotations

from collections.abc import Mapping

from ruroco.tomlconfig import basic_string


def toml_str(value: str) -> str:
    """A TOML basic string for any text (control characters as ``\\uXXXX`` escapes)."""
    return basic_string(value)


def toml_document(values: Mapping[str, object]) -> str:
    """Top-level ``key = value`` lines: booleans, integers, lists of strings, else strings."""
    lines = []
    for key, value in values.items():
        if isinstance(value, bool):
            lines.append(f"{key} = {'true' if value else 'false'}")
        elif isinstance(value, int):
            lines.append(f"{key} = {value}")
        elif isinstance(value, (list, tuple)):
            lines.append(f"{key} = [{', '.join(toml_str(str(x)) for x in value)}]")
        else:
            lines.append(f"{key} = {toml_str(str(value))}")
    return "\n".join(lines) + "\n"
