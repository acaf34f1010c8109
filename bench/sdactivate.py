"""Start a program the way systemd socket activation starts ruroco.service.

``python -m bench.sdactivate UNIT PROGRAM [ARG...]`` reads the ``[Socket]`` section of a
rendered ``ruroco.socket`` unit, opens the socket as systemd would (``ListenDatagram=``,
``ReceiveBuffer=``), puts it on fd 3, sets ``LISTEN_PID`` to its own pid and
``LISTEN_FDS=1``, and execs PROGRAM, which so runs with that pid (VmHWM is the program's own
after the exec). A ``[Socket]`` setting this module does not know is an error, so a setting
the role adds later is never silently left out of the bench.

systemd (src/basic/socket-util.c, ``fd_set_rcvbuf``) first tries ``SO_RCVBUF`` and, when
the kernel capped that at ``net.core.rmem_max``, ``SO_RCVBUFFORCE`` (PID 1 is root); either
way the kernel doubles the value, and ``fd_set_rcvbuf`` here does the same.
"""

from __future__ import annotations

import configparser
import os
import re
import socket
import sys
from pathlib import Path

SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
LISTEN_FD = 3
#: [Socket] settings the emulation applies; anything else in the section is refused.
KNOWN = ("ListenDatagram", "ReceiveBuffer")
_SIZE = re.compile(r"^\s*(\d+)\s*([KMG]?)\s*$")
_FACTOR = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def parse_size(text: str) -> int:
    """A systemd size (``ReceiveBuffer=``): bytes, or with K, M, G (base 1024)."""
    m = _SIZE.match(text)
    if m is None:
        raise ValueError(f"not a systemd size: {text!r}")
    return int(m.group(1)) * _FACTOR[m.group(2)]


def socket_settings(unit_text: str) -> dict[str, str]:
    """The ``[Socket]`` settings of a unit file; refuses settings outside ``KNOWN``."""
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(unit_text)
    settings = dict(parser["Socket"])
    unknown = sorted(set(settings) - set(KNOWN))
    if unknown:
        raise ValueError(f"[Socket] settings the bench cannot emulate: {', '.join(unknown)}")
    if "ListenDatagram" not in settings:
        raise ValueError("[Socket] has no ListenDatagram=")
    return settings


def listen_address(value: str) -> tuple[socket.AddressFamily, str, int]:
    """``[::]:80`` / ``0.0.0.0:80`` as (family, host, port)."""
    host, _, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        return socket.AF_INET6, host[1:-1], int(port)
    return socket.AF_INET, host, int(port)


def fd_set_rcvbuf(sock: socket.socket, size: int) -> int:
    """systemd's ``fd_set_rcvbuf``: ``SO_RCVBUF``, then ``SO_RCVBUFFORCE`` if that fell short
    of the doubled value; returns what the kernel then reports (``2 * size``)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    if sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) < 2 * size:
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
        except PermissionError:  # not root: systemd only warns then, and so do we
            print(f"sdactivate: ReceiveBuffer={size} needs root; kept", file=sys.stderr)
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)


def open_socket(settings: dict[str, str]) -> socket.socket:
    """The datagram socket the unit describes, bound (systemd sets ``SO_REUSEADDR`` too)."""
    family, host, port = listen_address(settings["ListenDatagram"])
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if "ReceiveBuffer" in settings:
        fd_set_rcvbuf(sock, parse_size(settings["ReceiveBuffer"]))
    sock.bind((host, port))
    return sock


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        raise SystemExit("usage: python -m bench.sdactivate UNIT PROGRAM [ARG...]")
    settings = socket_settings(Path(argv[0]).read_text())
    fd = open_socket(settings).detach()
    if fd == LISTEN_FD:
        os.set_inheritable(fd, True)
    else:
        os.dup2(fd, LISTEN_FD, inheritable=True)
        os.close(fd)
    env = {k: v for k, v in os.environ.items() if k != "RUROCO_LISTEN_ADDRESS"}
    env["LISTEN_PID"] = str(os.getpid())
    env["LISTEN_FDS"] = "1"
    os.execve(argv[1], argv[1:], env)


if __name__ == "__main__":
    main(sys.argv[1:])
