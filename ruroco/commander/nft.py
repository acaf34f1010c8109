"""The commander's nftables table ``inet ruroco``, spoken through ``nft -j`` (docs/grants.md).

Everything goes to ``nft`` as JSON on stdin with an argument list, never through a shell and
never as rule text built from strings: names come from ``commands.toml`` (checked by
``grants.NAME_PATTERN``), addresses from the 16-byte message (printed by ``ip_text``).

The table holds, per grant, two sets with ``flags timeout`` (``NAME_v4``, ``NAME_v6``) and one
base chain ``guard`` on the input hook. Its rules, in order:

1. ``ct state established,related accept``: a connection let in once stays up when its grant
   expires (the guard decides about new connections only);
2. per grant and protocol: source in the grant's set and destination port in its ports:
   ``accept`` (ends this chain only; a drop in another table still wins, docs/grants.md);
3. per grant and protocol: destination port in its ports: ``drop``.

Every rule carries a comment ``ruroco:<fingerprint>:<index>``; the fingerprint is a hash of
the whole wanted ruleset, so ``problem`` can tell from one listing whether the table is still
exactly ours without comparing nft's normalised expressions.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

from ruroco.commander.grants import Grant, PortRange
from ruroco.errors import RurocoError, os_reason
from ruroco.ipaddr import MAPPED_PREFIX, ip_text

FAMILY = "inet"
TABLE = "ruroco"
CHAIN = "guard"
# Before the usual filter chains (priority 0) so refused packets cost the others nothing;
# the order does not change the verdict: a drop in any base chain is final.
PRIORITY = -10
# nft is looked up here only, not in the caller's PATH: the commander runs it as root.
SEARCH_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
RUN_TIMEOUT_SEC = 10.0
Command = dict[str, Any]


class NftError(RurocoError):
    """nft is missing, or refused a transaction; the message is one line."""


class UnreadableTable(NftError):
    """``nft -j list`` printed something that is not nftables JSON. nft 1.0.6 does that for a
    dormant table (``"flags":`` and nothing after it), so the table is there but cannot be
    trusted to guard: ``GrantKeeper`` re-applies it rather than giving up."""

    def __init__(self) -> None:
        super().__init__("nft -j list printed something that is not nftables JSON")


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else "no error text"


class Nft:
    """One ``nft`` binary; each call is one process, one JSON transaction, all or nothing."""

    def __init__(self, binary: str | None = None) -> None:
        found = binary or shutil.which("nft", path=SEARCH_PATH)
        if found is None:
            raise NftError(f"nftables is not usable: no `nft` in {SEARCH_PATH} (install nftables)")
        self.binary = found

    def _call(self, args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                [self.binary, *args],
                input=stdin,
                capture_output=True,
                text=True,
                timeout=RUN_TIMEOUT_SEC,
                env={"PATH": SEARCH_PATH, "LC_ALL": "C"},
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise NftError(f"nft did not answer within {RUN_TIMEOUT_SEC:g}s") from None
        except OSError as exc:
            raise NftError(f"Could not run {self.binary}: {os_reason(exc)}") from None

    def run(self, commands: list[Command], check_only: bool = False) -> None:
        """Apply ``commands`` as one transaction (``check_only``: let the kernel validate it
        without applying, ``nft -c``)."""
        args = ["-j", *(["-c"] if check_only else []), "-f", "-"]
        result = self._call(args, json.dumps({"nftables": commands}))
        if result.returncode != 0:
            raise NftError(_first_line(result.stderr))

    def listing(self) -> tuple[list[dict[str, Any]] | None, str | None]:
        """``table()``, or ``(None, why)`` when nft printed it unreadably (a dormant table,
        with nft 1.0.6): the table is there, and applying it as if new keeps its sets, and
        with them its live grants."""
        try:
            return self.table(), None
        except UnreadableTable as exc:
            return None, f"its listing is unreadable: {exc}"

    def table(self) -> list[dict[str, Any]] | None:
        """The objects of ``inet ruroco`` as nft lists them; ``None`` if there is no table."""
        result = self._call(["-j", "list", "table", FAMILY, TABLE])
        if result.returncode != 0:
            if "No such file or directory" in result.stderr:
                return None
            raise NftError(_first_line(result.stderr))
        try:
            items = json.loads(result.stdout)["nftables"]
        except (ValueError, KeyError, TypeError):
            raise UnreadableTable() from None
        if not isinstance(items, list):
            raise UnreadableTable()
        return [item for item in items if isinstance(item, dict)]


# -- the wanted table ---------------------------------------------------------------------------


def _table_ref() -> Command:
    return {"family": FAMILY, "name": TABLE}


def _port_values(ports: list[PortRange]) -> Any:
    values: list[Any] = [
        p.first if p.first == p.last else {"range": [p.first, p.last]} for p in ports
    ]
    return values[0] if len(values) == 1 else {"set": values}


def _match(left: Any, right: Any, op: str = "==") -> Command:
    return {"match": {"op": op, "left": left, "right": right}}


def _rule_bodies(grants: tuple[Grant, ...]) -> list[list[Command]]:
    established = [
        _match({"ct": {"key": "state"}}, ["established", "related"], "in"),
        {"accept": None},
    ]
    accepts: list[list[Command]] = []
    drops: list[list[Command]] = []
    for grant in grants:
        for proto in sorted({p.proto for p in grant.ports}):
            dport = _match(
                {"payload": {"protocol": proto, "field": "dport"}},
                _port_values([p for p in grant.ports if p.proto == proto]),
            )
            for family, ipv6 in (("ip", False), ("ip6", True)):
                source = _match(
                    {"payload": {"protocol": family, "field": "saddr"}},
                    f"@{grant.set_name(ipv6)}",
                )
                accepts.append([source, dport, {"accept": None}])
            drops.append([dport, {"drop": None}])
    return [established, *accepts, *drops]


def fingerprint(grants: tuple[Grant, ...]) -> str:
    """16 hex digits identifying the wanted rules and sets (not the live elements)."""
    wanted = {"sets": set_names(grants), "rules": _rule_bodies(grants), "prio": PRIORITY}
    return hashlib.blake2b(json.dumps(wanted, sort_keys=True).encode(), digest_size=8).hexdigest()


def set_names(grants: tuple[Grant, ...]) -> list[str]:
    return [grant.set_name(ipv6) for grant in grants for ipv6 in (False, True)]


def rule_comments(grants: tuple[Grant, ...]) -> list[str]:
    mark = fingerprint(grants)
    return [f"ruroco:{mark}:{i}" for i in range(len(_rule_bodies(grants)))]


def _chain() -> Command:
    return {
        "family": FAMILY,
        "table": TABLE,
        "name": CHAIN,
        "type": "filter",
        "hook": "input",
        "prio": PRIORITY,
        "policy": "accept",
    }


def apply_commands(
    grants: tuple[Grant, ...], current: list[dict[str, Any]] | None
) -> list[Command]:
    """One transaction that makes the table what ``grants`` want and keeps live elements.

    ``add`` of an existing table, set or chain is a no-op in nftables, so the sets (and the
    grants in them) survive; the chain is flushed and refilled, and sets or chains left from
    an older ``commands.toml`` (listed in ``current``) are deleted after the rules that used
    them are gone, all in the same transaction.
    """
    cmds: list[Command] = [{"add": {"table": _table_ref()}}]
    wanted = set(set_names(grants))
    for grant in grants:
        for ipv6 in (False, True):
            cmds.append(
                {
                    "add": {
                        "set": {
                            "family": FAMILY,
                            "table": TABLE,
                            "name": grant.set_name(ipv6),
                            "type": "ipv6_addr" if ipv6 else "ipv4_addr",
                            "flags": ["timeout"],
                        }
                    }
                }
            )
    cmds.append({"add": {"chain": _chain()}})
    cmds.append({"flush": {"chain": {"family": FAMILY, "table": TABLE, "name": CHAIN}}})
    for item in current or ():
        chain = item.get("chain")
        if isinstance(chain, dict) and chain.get("name") != CHAIN:
            ref = {"family": FAMILY, "table": TABLE, "name": chain.get("name")}
            cmds += [{"flush": {"chain": ref}}, {"delete": {"chain": ref}}]
    for item in current or ():
        found = item.get("set")
        if isinstance(found, dict) and found.get("name") not in wanted:
            cmds.append(
                {"delete": {"set": {"family": FAMILY, "table": TABLE, "name": found.get("name")}}}
            )
    for comment, body in zip(rule_comments(grants), _rule_bodies(grants), strict=True):
        rule = {"family": FAMILY, "table": TABLE, "chain": CHAIN, "comment": comment, "expr": body}
        cmds.append({"add": {"rule": rule}})
    return cmds


def replace_commands(grants: tuple[Grant, ...]) -> list[Command]:
    """Delete whatever ``inet ruroco`` holds and build it anew, in one transaction: for a table
    that ``apply_commands`` cannot bend back (a set of another type, a chain on another hook).
    Live grants are lost, which closes doors, never opens them."""
    return [
        {"add": {"table": _table_ref()}},
        {"delete": {"table": _table_ref()}},
        *apply_commands(grants, None),
    ]


def problem(grants: tuple[Grant, ...], current: list[dict[str, Any]] | None) -> str | None:
    """Why the listed table is not the wanted one (``None``: it is)."""
    if current is None:
        return f"table {FAMILY} {TABLE} is missing"
    tables = [t["table"] for t in current if isinstance(t.get("table"), dict)]
    if any(t.get("flags") for t in tables):  # e.g. dormant: every rule there, none applied
        return f"table {FAMILY} {TABLE} has flags set"
    chains = [c["chain"] for c in current if isinstance(c.get("chain"), dict)]
    if [c.get("name") for c in chains] != [CHAIN]:
        return "its chains differ"
    chain = chains[0]
    if (chain.get("hook"), chain.get("prio"), chain.get("type"), chain.get("policy")) != (
        "input",
        PRIORITY,
        "filter",
        "accept",
    ):
        return f"chain {CHAIN} is not the guard's base chain"
    sets = {s["set"].get("name"): s["set"] for s in current if isinstance(s.get("set"), dict)}
    for name in set_names(grants):
        found = sets.get(name)
        want = "ipv6_addr" if name.endswith("_v6") else "ipv4_addr"
        if found is None or found.get("type") != want or "timeout" not in found.get("flags", []):
            return f"set {name} is missing or changed"
    if set(sets) - set(set_names(grants)):
        return "it holds sets of grants no longer configured"
    comments = [r["rule"].get("comment") for r in current if isinstance(r.get("rule"), dict)]
    if comments != rule_comments(grants):
        return f"the rules of chain {CHAIN} changed"
    return None


def check_usable(grants: tuple[Grant, ...]) -> None:
    """For ``--check``: nft exists and the kernel would take the grants' table (``nft -c``,
    nothing is applied). Without grants nftables is not needed, so nothing is checked."""
    if not grants:
        return
    try:
        Nft().run(apply_commands(grants, None), check_only=True)
    except NftError as exc:
        text = str(exc)
        if text.startswith("nftables is not usable"):
            raise
        raise NftError(f"nftables is not usable for the grants: {text}") from None


# -- elements -----------------------------------------------------------------------------------


def _address(ip: bytes) -> tuple[bool, str]:
    """``(is_ipv6, text)``; IPv4-mapped IPv6 goes to the IPv4 set, where such packets arrive."""
    return ip[:12] != MAPPED_PREFIX, ip_text(ip)


def element(verb: str, grant: Grant, ip: bytes, timeout_sec: int | None = None) -> Command:
    ipv6, text = _address(ip)
    value: Any = text if timeout_sec is None else {"elem": {"val": text, "timeout": timeout_sec}}
    ref = {"family": FAMILY, "table": TABLE, "name": grant.set_name(ipv6), "elem": [value]}
    return {verb: {"element": ref}}


@dataclass(frozen=True)
class LiveGrant:
    grant: str
    address: str
    expires_sec: int
    timeout_sec: int


def live_grants(current: list[dict[str, Any]] | None) -> list[LiveGrant]:
    """Every element of the grant sets with the time the kernel says it has left."""
    found: list[LiveGrant] = []
    for item in current or ():
        listed = item.get("set")
        if not isinstance(listed, dict):
            continue
        name = str(listed.get("name", ""))
        grant = name.rsplit("_", 1)[0] if name.endswith(("_v4", "_v6")) else name
        for elem in listed.get("elem", ()):
            inner = elem.get("elem") if isinstance(elem, dict) else None
            if isinstance(inner, dict):
                found.append(
                    LiveGrant(
                        grant,
                        str(inner.get("val")),
                        int(inner.get("expires", 0)),
                        int(inner.get("timeout", 0)),
                    )
                )
            else:  # an element without timeout (added by hand): it never expires
                found.append(LiveGrant(grant, str(elem), -1, 0))
    return sorted(found, key=lambda g: (g.grant, g.address))
