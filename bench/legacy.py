"""The original's rate-limit ordering, for the flood comparison only (not part of the product).

ruroco 0.14 counts every correctly sized datagram against the per-IP and the global cap
*before* the key lookup::

    size → per-source limit → global limit → key lookup → decrypt → … → persist

so a spoofed flood of garbage can spend the global budget and starve real clients. The
product (``ruroco.server.pipeline``) decides unknown keys first and counts only authenticated
packets against the global cap (docs/deviations.md #1 and #2); this module rebuilds the old order on
top of it so the benchmarks can show the difference.
"""

from __future__ import annotations

import os

from ruroco.protocol import MSG_SIZE, Key
from ruroco.server.blocklist import Blocklist
from ruroco.server.config import ServerConfig
from ruroco.server.pipeline import (
    RATE_GLOBAL,
    RATE_SOURCE,
    SIZE,
    THE_SOURCE,
    Acceptance,
    Decision,
    Pipeline,
    Rejection,
)
from ruroco.server.server import Server, Stats, create_server
from ruroco.server.throttle import INTERVAL as THROTTLE_INTERVAL


class _NoLimit:
    """Stands in for the global cap after authentication: the old order spent it up front."""

    def allow(self, now: float) -> bool:
        return True


class LegacyDecision(Decision):
    """Both limits on every correctly sized datagram, before the key lookup; none after."""

    def __init__(
        self, config: ServerConfig, keys: dict[bytes, Key], floors: dict[bytes, int]
    ) -> None:
        super().__init__(config, keys, floors)
        self.legacy_global = self.global_limit
        self.global_limit = _NoLimit()  # type: ignore[assignment]  # checked after authentication

    def screen(
        self, packet: bytes | bytearray | memoryview, size: int, host: str, port: int
    ) -> Rejection | None:
        """Only the size: the key lookup comes after both limits."""
        if size != MSG_SIZE or len(packet) < MSG_SIZE:
            self.stats[SIZE] += 1
            return (SIZE, host, port, (size, str(MSG_SIZE)))
        return None

    def decide_screened(
        self,
        packet: bytes | bytearray | memoryview,
        size: int,
        host: str,
        port: int,
        now_ns: int,
        now_s: float,
    ) -> Rejection | Acceptance:
        """After the size check (``screen``; ``decide`` runs both): the limits, then the
        key lookup and the rest."""
        if not self.per_source.allow(host, now_s):
            return self._reject(
                RATE_SOURCE, host, port, (THE_SOURCE, self.config.max_requests_per_second)
            )
        if not self.legacy_global.allow(now_s):
            return self._reject(
                RATE_GLOBAL, host, port, (self.config.max_requests_per_second_global,)
            )
        rejection = super().screen(packet, size, host, port)  # the key lookup
        if rejection is not None:
            return rejection
        return self._open(packet, size, host, port, now_ns, now_s)


class LegacyPipeline(Pipeline):
    """The server's I/O edge around a ``LegacyDecision``."""

    def __init__(self, config: ServerConfig, keys: dict[bytes, Key], blocklist: Blocklist) -> None:
        super().__init__(config, keys, blocklist, LegacyDecision(config, keys, blocklist.entries))


def create_legacy_server(
    config_path: str | os.PathLike[str],
    address: str | None = None,
    throttle_interval: float = THROTTLE_INTERVAL,
) -> Server:
    """``create_server`` with a ``LegacyDecision``: the receive loop's ``screen`` then checks
    only the size, so unknown keys are decided after the limits."""
    server = create_server(config_path, address=address, throttle_interval=throttle_interval)
    new = server.pipeline
    legacy = LegacyDecision(new.config, new.keys, new.blocklist.entries)
    legacy.stats = new.stats  # the dict the server's Stats already shows
    new.decision = legacy
    return server


def serve_legacy(config_path: str | os.PathLike[str], address: str | None = None) -> Stats:
    """``ruroco.server.server.serve`` with the original ordering."""
    server = create_legacy_server(config_path, address=address)
    server.install_signal_handlers()
    try:
        return server.run()
    finally:
        server.close()
