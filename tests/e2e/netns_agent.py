"""An agent inside a private network namespace, driven line by line over stdin/stdout (JSON).

The test process cannot enter a network namespace itself (Python 3.11 has no ``setns``), so
``NetnsAgent`` starts this script under ``unshare -n``; everything network-related the test
needs then happens here, in the namespace: loopback up, extra source addresses on ``lo``, TCP
listeners, connects from a chosen source, ``nft``, and the real daemons (started here, so
they live in the namespace too; path-based Unix sockets and PIDs are shared with the test).

Requests: ``{"op": ..., ...}``; each gets one answer line ``{"ok": true, ...}`` or
``{"ok": false, "error": ...}``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

_held: dict[int, socket.socket] = {}
_procs: dict[int, subprocess.Popen[bytes]] = {}
_listeners: list[socket.socket] = []


def _serve(listener: socket.socket) -> None:
    """Accept forever; echo what each connection sends (so a held connection can be probed)."""
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=_echo, args=(conn,), daemon=True).start()


def _echo(conn: socket.socket) -> None:
    with conn:
        while True:
            try:
                data = conn.recv(4096)
            except OSError:
                return
            if not data:
                return
            conn.sendall(data)


def op_setup(req: dict[str, Any]) -> dict[str, Any]:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    for addr in req.get("addresses", []):
        subprocess.run(["ip", "addr", "add", addr, "dev", "lo", "nodad"], check=True)
    return {}


def op_listen(req: dict[str, Any]) -> dict[str, Any]:
    """A dual-stack TCP listener on ``[::]:port`` (IPv4 arrives as ``::ffff:a.b.c.d``)."""
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", req["port"]))
    s.listen(128)
    _listeners.append(s)
    threading.Thread(target=_serve, args=(s,), daemon=True).start()
    return {}


def _connect(src: str, dst: str, port: int, timeout: float) -> tuple[str, socket.socket | None]:
    fam = socket.AF_INET6 if ":" in dst else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.bind((src, 0))
    s.settimeout(timeout)
    try:
        s.connect((dst, port))
    except TimeoutError:
        s.close()
        return "dropped", None
    except ConnectionRefusedError:
        s.close()
        return "reset", None
    return "open", s


def op_connect(req: dict[str, Any]) -> dict[str, Any]:
    """``open`` (handshake done), ``dropped`` (no answer within timeout) or ``reset``."""
    state, s = _connect(req["src"], req["dst"], req["port"], req.get("timeout", 0.6))
    held = None
    if s is not None:
        if req.get("hold"):
            held = s.fileno()
            _held[held] = s
        else:
            s.close()
    return {"state": state, "held": held}


def op_probe(req: dict[str, Any]) -> dict[str, Any]:
    """Send on a held connection and read the echo back: does it still work?"""
    s = _held[req["held"]]
    s.settimeout(req.get("timeout", 1.0))
    try:
        s.sendall(b"ping")
        return {"echo": s.recv(16) == b"ping"}
    except OSError:
        return {"echo": False}


def op_wait_open(req: dict[str, Any]) -> dict[str, Any]:
    """Connect again and again (each try ``step`` s) until one is accepted or ``limit`` s
    passed; returns seconds from the request to the accepted handshake."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < req["limit"]:
        state, s = _connect(req["src"], req["dst"], req["port"], req.get("step", 0.05))
        if s is not None:
            s.close()
            return {"state": state, "after": time.monotonic() - t0}
    return {"state": "dropped", "after": None}


def op_run(req: dict[str, Any]) -> dict[str, Any]:
    res = subprocess.run(req["argv"], capture_output=True, text=True, timeout=req.get("t", 30))
    return {"rc": res.returncode, "stdout": res.stdout, "stderr": res.stderr}


def op_spawn(req: dict[str, Any]) -> dict[str, Any]:
    """Start a daemon here with its output in ``log``; returns its PID."""
    env = dict(os.environ)
    env.update(req.get("env", {}))
    with open(req["log"], "ab") as out:
        proc = subprocess.Popen(
            req["argv"], stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    _procs[proc.pid] = proc
    return {"pid": proc.pid}


def op_wait(req: dict[str, Any]) -> dict[str, Any]:
    """Reap a daemon started here (its exit status), or ``None`` if it still runs."""
    try:
        return {"rc": _procs[req["pid"]].wait(req.get("timeout", 10.0))}
    except subprocess.TimeoutExpired:
        return {"rc": None}


OPS = {
    "setup": op_setup,
    "listen": op_listen,
    "connect": op_connect,
    "probe": op_probe,
    "wait_open": op_wait_open,
    "run": op_run,
    "spawn": op_spawn,
    "wait": op_wait,
}


def main() -> None:
    os.chdir(Path(__file__).parent)
    try:
        for line in sys.stdin:
            _answer(line)
    finally:  # the test is gone or done: no daemon of ours outlives the namespace's agent
        for proc in _procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _answer(line: str) -> None:
    if line:
        req = json.loads(line)
        try:
            answer = {"ok": True, **OPS[req["op"]](req)}
        except Exception as exc:  # the test shows it; the agent keeps serving
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
