"""Bench only: the commander of ``bench/latency.py``'s prespawned run imports this at start
(its directory is first on that process's PYTHONPATH, which only the commander and, through
its environment, the commands it runs get; the bench's command is a ``printf``).

With ``RUROCO_BENCH_PRESPAWN=N`` the commander keeps N warm shells per command instead of
``warm.SHELLS_PER_COMMAND``, and once the pool has been full it spawns no replacement: every
knock of the run releases a shell started before the run. The package is not changed; this
only sets the pool's depth and stops its refills, so the run shows what a back-to-back knock
costs without a replacement shell starting beside it (docs/performance.md, "Back to back:
the replacement shell"). When the pool is first full it writes ``FULL_LINE`` to stderr (the
commander's log): the bench sends its first knock only after that line, so no refill can be
under way or queued when the run starts.
"""

from __future__ import annotations

import os
import resource
import sys

FULL_LINE = "bench prespawn: the warm shell pool is full"
_DEPTH = int(os.environ.get("RUROCO_BENCH_PRESPAWN", "0") or 0)

if _DEPTH > 0:
    from ruroco.commander import warm

    # Four descriptors per shell, and ``warm.cap`` gives shells at most half the soft limit.
    _need = _DEPTH * warm.FDS_PER_SHELL * 2 + 256
    _soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if _soft != resource.RLIM_INFINITY and _soft < _need:
        _new = _need if _hard == resource.RLIM_INFINITY else min(_need, _hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (_new, _hard))

    _init = warm.WarmShells.__init__
    _refill = warm.WarmShells._refill
    _refill_later = warm.WarmShells.refill_later

    def _deep_init(self, spawn, depth=warm.SHELLS_PER_COMMAND):
        _init(self, spawn, _DEPTH)
        self.bench_full = False

    def _refill_until_full(self, name):
        if self.bench_full:  # a refill queued before the pool was full: nothing to do
            return
        _refill(self, name)
        if self.waiting() >= self.depth:
            self.bench_full = True
            print(f"{FULL_LINE} ({self.depth})", file=sys.stderr, flush=True)

    def _no_refill_once_full(self, name):
        if not self.bench_full:
            _refill_later(self, name)

    warm.WarmShells.__init__ = _deep_init
    warm.WarmShells._refill = _refill_until_full
    warm.WarmShells.refill_later = _no_refill_once_full
