"""Key discovery (spec §3.4): every ``*.key`` file directly in the config directory.

Keys are indexed by their public 8-byte id so the packet path finds the key with one dict
lookup. Two files with the same id would make the choice of key depend on directory order,
so startup refuses them instead.
"""

from __future__ import annotations

import os
from pathlib import Path

from ruroco.errors import RurocoError, qpath
from ruroco.protocol import Key, ProtocolError, parse_key


def _is_key_name(name: str) -> bool:
    """Rust's ``extension() == "key"``: a leading dot alone (``.key``) is not an extension."""
    stem, dot, ext = name.rpartition(".")
    return bool(dot) and bool(stem) and ext == "key"


def find_key_files(directory: str | os.PathLike[str]) -> list[Path]:
    """Regular files (symlinks followed) named ``*.key``, non-recursive, sorted by name."""
    try:
        entries = list(os.scandir(directory))
    except OSError as exc:
        raise RurocoError(
            f"Error reading directory {qpath(directory)}: {exc.strerror} (os error {exc.errno})"
        ) from None
    found: list[Path] = []
    for entry in entries:
        if not _is_key_name(entry.name):
            continue
        try:
            if entry.is_file(follow_symlinks=True):
                found.append(Path(entry.path))
        except OSError:
            continue  # cannot stat: skipped, as the original does
    if not found:
        raise RurocoError(f"Could not find any .key files in {qpath(directory)}")
    return sorted(found)


def load_key_file(path: Path) -> Key:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = f"{exc.strerror} (os error {exc.errno})" if isinstance(exc, OSError) else exc
        raise RurocoError(f"Could not read key file {qpath(path)}: {reason}") from None
    try:
        return parse_key(text)
    except ProtocolError as exc:
        raise RurocoError(f"Could not load key {qpath(path)}: {exc}") from None


def load_keys(paths: list[Path]) -> dict[bytes, Key]:
    """Parse every file; any failure or a repeated key id aborts (fail closed)."""
    keys: dict[bytes, Key] = {}
    origin: dict[bytes, Path] = {}
    for path in paths:
        key = load_key_file(path)
        if key.key_id in keys:
            raise RurocoError(
                "Duplicate key files detected; refusing to start "
                f"({qpath(origin[key.key_id])} and {qpath(path)} have the same key id)"
            )
        keys[key.key_id] = key
        origin[key.key_id] = path
    return keys
