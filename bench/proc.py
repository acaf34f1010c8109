"""Process handling for the benchmarks: every child is tracked and killed on any exit.

Children start in their own session, so a child's whole process group (e.g. the commander's
``sh`` children) can be ended by that child's id alone, without touching anything else.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

_children: list[subprocess.Popen] = []

VENV_BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    """Path of a console script installed next to the running interpreter."""
    path = VENV_BIN / name
    return str(path) if path.exists() else name


def ansible_playbook(home: Path) -> tuple[str, dict[str, str]]:
    """``ansible-playbook`` of this venv and an environment that keeps its state under
    ``home`` (nothing in ~/.ansible), without colours or warnings about localhost."""
    playbook = tool("ansible-playbook")
    if shutil.which(playbook) is None:
        raise RuntimeError("this stage needs ansible-playbook: `make devtools`")
    env = dict(
        os.environ,
        LC_ALL="C.UTF-8",
        ANSIBLE_HOME=str(home),
        ANSIBLE_LOCAL_TEMP=str(home),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
        ANSIBLE_LOCALHOST_WARNING="false",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
    )
    return playbook, env


def start(
    argv: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen:
    """Start a tracked child with stdout+stderr going to ``log``."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    _children.append(proc)
    return proc


def stop(proc: subprocess.Popen, grace: float = 5.0) -> int | None:
    """SIGTERM, wait up to ``grace`` s, then SIGKILL the child's process group."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(2)
    if proc in _children:
        _children.remove(proc)
    return proc.returncode


def stop_all() -> None:
    for proc in list(_children):
        stop(proc, grace=1.0)


def _on_term(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def install_cleanup() -> None:
    """Kill tracked children at interpreter exit and turn SIGTERM/SIGHUP into a clean exit."""
    atexit.register(stop_all)
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGHUP, _on_term)


def udp_port_bound(port: int) -> bool:
    """Whether some socket is bound to UDP ``port`` (IPv4 or IPv6) in this namespace."""
    want = f":{port:04X} "
    for name in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(name, encoding="ascii") as fh:
                next(fh)
                for line in fh:
                    if want in line.split(maxsplit=2)[1] + " ":
                        return True
        except FileNotFoundError:
            continue
    return False


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    """Poll ``predicate`` every 10 ms up to ``timeout`` s; fail early if ``proc`` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {proc.returncode}")
        time.sleep(0.01)
    raise RuntimeError(f"{what}: not ready after {timeout:.0f} s")


def free_udp_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def host_facts() -> dict:
    """What every benchmark's figures depend on: cores, CPU model, kernel, interpreter, load."""
    import platform

    cpu = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            cpu = next(
                (ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu
            )
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }
