"""What a reload re-reads and what it keeps (docs/files.md, Reload on SIGHUP).

``load_key_set`` is the one way to read the key files and bind the ``[keys]`` policy, used
at start and at every reload, so both apply the same trust checks. The rest is pure: which
settings changed, which of them wait for a restart, the configuration the server runs with
afterwards, and the one line that says what a reload did. ``Server.reload``
(``ruroco.server.server``) does the I/O around them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ruroco.errors import RurocoError, qpath
from ruroco.policy import Policy
from ruroco.protocol import Key
from ruroco.server.config import ServerConfig
from ruroco.server.keys import find_key_files, load_scan

#: Settings a running server cannot change: the socket is kept across a reload (``address``),
#: the instance lock and the floors' file stay where they are (``blocklist_dir``), the
#: commander's socket directory was checked at start (``socket_dir``), and the kernel filter
#: is switched on or off only with the socket it belongs to (``kernel_filter``).
RESTART_ONLY = ("address", "blocklist_dir", "socket_dir", "kernel_filter")

#: Settings a reload applies (besides the key files and ``[keys]``), in the order named.
#: ``accept_protocol_0`` is live: the decision reads it per datagram and a reload re-attaches
#: the kernel filter anyway, so an operator can stop taking 0.14.2 packets the moment the
#: last such client is upgraded, without a restart.
LIVE = (
    "ips",
    "config_dir",
    "max_requests_per_second",
    "max_requests_per_second_global",
    "max_clock_skew_seconds",
    "socket_user",
    "accept_protocol_0",
    "drop_report_seconds",
)


@dataclass(frozen=True)
class KeySet:
    """The keys read from ``key_dir`` and the policy bound to them; ``files`` maps each key
    file's name to its key id."""

    keys: dict[bytes, Key]
    files: Mapping[str, bytes]
    policy: Policy
    key_dir: str | Path

    def wipe(self) -> None:
        for key in self.keys.values():
            key.wipe()


def load_key_set(config: ServerConfig, found: Callable[[list[Path]], None] | None = None) -> KeySet:
    """Every key file of ``config``, checked as docs/security.md says, and the policy.

    ``found`` is told the key files before they are read (start logs them). Any problem
    raises ``RurocoError`` naming the file, with every key read so far wiped.
    """
    trusted = config.trusted()
    key_dir = config.checked_key_dir(trusted)
    paths = find_key_files(key_dir)
    if found is not None:
        found(paths)
    scan = load_scan(paths, trusted)
    keyset = KeySet(scan.keys, dict(scan.ids), Policy(), key_dir)
    try:
        policy = config.policy(paths, scan.ids, key_dir)
        if config.kernel_filter:
            from ruroco.server import kfilter

            try:
                kfilter.check_key_count(len(scan.keys))
            except RurocoError as exc:
                raise RurocoError(f"{exc} (key files in {qpath(key_dir)})") from None
    except RurocoError:
        keyset.wipe()
        raise
    return dataclasses.replace(keyset, policy=policy)


def _effective(config: ServerConfig, name: str) -> object:
    """A restart-only setting as the server uses it (the directories after defaults)."""
    if name == "blocklist_dir":
        return config.blocklist_path()
    if name == "socket_dir":
        return config.socket_path()
    return getattr(config, name)


def needs_restart(running: ServerConfig, new: ServerConfig) -> tuple[str, ...]:
    """The restart-only settings whose (effective) value differs in ``new``."""
    return tuple(n for n in RESTART_ONLY if _effective(running, n) != _effective(new, n))


def live_changes(running: ServerConfig, new: ServerConfig) -> tuple[str, ...]:
    """The live settings that differ in ``new`` (the policy is reported separately)."""
    return tuple(n for n in LIVE if getattr(running, n) != getattr(new, n))


def applied(running: ServerConfig, new: ServerConfig) -> ServerConfig:
    """``new`` with the restart-only settings the server keeps running with.

    The directories are pinned to the ones in use, so a changed ``config_dir`` moves the key
    directory but not a ``blocklist_dir`` or ``socket_dir`` that defaulted to it.
    """
    return dataclasses.replace(
        new,
        address=running.address,
        blocklist_dir=running.blocklist_path().parent,
        socket_dir=running.socket_path().parent,
        kernel_filter=running.kernel_filter,
    )


def restart_line(config_path: str | Path, names: Iterable[str]) -> str:
    """The one line naming the changed settings a reload could not apply."""
    return (
        f"Reload of {qpath(config_path)}: {', '.join(names)} changed but take effect only "
        "after a restart; running on with the values from start"
    )


def _files(names: list[str]) -> str:
    return f" ({', '.join(qpath(n) for n in names)})" if names else ""


def summary(
    config_path: str | Path,
    old: Mapping[str, bytes],
    new: Mapping[str, bytes],
    policy: Policy,
    changed: Iterable[str],
    elapsed_s: float,
) -> str:
    """The one line a successful reload logs: keys added and removed (by key id, named by
    file), the policy in force, the live settings that changed, the time it took."""
    old_ids, new_ids = set(old.values()), set(new.values())
    added = sorted(name for name, key_id in new.items() if key_id not in old_ids)
    removed = sorted(name for name, key_id in old.items() if key_id not in new_ids)
    if len(policy):
        names = sorted({rules.name for rules in policy.rules.values()})
        policy_text = f"per-key policy for {len(policy)} key(s): {', '.join(names)}"
    else:
        policy_text = "no per-key policy"
    settings = ", ".join(changed) or "none"
    return (
        f"Reloaded {qpath(config_path)}: {len(new_ids)} key(s), {len(added)} added"
        f"{_files(added)}, {len(removed)} removed{_files(removed)}; {policy_text}; "
        f"settings changed: {settings}; took {elapsed_s * 1000:.1f} ms"
    )
