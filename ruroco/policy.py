"""Per-key policy: what each key may do (docs/files.md, ``[keys.<stem>]``; docs/security.md,
Per-key policy).

``parse_rules`` turns the ``[keys]`` table of ``config.toml`` into immutable ``KeyRules``;
``bind`` ties them to key ids once the key files are read, giving a ``Policy``, which the
server's pure decision consults for every authenticated packet (``KeyRules.refusal``). A
``Policy`` is never changed after it is built, so a reload can build a new one and swap it
in with one assignment. Commands are compared by their hash, so the server never needs
``commands.toml``. No cryptography here: the commander's ``--check`` reads the grants too.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

from ruroco.cmdhash import command_hash
from ruroco.errors import qpath
from ruroco.ipaddr import ip_text
from ruroco.tomlconfig import ConfigError, Table, basic_string, value_kind

TABLE = "keys"
FIELDS = ("commands", "sources", "allow_permissive", "not_after")
KEY_SUFFIX = ".key"

_ALL = (1 << 128) - 1
_MAPPED = 0xFFFF << 32
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_MICROSECOND = datetime.timedelta(microseconds=1)
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+\Z")


class Network(NamedTuple):
    """A network over the 16-byte address form (IPv4 as ``::ffff:a.b.c.d``, docs/protocol.md,
    IP addresses), so an IPv4 source seen on a dual-stack socket matches an IPv4 network."""

    base: int
    mask: int
    text: str

    def contains(self, ip: bytes) -> bool:
        return int.from_bytes(ip, "big") & self.mask == self.base


def parse_network(text: str) -> Network:
    """``198.51.100.0/24``, ``2001:db8::/32`` or a single address; ``ValueError`` says why not."""
    if not text.isascii() or "%" in text or text.strip() != text or not text:
        raise ValueError("is not an IP network such as 198.51.100.0/24 or 2001:db8::/32")
    try:
        net = ipaddress.ip_network(text, strict=True)
    except ValueError:
        try:
            loose = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ValueError(
                "is not an IP network such as 198.51.100.0/24 or 2001:db8::/32"
            ) from None
        raise ValueError(f"has host bits set (the network is {loose})") from None
    if net.version == 4:
        base, prefix = _MAPPED | int(net.network_address), 96 + net.prefixlen
    else:
        base, prefix = int(net.network_address), net.prefixlen
    mask = _ALL ^ ((1 << (128 - prefix)) - 1)
    return Network(base, mask, str(net))


def table_name(stem: str) -> str:
    """``keys.laptop``, or ``keys."my.laptop"`` for a stem that is not a bare TOML key."""
    if _BARE_KEY.match(stem):
        return f"{TABLE}.{stem}"
    return f"{TABLE}.{basic_string(stem)}"


@dataclass(frozen=True)
class KeyRules:
    """The rules of one key file (``<stem>.key``); ``None`` means "no restriction"."""

    stem: str
    commands: tuple[str, ...] | None = None
    sources: tuple[Network, ...] | None = None
    allow_permissive: bool = True
    not_after: datetime.datetime | None = None
    command_hashes: frozenset[int] | None = field(init=False, compare=False, repr=False)
    not_after_ns: int | None = field(init=False, compare=False, repr=False)
    name: str = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        hashes = None if self.commands is None else frozenset(map(command_hash, self.commands))
        object.__setattr__(self, "command_hashes", hashes)
        object.__setattr__(self, "not_after_ns", _ns(self.not_after))
        object.__setattr__(self, "name", table_name(self.stem))

    @property
    def file_name(self) -> str:
        return self.stem + KEY_SUFFIX

    def refusal(
        self, cmd_hash: int, src: bytes, ip: bytes, now_ns: int, claimed: bool = False
    ) -> Refusal | None:
        """Why this key may not run ``cmd_hash`` for ``ip``, sent from ``src`` at ``now_ns``
        (wall clock), or None if every rule allows it; ``claimed``: the packet names ``ip``
        itself. Pure: values in, a refusal or None out.

        A refusal that every copy of the packet would meet, whoever sends it and later too,
        uses the packet up (``final``): the command, the expiry, and a claimed address outside
        ``sources``. The others turn on the datagram's source, which anyone who saw the
        packet can change by sending a copy first: such a refusal must not use it up, or that
        copy would make the key holder's own knock a replay (docs/security.md, "Refused
        packets are used up"). The rules that read only the packet and the clock come first."""
        if self.not_after_ns is not None and now_ns > self.not_after_ns:
            assert self.not_after is not None
            why = f"key expired at {self.not_after.isoformat()} ({self.name}.not_after)"
            return Refusal(why, final=True)
        if self.command_hashes is not None and cmd_hash not in self.command_hashes:
            return Refusal(f"command {cmd_hash} is not in {self.name}.commands", final=True)
        sources = self.sources
        # A claim outside ``sources`` is refused from every source: from the claimed address
        # as "source outside", from any other as a claim (or by the strict-source check).
        claim_outside = claimed and sources is not None and not _inside(ip, sources)
        if sources is not None and not _inside(src, sources):
            why = f"source {ip_text(src)} is outside {self.name}.sources"
            return Refusal(why, final=claim_outside)
        if ip != src:
            if not self.allow_permissive:
                why = (
                    f"claimed IP {ip_text(ip)} is not the source and "
                    f"{self.name}.allow_permissive is false"
                )
                return Refusal(why, final=claim_outside)
            if claim_outside:
                return Refusal(f"claimed IP {ip_text(ip)} is outside {self.name}.sources", True)
        return None


