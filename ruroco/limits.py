"""The largest values of the unsigned integer types the protocol and config files use.

No imports: the client's cold start loads this module.
"""

U16_MAX = (1 << 16) - 1  # ports
U32_MAX = (1 << 32) - 1  # rate limits in config.toml
U64_MAX = (1 << 64) - 1  # command hash, max_clock_skew_seconds
U128_MAX = (1 << 128) - 1  # replay counter and floors
