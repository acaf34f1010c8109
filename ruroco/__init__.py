"""ruroco: trigger a server-defined command with one encrypted UDP packet.

Wire-compatible with the original ruroco 0.14 (protocol version 1).
"""

__version__ = "0.1.0"