def _inside(ip: bytes, networks: tuple[Network, ...]) -> bool:
    return any(n.contains(ip) for n in networks)


class Refusal(NamedTuple):
    """Why the policy refused a packet, and whether that uses the packet up (``final``)."""

    reason: str
    final: bool


def _ns(moment: datetime.datetime | None) -> int | None:
    if moment is None:
        return None
    return (moment - _EPOCH) // _MICROSECOND * 1000


class _Entry(Table):
    """One ``[keys.<stem>]`` table: messages name ``keys.<stem>.<field>``."""

    def __init__(self, data: dict[str, Any], path: str | os.PathLike[str], what: str, name: str):
        super().__init__(data, path, what)
        self.name = name

    def fail(self, key: str, problem: str) -> ConfigError:
        return super().fail(f"{self.name}.{key}", problem)


def parse_rules(
    data: Mapping[str, Any], path: str | os.PathLike[str], what: str
) -> tuple[KeyRules, ...]:
    """The ``[keys]`` table of a parsed ``config.toml``; absent: no rules (every key may do
    everything, as without this feature). Unknown settings in an entry are errors: a
    misspelt restriction must not silently grant everything."""
    if TABLE not in data:
        return ()
    top = Table(dict(data), path, what)
    keys = data[TABLE]
    if not isinstance(keys, dict):
        raise top.fail(TABLE, "must be a table of key file names ([keys.<stem>])")
    rules: list[KeyRules] = []
    for stem, raw in keys.items():
        name = table_name(stem)
        if not isinstance(raw, dict):
            raise top.fail(name, "must be a table (commands, sources, allow_permissive, not_after)")
        entry = _Entry(raw, path, what, name)
        for setting in raw:
            if setting not in FIELDS:
                raise entry.fail(
                    table_name(setting).removeprefix(f"{TABLE}."),
                    f"is not a key setting (expected {', '.join(FIELDS)})",
                )
        commands = entry.str_list("commands")
        sources: list[Network] | None = None
        texts = entry.str_list("sources")
        if texts is not None:
            sources = []
            for index, text in enumerate(texts):
                try:
                    sources.append(parse_network(text))
                except ValueError as exc:
                    raise entry.fail(f"sources[{index}]", str(exc)) from None
        rules.append(
            KeyRules(
                stem=stem,
                commands=None if commands is None else tuple(commands),
                sources=None if sources is None else tuple(sources),
                allow_permissive=entry.flag("allow_permissive", True),
                not_after=_not_after(entry, raw.get("not_after")),
            )
        )
    return tuple(rules)


def _not_after(entry: _Entry, value: object) -> datetime.datetime | None:
    """Only an offset date-time names one instant; a local one would depend on the host's zone."""
    if value is None:
        return None
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            raise entry.fail(
                "not_after",
                "must be an offset date-time such as 2027-06-30T00:00:00Z, not a local "
                "date-time (it has no time zone)",
            )
        return value
    kind = "a bare date" if isinstance(value, datetime.date) else value_kind(value)
    raise entry.fail(
        "not_after", f"must be an offset date-time such as 2027-06-30T00:00:00Z, not {kind}"
    )


class Policy:
    """Key id → ``KeyRules``, read-only; a key without rules may do everything."""

    __slots__ = ("rules",)

    def __init__(self, rules: Mapping[bytes, KeyRules] | None = None) -> None:
        self.rules: Mapping[bytes, KeyRules] = MappingProxyType(dict(rules or {}))

    def __len__(self) -> int:
        return len(self.rules)


EMPTY = Policy()


def bind(
    rules: Iterable[KeyRules],
    key_files: Iterable[str | os.PathLike[str]],
    key_ids: Mapping[str, bytes],
    config_path: str | os.PathLike[str],
    what: str,
    key_dir: str | os.PathLike[str],
) -> Policy:
    """Tie each ``[keys.<stem>]`` to the key id read from ``<stem>.key``.

    ``key_files`` are every key file found (loaded or not); a table naming none of them is
    an error, since a policy for a key that is not there protects nothing and is most
    likely a typo. ``key_ids`` maps a file name to the id read from it.
    """
    names = {os.path.basename(os.fspath(p)) for p in key_files}
    bound: dict[bytes, KeyRules] = {}
    for rule in rules:
        if rule.file_name not in names:
            raise ConfigError(
                f"Could not parse {what} {qpath(config_path)}: {rule.name} names no key file "
                f"(there is no {qpath(rule.file_name)} in {qpath(key_dir)})"
            )
        key_id = key_ids.get(rule.file_name)
        if key_id is not None:
            bound[key_id] = rule
    return Policy(bound)
