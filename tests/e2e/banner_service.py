"""A TCP service that plays the first step of an SSH server, for ssh-through-connect tests.

``python banner_service.py PORT FILE``: listens on ``[::]:PORT`` (IPv4 too); each connection
gets the identification line ``SSH-1.5-ruroco-banner`` and the line the client sent first is
appended to ``FILE``. An OpenSSH client then stops at once ("Protocol major versions differ"),
having proven that bytes went both ways through whatever carried the connection. Runs until
killed; started by the test inside its network namespace (``nsenter -n``).
"""

from __future__ import annotations

import socket
import sys
import threading

BANNER = b"SSH-1.5-ruroco-banner\r\n"


def _serve(conn: socket.socket, path: str) -> None:
    with conn:
        conn.settimeout(10)
        conn.sendall(BANNER)
        line = b""
        try:
            while not line.endswith(b"\n") and len(line) < 512:
                chunk = conn.recv(1)
                if not chunk:
                    break
                line += chunk
        except OSError:
            pass
        with open(path, "ab") as fh:
            fh.write(line.rstrip(b"\r\n") + b"\n")


def main() -> None:
    port, path = int(sys.argv[1]), sys.argv[2]
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port))
    s.listen(64)
    print("listening", flush=True)
    while True:
        conn, _ = s.accept()
        threading.Thread(target=_serve, args=(conn, path), daemon=True).start()


if __name__ == "__main__":
    main()
