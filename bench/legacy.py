"""The original's rate-limit ordering, for the flood comparison only (not part of the product).

ruroco 0.14 counts every correctly sized datagram against the per-IP and the global cap
*before* the key lookup::

    size → per-source limit → global limit → key lookup → decrypt → … → persist

so a spoofed flood of garbage can spend the global budget and starve real clients. The
product (``ruroco.server.pipeline``) decides unknown keys first and counts only authenticated
packets against the global cap (deviations 1 and 2); this module rebuilds the old order on
top of it so the benchmarks can show the difference.
"""

from __future__ import annotations

import os

from ruroco.protocol import KEY_ID_SIZE, MSG_SIZE, Key
from ruroco.server.blocklist import Blocklist
from ruroco.server.config import ServerConfig
from ruroco.server.pipeline import (
    RATE_GLOBAL,
    RATE_SOURCE,
    SIZE,
    THE_SOURCE,
    UNKNOWN_KEY,
    Acceptance,
    Busy,
    Pipeline,
    Rejection,
)
from ruroco.server.server import Server, Stats, create_server
from ruroco.server.throttle import INTERVAL as THROTTLE_INTERVAL


class _NoLimit:
    """Stands in for the global cap after authentication: the old order spent it up front."""

    def allow(self) -> bool:
        return True


class LegacyPipeline(Pipeline):
    """Both limits on every correctly sized datagram, before the key lookup; none after."""

    def __init__(self, config: ServerConfig, keys: dict[bytes, Key], blocklist: Blocklist) -> None:
        super().__init__(config, keys, blocklist)
        self.legacy_global = self.global_limit
        self.global_limit = _NoLimit()  # what Pipeline checks after authentication

    def handle(
        self, packet: bytes | bytearray | memoryview, size: int, host: str, port: int
    ) -> Rejection | Acceptance | Busy:
        stats = self.stats
        if size != MSG_SIZE or len(packet) < MSG_SIZE:
            stats[SIZE] += 1
            return (SIZE, host, port, (size,))
        if not self.per_source.allow(host):
            return self._reject(
                RATE_SOURCE, host, port, (THE_SOURCE, self.config.max_requests_per_second)
            )
        if not self.legacy_global.allow():
            return self._reject(
                RATE_GLOBAL, host, port, (self.config.max_requests_per_second_global,)
            )
        key_id = bytes(packet[:KEY_ID_SIZE])
        key = self.keys.get(key_id)
        if key is None:
            stats[UNKNOWN_KEY] += 1
            return (UNKNOWN_KEY, host, port, (key_id,))
        return self._authenticated(key, key_id, bytes(packet[KEY_ID_SIZE:MSG_SIZE]), host, port)


def create_legacy_server(
    config_path: str | os.PathLike[str],
    address: str | None = None,
    throttle_interval: float = THROTTLE_INTERVAL,
) -> Server:
    """``create_server`` with a ``LegacyPipeline``, and the receive loop's own unknown-key
    check off (it would decide unknown keys before the limits)."""
    server = create_server(config_path, address=address, throttle_interval=throttle_interval)
    new = server.pipeline
    legacy = LegacyPipeline(new.config, new.keys, new.blocklist)
    legacy.stats = new.stats  # the dict the server's Stats already shows
    legacy.handoff_room = new.handoff_room
    server.pipeline = legacy
    server.early_key_check = False
    return server


def serve_legacy(config_path: str | os.PathLike[str], address: str | None = None) -> Stats:
    """``ruroco.server.server.serve`` with the original ordering."""
    server = create_legacy_server(config_path, address=address)
    server.install_signal_handlers()
    try:
        return server.run()
    finally:
        server.close()
