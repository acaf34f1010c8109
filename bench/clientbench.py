"""Wall time of one ``ruroco-client send`` process, measured from the bench (fork to exit).

hyperfine is not installed here and not needed: ``perf_counter`` around ``subprocess.run``
includes the same fork/exec/exit cost. One untimed run first, so that the counter file
exists; the timed runs are then each a fresh process.

The figure that matters is what an operator gets from ``pip install ruroco``: a regular,
byte-compiled install. The development venv is an editable install (setuptools' import hook
costs ~17 ms per start) and may run with PYTHONDONTWRITEBYTECODE, so the bench builds the
wheel, installs it into a venv of its own under ``bench/out`` and measures that console script.

``run_client_library`` (stage ``client_library``) measures the other client figure of issue
13: one knock through ``ruroco.client.sender.send`` in a process that has started up, as the
Ansible action plugin and the terminal UI call it, with the counter persisted as it really
is (docs/files.md, "Counter reservation"); the same knock from a forked child, as an Ansible
worker makes it (timed from the child's ``send`` call, and from before the fork to the exit),
and as the first ``send`` of a fresh process; and each step of a knock alone
(docs/performance.md, "The client").
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from bench import proc, stats
from ruroco import protocol
from ruroco.client import counter


def time_runs(argv: list[str], runs: int, env: dict[str, str], timeout: float = 10.0) -> dict:
    """Median/min/max wall time in ms of ``runs`` sequential runs of ``argv``; all must succeed."""
    times: list[float] = []
    failures = 0
    subprocess.run(argv, env=env, capture_output=True, timeout=timeout, check=False)
    for _ in range(runs):
        t0 = time.perf_counter()
        done = subprocess.run(argv, env=env, capture_output=True, timeout=timeout, check=False)
        elapsed = (time.perf_counter() - t0) * 1000
        if done.returncode == 0:
            times.append(elapsed)
        else:
            failures += 1
    out: dict = {"runs": runs, "ok": len(times), "failures": failures}
    if times:
        out.update(
            median_ms=stats.median(times), min_ms=min(times), max_ms=max(times), all_ms=times
        )
    return out


def installed_client(out_dir: Path) -> str:
    """``ruroco-client`` from a regular wheel install of this checkout in a venv of its own."""
    repo = Path(__file__).resolve().parent.parent
    venv = out_dir / "client-venv"
    wheels = out_dir / "client-wheel"
    if venv.exists():
        subprocess.run(["rm", "-rf", str(venv), str(wheels)], check=True)
    quiet = {"capture_output": True, "check": True, "timeout": 600}
    subprocess.run([sys.executable, "-m", "venv", str(venv)], **quiet)
    env = dict(os.environ, PYTHON_FOR_WHEEL=sys.executable)
    subprocess.run([str(repo / "scripts" / "build-wheel.sh"), str(wheels)], env=env, **quiet)
    wheel = next(wheels.glob("ruroco-*.whl"))
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], **quiet)
    subprocess.run([str(venv / "bin" / "python"), "-m", "compileall", "-q", str(venv)], **quiet)
    return str(venv / "bin" / "ruroco-client")


def run_client(root: Path, port: int, runs: int = 30) -> dict:
    """``send`` to a loopback port (a server need not listen: UDP sends do not wait)."""
    root.mkdir(parents=True, exist_ok=True)
    key_file = root / "client.key"
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(protocol.generate_key())
    env = dict(os.environ, RUROCO_CONF_DIR=str(root / "conf"))
    args = ["send", "-a", f"127.0.0.1:{port}", "-k", str(key_file)]
    client = installed_client(root)
    result = time_runs([client, *args], runs, env)
    result["dev_venv"] = time_runs([proc.tool("ruroco-client"), *args], runs, env)
    # What ruroco.protocol's private imports save: the same send started through ``python -c``
    # once as it is and once with the public modules (AESGCMSIV's aead module, hashlib) loaded
    # first, which is what using the public API instead would cost at start-up.
    python = str(Path(client).with_name("python"))
    result["via_python_c"] = time_runs([python, "-c", _RUN_CLIENT, *args], runs, env)
    result["public_imports"] = time_runs(
        [python, "-c", _PUBLIC_FIRST + _RUN_CLIENT, *args], runs, env
    )
    return result


_RUN_CLIENT = (
    "import sys; sys.argv[0] = 'ruroco-client'; from ruroco.client.cli import main; main()"
)
_PUBLIC_FIRST = "import cryptography.hazmat.primitives.ciphers.aead, hashlib; hashlib.blake2b; "


# --- the library path (``ruroco.client.sender.send`` in one process) -------------------------


def write_key(path: Path) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(protocol.generate_key())
    return path


def summary_us(samples_ns: list[int]) -> dict:
    us = [s / 1000 for s in samples_ns]
    return {
        "n": len(us),
        "p50_us": round(stats.percentile(us, 50), 1),
        "p99_us": round(stats.percentile(us, 99), 1),
        "max_us": round(max(us), 1),
    }


def _timed_us(fn, reps: int) -> dict:
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - t0)
    return summary_us(samples)


def _library_knocks(conf: Path, key_file: Path, rx: socket.socket, knocks: int) -> dict:
    """``send`` ``knocks`` times after one untimed start-up knock; every datagram is read back
    (untimed) and its counter checked: strictly increasing, and the one ``send`` returned."""
    from ruroco.client import sender

    request = sender.SendRequest(f"127.0.0.1:{rx.getsockname()[1]}", key_file=str(key_file))
    key = protocol.parse_key(key_file.read_text())
    sink = io.StringIO()  # where ruroco_send puts the client's log lines, too
    samples: list[int] = []
    last = -1
    with contextlib.redirect_stdout(sink):
        sender.send(request, conf)
        first = last = received_counter(rx, key)
        for _ in range(knocks):
            t0 = time.perf_counter_ns()
            [result] = sender.send(request, conf)
            samples.append(time.perf_counter_ns() - t0)
            value = received_counter(rx, key)
            if value != result.counter or value <= last:
                raise RuntimeError(f"counter {value} after {last} (send said {result.counter})")
            last = value
            sink.seek(0)
            sink.truncate()
    stored = counter.read_counter(counter.counter_path(conf))
    out = summary_us(samples)
    # Values handed out but not sent: reserved ahead and still unused when the loop ended.
    out.update(first=first, last=last, file=stored, unused_at_end=(stored or 0) - last)
    return out


def received_counter(rx: socket.socket, key: protocol.Key) -> int:
    packet = rx.recv(4096)
    key_id, blob = protocol.split_packet(packet)
    if key_id != key.key_id:
        raise RuntimeError("a datagram with a foreign key id")
    return protocol.ClientData.decode(key.decrypt(blob)).counter


def _forked_knocks(conf: Path, key_file: Path, rx: socket.socket, knocks: int) -> dict:
    """One ``send`` per forked child, as an Ansible worker does it for ``ruroco_send`` (the
    parent has imported the client, so the child pays no imports): ``send`` time inside the
    child, from its call (after start-up), and fork to exit as the parent sees it; and how
    many children wrote the counter file (the others took a value of the shared range,
    docs/files.md, "Counter reservation")."""
    from ruroco.client import sender

    request = sender.SendRequest(f"127.0.0.1:{rx.getsockname()[1]}", key_file=str(key_file))
    key = protocol.parse_key(key_file.read_text())
    path = counter.counter_path(conf)
    inside: list[int] = []
    whole: list[int] = []
    writes = 0
    last = -1
    for _ in range(knocks):
        before = _file_identity(path)
        read_end, write_end = os.pipe()
        t0 = time.perf_counter_ns()
        pid = os.fork()
        if pid == 0:  # the child: one knock, its duration to the parent, no cleanup handlers
            code = 1
            try:
                os.close(read_end)
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 1)
                start = time.perf_counter_ns()
                sender.send(request, conf)
                os.write(write_end, str(time.perf_counter_ns() - start).encode())
                code = 0
            finally:
                os._exit(code)
        os.close(write_end)
        _, status = os.waitpid(pid, 0)
        whole.append(time.perf_counter_ns() - t0)
        with os.fdopen(read_end, "rb") as fh:
            reported = fh.read()
        if os.waitstatus_to_exitcode(status) != 0 or not reported:
            raise RuntimeError("a forked knock failed")
        inside.append(int(reported))
        writes += _file_identity(path) != before
        value = received_counter(rx, key)
        if value <= last:
            raise RuntimeError(f"counter {value} after {last}")
        last = value
    return {
        "send_in_child": summary_us(inside),
        "fork_to_exit": summary_us(whole),
        "counter_writes": writes,
    }


def _file_identity(path: str) -> tuple[int, ...] | None:
    try:
        return counter.identity(os.stat(path))
    except FileNotFoundError:
        return None


# A fresh interpreter that imports the client (untimed start-up, as an Ansible worker loads the
# action plugin) and times its first ``send``: nothing of it was made by a parent, so no page
# is copied on write, but every one-time cost of a process's first knock is in (OpenSSL's
# first cipher, ~1 ms here; docs/performance.md, "The client").
_FIRST_SEND = """
import os, sys, time
from ruroco.client import sender
conf, address, key_file = sys.argv[1:4]
out, sys.stdout = sys.stdout, open(os.devnull, "w")
request = sender.SendRequest(address, key_file=key_file)
t0 = time.perf_counter_ns()
sender.send(request, conf)
print(time.perf_counter_ns() - t0, file=out)
"""


def _first_send_in_fresh_process(conf: Path, key_file: Path, rx: socket.socket, runs: int) -> dict:
    address = f"127.0.0.1:{rx.getsockname()[1]}"
    key = protocol.parse_key(key_file.read_text())
    samples: list[int] = []
    last = -1
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-c", _FIRST_SEND, str(conf), address, str(key_file)],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        samples.append(int(done.stdout))
        value = received_counter(rx, key)
        if value <= last:
            raise RuntimeError(f"counter {value} after {last}")
        last = value
    return summary_us(samples)


def _library_breakdown(conf: Path, key_file: Path, port: int, reps: int) -> dict:
    """Each step of one library knock alone, with the real code (conf dir already set up)."""
    from ruroco.client import sender
    from ruroco.client.address import destinations

    request = sender.SendRequest(f"127.0.0.1:{port}", key_file=str(key_file))
    directory = str(conf)
    path = counter.counter_path(directory)
    dest = destinations(request.address)[0]
    key = protocol.parse_key(key_file.read_text())
    data = protocol.ClientData(protocol.command_hash("default"), 1, True, None, dest.ip)
    packet = protocol.build_packet(key, data)

    def lock() -> None:
        with sender.client_lock(directory).acquire():
            pass

    def key_parse() -> None:
        sender.parse_key(sender.read_key_text(request)).wipe()

    out = {
        "lock": _timed_us(lock, reps),
        "key_parse": _timed_us(key_parse, reps),
        "build": _timed_us(lambda: protocol.build_packet(key, data), reps),
        "sendto": _timed_us(lambda: sender.send_datagram(dest, packet), reps),
    }
    with sender.client_lock(directory).acquire():
        out["counter"] = _timed_us(lambda: _next_counter(directory), reps)
        # What every knock paid before the reservation (docs/files.md, Counter file).
        out["counter_fsync_each"] = _timed_us(
            lambda: counter.Counter.create_and_init(path).increment(), min(reps, 200)
        )
    return out


def run_client_library(root: Path, knocks: int = 1000) -> dict:
    """The library path ``ruroco_send`` uses: ``knocks`` sends in one process after start-up,
    the same knocks each from a forked child (an Ansible worker), and the per-step breakdown.
    The datagrams go to a loopback socket of the bench (the server never answers anyway)."""
    root.mkdir(parents=True, exist_ok=True)
    key_file = write_key(root / "library.key")
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(5)
        result = {"in_process": _library_knocks(root / "conf", key_file, rx, knocks)}
        forks = max(1, knocks // 10)
        result["forked"] = _forked_knocks(root / "conf-forked", key_file, rx, forks)
        result["forked"]["first_send_fresh_process"] = _first_send_in_fresh_process(
            root / "conf-forked", key_file, rx, max(1, forks // 5)
        )
        result["breakdown"] = _library_breakdown(
            root / "conf", key_file, rx.getsockname()[1], knocks
        )
        return result
    finally:
        rx.close()


def _next_counter(directory: str) -> int:
    """The counter step of one knock (caller holds the client lock)."""
    return counter.Reserved(counter.counter_path(directory)).next()
