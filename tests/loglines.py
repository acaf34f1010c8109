"""Counting the commander's request error lines, some of which its line budget turns into a
count (ruroco/linebudget.py): a line shown is one, ``(N more such lines suppressed …)`` and
``Suppressed N error lines …`` are N more."""

from __future__ import annotations

import re

_COUNTED = re.compile(r"\((\d+) more such lines suppressed|Suppressed (\d+) error lines")


def shown_and_counted(log: str, pattern: str) -> tuple[int, int]:
    """Lines of ``log`` matching ``pattern`` (a regex), and every line counted instead of
    shown (of any kind: use it where only that kind can occur)."""
    lines = log.splitlines()
    shown = sum(1 for line in lines if re.search(pattern, line))
    counted = 0
    for line in lines:
        found = _COUNTED.search(line)
        if found:
            counted += int(found.group(1) or found.group(2))
    return shown, counted
