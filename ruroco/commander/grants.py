"""``[grants]`` in ``commands.toml``: ports that only a live grant opens (docs/grants.md).

Each ``[grants.NAME]`` table becomes two commands clients can name, ``open_NAME`` and
``close_NAME``; what they do to the kernel is in ``ruroco.commander.nft`` and
``ruroco.commander.guard``. This module is the pure part: the shape of a grant and the
parsing, so ``--check`` and the daemon refuse exactly the same files.

A grant's name becomes part of nftables object names (``NAME_v4``, ``NAME_v6``) and of log
lines, so it is stricter than a command name: a letter, then letters, digits or ``_``.
Problems are raised as ``ValueError`` with a one-line reason; ``commands.py`` adds the file.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any

from ruroco.limits import U16_MAX, U32_MAX

PROTOCOLS = ("tcp", "udp")
NAME_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,31}\Z")
# nft's own parser refuses longer element timeouts (milliseconds in a u32), so a longer one
# would make `nft list` output that cannot be loaded again: about 49.7 days.
MAX_TIMEOUT_SEC = U32_MAX // 1000
GRANT_KEYS = frozenset({"ports", "timeout_sec"})
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+\Z")
_PORT = re.compile(r"(?P<proto>[a-z]+)/(?P<first>[1-9][0-9]{0,4})(?:-(?P<last>[1-9][0-9]{0,4}))?\Z")


@dataclass(frozen=True, order=True)
class PortRange:
    """``proto/first`` or ``proto/first-last`` (both ends included)."""

    proto: str
    first: int
    last: int

    def __str__(self) -> str:
        tail = "" if self.first == self.last else f"-{self.last}"
        return f"{self.proto}/{self.first}{tail}"


@dataclass(frozen=True)
class Grant:
    name: str
    ports: tuple[PortRange, ...]
    timeout_sec: int

    @property
    def open_name(self) -> str:
        return f"open_{self.name}"

    @property
    def close_name(self) -> str:
        return f"close_{self.name}"

    def set_name(self, ipv6: bool) -> str:
        return f"{self.name}_v6" if ipv6 else f"{self.name}_v4"

    def ports_text(self) -> str:
        return ", ".join(str(p) for p in self.ports)


class Action(enum.Enum):
    OPEN = "open"
    CLOSE = "close"


@dataclass(frozen=True)
class GrantAction:
    """What ``open_NAME`` / ``close_NAME`` names: a grant and what to do with it."""

    grant: Grant
    action: Action

    @property
    def name(self) -> str:
        return self.grant.open_name if self.action is Action.OPEN else self.grant.close_name


def parse_port(text: object) -> PortRange:
    """``"tcp/22"`` or ``"udp/60000-61000"``; ``ValueError`` with the reason otherwise."""
    if not isinstance(text, str):
        raise ValueError('a port must be a string like "tcp/22" or "tcp/8000-8100"')
    match = _PORT.match(text)
    if match is None:
        raise ValueError(f'port {text!r} is not proto/port or proto/first-last (e.g. "tcp/22")')
    proto = match["proto"]
    if proto not in PROTOCOLS:
        raise ValueError(f"port {text!r} has protocol {proto!r}; use one of {', '.join(PROTOCOLS)}")
    first = int(match["first"])
    last = int(match["last"]) if match["last"] is not None else first
    if first > U16_MAX or last > U16_MAX:
        raise ValueError(f"port {text!r} is above {U16_MAX}")
    if last < first:
        raise ValueError(f"port {text!r} is a range whose end is below its start")
    return PortRange(proto, first, last)


def merge_ports(ports: tuple[PortRange, ...] | list[PortRange]) -> tuple[PortRange, ...]:
    """Sorted, with overlapping or adjacent ranges of one protocol joined: nftables refuses
    overlapping intervals in one set, and ``tcp/22`` next to ``tcp/20-30`` means the same."""
    merged: list[PortRange] = []
    for port in sorted(ports):
        last = merged[-1] if merged else None
        if last is not None and last.proto == port.proto and port.first <= last.last + 1:
            merged[-1] = PortRange(last.proto, last.first, max(last.last, port.last))
        else:
            merged.append(port)
    return tuple(merged)


def parse_grant(name: object, value: object) -> Grant:
    """One ``[grants.NAME]`` table; ``ValueError`` naming the problem (not the file)."""
    if not isinstance(name, str) or NAME_PATTERN.match(name) is None:
        raise ValueError(
            f"grant {name!r} needs a name of a letter then up to 31 letters, digits or _"
        )
    where = f"grant {name!r}"
    if not isinstance(value, dict):
        raise ValueError(f"{where} must be a table with `ports` and `timeout_sec`")
    unknown = sorted(str(k) for k in value if k not in GRANT_KEYS)
    if unknown:
        shown = (k if _BARE_KEY.match(k) else repr(k) for k in unknown)  # one line, always
        raise ValueError(f"{where} has unknown key(s) {', '.join(shown)}")
    ports = value.get("ports")
    if not isinstance(ports, list) or not ports:
        raise ValueError(f'{where} needs `ports`, a non-empty array like ["tcp/22"]')
    try:
        parsed = merge_ports([parse_port(p) for p in ports])
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    timeout = value.get("timeout_sec")
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int)
        or not 1 <= timeout <= MAX_TIMEOUT_SEC
    ):
        raise ValueError(f"{where} needs `timeout_sec`, an integer 1 … {MAX_TIMEOUT_SEC}")
    return Grant(name, parsed, timeout)


def parse_grants(table: Any) -> tuple[Grant, ...]:
    """The ``[grants]`` table (absent = no grants), in file order."""
    if table is None:
        return ()
    if not isinstance(table, dict):
        raise ValueError("`grants` must be a table of [grants.NAME] tables")
    return tuple(parse_grant(name, value) for name, value in table.items())


def actions_of(grants: tuple[Grant, ...]) -> dict[str, GrantAction]:
    """Command name → action, for every grant."""
    found: dict[str, GrantAction] = {}
    for grant in grants:
        for action in Action:
            entry = GrantAction(grant, action)
            found[entry.name] = entry
    return found
