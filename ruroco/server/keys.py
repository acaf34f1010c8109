"""Key discovery: every ``*.key`` file directly in the config directory (docs/files.md, Key files).

Keys are indexed by their public 8-byte id so the packet path finds the key with one dict
lookup. Two files with the same id would make the choice of key depend on directory order,
so startup refuses them instead.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from ruroco import log
from ruroco.errors import RurocoError, os_reason, qpath
from ruroco.protocol import Key, ProtocolError, parse_key
from ruroco.trust import Trust


def _is_key_name(name: str) -> bool:
    """Rust's ``extension() == "key"``: a leading dot alone (``.key``) is not an extension."""
    stem, dot, ext = name.rpartition(".")
    return bool(dot) and bool(stem) and ext == "key"


def find_key_files(directory: str | os.PathLike[str]) -> list[Path]:
    """Regular files (symlinks followed) named ``*.key``, non-recursive, sorted by name."""
    try:
        entries = list(os.scandir(directory))
    except OSError as exc:
        raise RurocoError(f"Error reading directory {qpath(directory)}: {os_reason(exc)}") from None
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


def read_key_file(path: Path, trusted: Trust | None = None) -> tuple[Key, str | None]:
    """The key and, if its file is readable by every user, a warning to log.

    A key file that someone untrusted can write (or could swap, through a link or a parent
    directory) is refused: they could put in a key of their own. The checks are made on the
    descriptor that is read (docs/security.md).
    """
    trusted = trusted or Trust.of_process()
    try:
        raw, st = trusted.read_file(path, "key file", max_size=4096)
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RurocoError(f"Could not read key file {qpath(path)}: {os_reason(exc)}") from None
    try:
        key = parse_key(text)
    except ProtocolError as exc:
        raise RurocoError(f"Could not load key {qpath(path)}: {exc}") from None
    warning = None
    if st.st_mode & stat.S_IROTH:
        warning = (
            f"Key file {qpath(path)} is readable by every user on this host "
            f"(mode {stat.S_IMODE(st.st_mode):04o}): anyone who can read it can knock; "
            "run chmod o-r on it"
        )
    return key, warning


@dataclass
class KeyScan:
    """Everything found in the key files; ``problems`` non-empty means "refuse to start"."""

    keys: dict[bytes, Key] = field(default_factory=dict)
    # file name -> key id, for binding the [keys.<stem>] rules (ruroco.policy)
    ids: dict[str, bytes] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def scan_keys(paths: list[Path], trusted: Trust | None = None) -> KeyScan:
    """Read every file and collect all problems (``--check`` reports them all at once).

    Two files with the same key id are a problem: which key a packet meets would depend on
    directory order.
    """
    scan = KeyScan()
    origin: dict[bytes, Path] = {}
    for path in paths:
        try:
            key, warning = read_key_file(path, trusted)
        except RurocoError as exc:
            scan.problems.append(str(exc))
            continue
        if warning:
            scan.warnings.append(warning)
        if key.key_id in scan.keys:
            scan.problems.append(
                "Duplicate key files detected; refusing to start "
                f"({qpath(origin[key.key_id])} and {qpath(path)} have the same key id)"
            )
            key.wipe()
            continue
        scan.keys[key.key_id] = key
        scan.ids[path.name] = key.key_id
        origin[key.key_id] = path
    return scan


def load_scan(paths: list[Path], trusted: Trust | None = None) -> KeyScan:
    """Every key (and which file it came from), or the first problem raised (fail closed);
    warnings are logged."""
    scan = scan_keys(paths, trusted)
    if scan.problems:
        for key in scan.keys.values():
            key.wipe()
        raise RurocoError(scan.problems[0])
    for warning in scan.warnings:
        log.error(warning)
    return scan


def load_keys(paths: list[Path], trusted: Trust | None = None) -> dict[bytes, Key]:
    """Every key, or the first problem raised (fail closed); warnings are logged."""
    return load_scan(paths, trusted).keys
