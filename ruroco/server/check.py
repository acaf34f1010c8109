"""``ruroco-server --check``: validate what the server would load, without side effects.

Used as the Ansible ``validate:`` command, so it must be safe to run against a candidate
file: it reads the config, every key file and (if present) the blocklist, writes nothing,
binds nothing, and reports every problem it can find rather than only the first.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ruroco.errors import RurocoError, qpath
from ruroco.protocol import Key
from ruroco.server import blocklist as blocklist_file
from ruroco.server.config import load_config
from ruroco.server.keys import find_key_files, load_key_file


@dataclass
class CheckResult:
    problems: list[str] = field(default_factory=list)
    summary: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems


def check(config_path: str | os.PathLike[str]) -> CheckResult:
    result = CheckResult()
    try:
        config = load_config(config_path)
    except RurocoError as exc:
        result.problems.append(str(exc))
        return result

    key_dir = config.key_dir()
    keys: dict[bytes, Key] = {}
    origin: dict[bytes, str] = {}
    try:
        paths = find_key_files(key_dir)
    except RurocoError as exc:
        result.problems.append(str(exc))
        paths = []
    for path in paths:
        try:
            key = load_key_file(path)
        except RurocoError as exc:
            result.problems.append(str(exc))
            continue
        if key.key_id in keys:
            result.problems.append(
                "Duplicate key files detected; refusing to start "
                f"({qpath(origin[key.key_id])} and {qpath(path)} have the same key id)"
            )
        else:
            keys[key.key_id] = key
            origin[key.key_id] = str(path)
        key.wipe()

    if config.kernel_filter:
        from ruroco.server import kfilter

        try:
            kfilter.check_key_count(len(keys))
        except RurocoError as exc:
            result.problems.append(str(exc))

    blocklist_path = config.blocklist_path()
    try:
        entries = blocklist_file.read_file(blocklist_path)
    except RurocoError as exc:
        named = qpath(blocklist_path)
        result.problems.append(str(exc) if named in str(exc) else f"{exc} ({named})")
        entries = {}

    if not config.ips:
        ips_note = "no destination IPs (nothing will be accepted)"
    else:
        ips_note = f"{len(config.ips)} destination IP(s)"
    result.summary = (
        f"{qpath(config_path)} OK: {ips_note}, {len(keys)} key(s) in {qpath(key_dir)}, "
        f"blocklist {qpath(blocklist_path)} with {len(entries)} entr"
        f"{'y' if len(entries) == 1 else 'ies'}"
        + (", kernel filter on" if config.kernel_filter else "")
    )
    return result
