"""``ruroco-server --check``: validate what the server would load, without side effects.

Used as the Ansible ``validate:`` command, so it must be safe to run against a candidate
file: it reads the config, every key file and (if present) the blocklist, writes nothing,
binds nothing, and reports every problem it can find rather than only the first.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ruroco import trust
from ruroco.configkeys import config_warnings
from ruroco.errors import RurocoError, qpath
from ruroco.ipc import SERVER_LOCK_NAME, check_socket_path
from ruroco.policy import KeyRules
from ruroco.server import blocklist as blocklist_file
from ruroco.server.config import WHAT, ServerConfig, parse_config
from ruroco.server.keys import find_key_files, scan_keys
from ruroco.server.listen import check_address
from ruroco.tomlconfig import read_toml

# os.access decides by the effective ids where the platform can (the ids a daemon acts with).
_EFFECTIVE = os.access in os.supports_effective_ids


@dataclass
class CheckResult:
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    summary: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems

    def attempt(self, step: Callable[[], object]) -> None:
        try:
            step()
        except RurocoError as exc:
            self.problems.append(str(exc))


def check(config_path: str | os.PathLike[str]) -> CheckResult:
    """Everything start would refuse, found without writing or binding anything."""
    result = CheckResult()
    try:
        data = read_toml(config_path, WHAT, trust.ANY_OWNER)
        config = parse_config(data, config_path)
    except RurocoError as exc:
        result.problems.append(str(exc))
        return result
    result.warnings += config_warnings(data, config_path)
    trusted = config.trusted()
    key_dir: str | os.PathLike[str] = config.key_dir()
    try:
        key_dir = config.checked_key_dir(trusted)
        paths = find_key_files(key_dir)
    except RurocoError as exc:
        result.problems.append(str(exc))
        paths = []
    scan = scan_keys(paths, trusted)
    result.problems += scan.problems
    result.warnings += scan.warnings
    for key in scan.keys.values():
        key.wipe()
    if paths:  # no key files at all is reported above; every table would repeat it
        result.attempt(lambda: config.policy(paths, scan.ids, key_dir))
    result.warnings += policy_warnings(config.key_rules, time.time_ns())

    if config.kernel_filter:
        from ruroco.server import kfilter

        result.attempt(lambda: kfilter.check_key_count(len(scan.keys)))
    if config.address is not None:
        address = config.address
        result.attempt(lambda: check_address(address))
    try:
        socket_path = config.checked_socket_path(trusted)
        check_socket_path(socket_path)
        warning = _unreachable_socket(socket_path)
        result.warnings += [warning] if warning else []
    except RurocoError as exc:
        result.problems.append(str(exc))
    entries = _check_blocklist(config, trusted, result)

    if not config.ips:
        ips_note = "no destination IPs (nothing will be accepted)"
    else:
        ips_note = f"{len(config.ips)} destination IP(s)"
    blocklist_path = config.blocklist_path()
    result.summary = (
        f"{qpath(config_path)} OK: {ips_note}, {len(scan.keys)} key(s) in {qpath(key_dir)}, "
        f"blocklist {qpath(blocklist_path)} with {len(entries)} entr"
        f"{'y' if len(entries) == 1 else 'ies'}"
        + (", kernel filter on" if config.kernel_filter else "")
        + (", protocol 0 (ruroco 0.14.2) accepted" if config.accept_protocol_0 else "")
        + (f", policy for {len(config.key_rules)} key(s)" if config.key_rules else "")
    )
    return result


def policy_warnings(rules: Iterable[KeyRules], now_ns: int) -> list[str]:
    """Rules that are valid but leave a key unable to run anything: worth a look, not a
    refusal (a key may be retired on purpose by its expiry date)."""
    warnings = []
    for rule in rules:
        if rule.not_after_ns is not None and rule.not_after_ns < now_ns:
            assert rule.not_after is not None
            warnings.append(
                f"{rule.name}.not_after ({rule.not_after.isoformat()}) has passed: "
                f"key file {qpath(rule.file_name)} is refused for every packet"
            )
        if rule.commands == ():
            warnings.append(f"{rule.name}.commands is empty: {qpath(rule.file_name)} runs nothing")
        if rule.sources == ():
            warnings.append(
                f"{rule.name}.sources is empty: {qpath(rule.file_name)} is refused from everywhere"
            )
    return warnings


def _check_blocklist(
    config: ServerConfig, trusted: trust.Trust, result: CheckResult
) -> dict[bytes, int]:
    """The blocklist directory (if it exists yet: systemd may create it at start) and file."""
    blocklist_path = config.blocklist_path()
    if not os.path.lexists(blocklist_path.parent):
        return {}
    try:
        directory = trusted.directory(blocklist_path.parent, "blocklist_dir")
    except RurocoError as exc:
        result.problems.append(str(exc))
        return {}
    problem = _unwritable(directory, qpath(blocklist_path.parent))
    if problem:
        result.problems.append(problem)
    try:
        return blocklist_file.read_file(blocklist_path, trusted)
    except RurocoError as exc:
        named = qpath(blocklist_path)
        result.problems.append(str(exc) if named in str(exc) else f"{exc} ({named})")
        return {}


def _unwritable(directory: str, shown: str) -> str | None:
    """Why the server, run as this user, could not start with ``directory`` as its
    ``blocklist_dir``: it creates ``server.lock`` there and replaces the blocklist by
    rename, so it needs to write the directory and the lock file. (As root, as the role's
    ``validate`` runs it, everything is writable: the check is for a run as the service
    account, where start failed on the lock while ``--check`` said OK.)"""
    uid = os.geteuid()
    if not os.access(directory, os.W_OK | os.X_OK, effective_ids=_EFFECTIVE):
        return f"Refusing blocklist_dir {shown}: this user (uid {uid}) cannot write there"
    lock = os.path.join(directory, SERVER_LOCK_NAME)
    if os.path.lexists(lock) and not os.access(lock, os.W_OK, effective_ids=_EFFECTIVE):
        return f"Refusing blocklist_dir {shown}: this user (uid {uid}) cannot write {qpath(lock)}"
    return None


def _unreachable_socket(socket_path: Path) -> str | None:
    """A warning when this user could not connect to the commander's socket as it is now:
    every accepted knock would then be dropped with "Permission denied". Not a refusal: the
    commander may not run yet, and creates its socket for ``socket_user`` when it starts."""
    directory = str(socket_path.parent)
    if os.path.isdir(directory) and not os.access(directory, os.X_OK, effective_ids=_EFFECTIVE):
        return (
            f"socket_dir {qpath(directory)} cannot be entered by this user (uid "
            f"{os.geteuid()}): the server could hand over no request"
        )
    if os.path.exists(socket_path) and not os.access(
        socket_path, os.W_OK, effective_ids=_EFFECTIVE
    ):
        return (
            f"the commander's socket {qpath(socket_path)} does not let this user (uid "
            f"{os.geteuid()}) connect: the server could hand over no request; is socket_user "
            "the account the server runs as?"
        )
    return None
