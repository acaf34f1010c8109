"""``ruroco-server``: receives knock datagrams, validates them and forwards accepted ones.

Modules: ``config`` (the server view of config.toml), ``keys`` (key discovery),
``blocklist`` (replay floors on disk), ``ratelimit`` and ``throttle`` (flood protection),
``listen`` (UDP socket selection), ``pipeline`` (per-datagram decision), ``forward``
(commander IPC), ``server`` (the loop), ``reload`` and ``hangup`` (SIGHUP), ``check``
(``--check``), ``cli``.
"""
