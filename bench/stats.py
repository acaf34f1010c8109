"""Small statistics and /proc readers shared by the benchmarks.

Percentiles use the nearest-rank method so that a reported p99 is a value that was actually
measured, never an interpolation between two samples.
"""

from __future__ import annotations

import math
import re


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (``pct`` in 0..100) of a non-empty list."""
    if not values:
        raise ValueError("percentile of an empty list")
    if not 0 <= pct <= 100:
        raise ValueError("pct must be within 0..100")
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: list[float]) -> float:
    """The middle value (mean of the two middle ones for an even count)."""
    if not values:
        raise ValueError("median of an empty list")
    ordered = sorted(values)
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[mid]
    return (ordered[mid - 1] + ordered[mid]) / 2


def parse_snmp_udp(text: str) -> dict[str, int]:
    """The ``Udp:`` counters of /proc/net/snmp (a header line followed by a value line)."""
    lines = [line.split() for line in text.splitlines() if line.startswith("Udp:")]
    if len(lines) < 2:
        raise ValueError("no Udp lines in snmp text")
    header, values = lines[0][1:], lines[1][1:]
    if len(header) != len(values):
        raise ValueError("Udp header and value lines differ in length")
    return {name: int(value) for name, value in zip(header, values, strict=True)}


def read_snmp_udp() -> dict[str, int]:
    with open("/proc/net/snmp", encoding="ascii") as fh:
        return parse_snmp_udp(fh.read())


def snmp_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before.get(k, 0) for k in after}


_KB = re.compile(r"^(\w+):\s+(\d+)\s+kB$")


def parse_status_kb(text: str, field: str) -> int | None:
    """A ``kB`` field (e.g. ``VmHWM``) of /proc/PID/status in KiB, or None if absent."""
    for line in text.splitlines():
        m = _KB.match(line.strip())
        if m and m.group(1) == field:
            return int(m.group(2))
    return None


def peak_rss_kb(pid: int) -> int | None:
    """VmHWM (peak resident set) of a live process; None once it has gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            return parse_status_kb(fh.read(), "VmHWM")
    except (FileNotFoundError, ProcessLookupError):
        return None


_PAIR = re.compile(r"\b([a-z_]+)\s*[=:]\s*(\d+)\b")
_WORD_FIRST = re.compile(r"\b(received|accepted|rejected)\s+(\d+)\b")
_NUMBER_FIRST = re.compile(r"\b(\d+)\s+(received|accepted|rejected)\b")
SUMMARY_KEYS = frozenset(("received", "accepted", "rejected"))


def parse_summary(text: str) -> dict[str, int] | None:
    """Counts from the server's shutdown summary line, e.g. ``received=5 accepted=1 ...``.

    ``key=value`` / ``key: value`` pairs are preferred (all of them are kept, so per-reason
    counts come along); ``received 5`` and ``5 received`` forms are the fallback. The last
    line that has all three of received/accepted/rejected wins; None if there is none.
    """
    found: dict[str, int] | None = None
    for line in text.lower().splitlines():
        counts = {k: int(v) for k, v in reversed(_PAIR.findall(line))}
        if not counts.keys() >= SUMMARY_KEYS:
            counts = {k: int(v) for k, v in reversed(_WORD_FIRST.findall(line))}
            counts |= {
                k: int(v) for v, k in reversed(_NUMBER_FIRST.findall(line)) if k not in counts
            }
        if counts.keys() >= SUMMARY_KEYS:
            found = counts
    return found
