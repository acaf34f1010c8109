"""Where the knock-to-command time goes: each stage of the path timed on its own.

The end-to-end figure (``bench.latency``) says how long a knock takes; this says why. Every
stage runs the real code on real files, sockets and processes, repeated ``reps`` times, and
reports the median and p90 in microseconds (the machine is shared, so single samples mean
little). Stages, in path order:

* ``udp_loopback``: ``sendto`` -> ``recvfrom_into`` of a 94-byte datagram (kernel hop);
* ``decrypt_decode``: AES-GCM-SIV open + plaintext parse;
* ``blocklist_encode``: msgpack of a one-key blocklist;
* ``write_atomic_disk`` / ``write_atomic_tmpfs``: the fsync'd temp-file + rename + directory
  fsync that persists the replay floor, on the deployment's disk and on /dev/shm;
* ``pipeline_disk`` / ``pipeline_tmpfs``: ``Pipeline.handle`` for a valid packet (checks,
  log line, persist) with the blocklist on disk / tmpfs;
* ``forward``: ``send_to_commander`` (connect + 24-byte write) to a real commander process;
* ``commander_process``: that write -> the command's byte in the FIFO (accept, read,
  dispatch, release of a warm shell, ``sh`` running ``printf``; docs/performance.md, "Warm
  shells"), and ``commander_process_cold``: the same with ``warm_shells = false`` (``sh``
  spawned at the request, as before warm shells);
* ``dispatch_handoff``: ``Dispatcher.submit`` -> the task starts in a worker thread;
* ``spawn_to_fifo``: a new thread calls ``Executor.run`` -> ``printf``'s byte arrives (thread
  start, pipes, spawn, ``sh``); it can exceed ``commander_process_cold``, which reuses its
  worker threads; ``release_to_fifo``: the same through a warm shell (thread start, pipe
  write, the waiting ``sh`` reads and runs ``printf``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bench import stats
from bench.fifo import Fifo
from bench.rurocoenv import COMMAND, Counter, Deployment, knock_packet
from ruroco import protocol
from ruroco.commander.commands import Command
from ruroco.commander.dispatch import Dispatcher
from ruroco.commander.executor import Executor
from ruroco.fs import write_atomic
from ruroco.ipaddr import parse_ip
from ruroco.server.blocklist import Blocklist, encode
from ruroco.server.config import ServerConfig
from ruroco.server.forward import send_to_commander
from ruroco.server.pipeline import Acceptance, Pipeline

TMPFS = Path("/dev/shm")
WAIT_S = 2.0


def _summary(samples_ns: list[int]) -> dict:
    us = [s / 1000 for s in samples_ns]
    if not us:
        return {"n": 0}
    return {
        "n": len(us),
        "p50_us": round(stats.percentile(us, 50), 1),
        "p90_us": round(stats.percentile(us, 90), 1),
    }


def _timed(fn: Callable[[], object], reps: int) -> dict:
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - t0)
    return _summary(samples)


@contextlib.contextmanager
def _quiet_stdout():
    """The pipeline and executor log one line per request; keep them out of the bench output."""
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        yield


def _udp_loopback(reps: int) -> dict:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(WAIT_S)
        buf = bytearray(protocol.MSG_SIZE + 1)
        payload = os.urandom(protocol.MSG_SIZE)
        addr = rx.getsockname()

        def hop() -> None:
            tx.sendto(payload, addr)
            rx.recvfrom_into(buf, len(buf))

        return _timed(hop, reps)
    finally:
        rx.close()
        tx.close()


def _server_stages(directory: Path, reps: int, label: str) -> dict:
    """``write_atomic`` and the whole ``Pipeline.handle`` with the blocklist in ``directory``."""
    key = protocol.parse_key(protocol.generate_key())
    key_id = key.key_id
    probe = directory / "probe"
    out = {f"write_atomic_{label}": _timed(lambda: write_atomic(probe, b"x" * 40), reps)}
    config = ServerConfig(ips=(parse_ip("127.0.0.1"),), max_requests_per_second_global=10**9)
    blocklist = Blocklist(directory / "blocklist.msgpck", {key_id: time.time_ns()})
    pipeline = Pipeline(config, {key_id: key}, blocklist)
    counter = Counter()
    samples = []
    with _quiet_stdout():
        for i in range(reps):
            pkt = knock_packet(key, counter.next())
            host = f"127.4.{i // 250}.{i % 250 + 1}"  # own source: the per-IP limit never applies
            t0 = time.perf_counter_ns()
            result = pipeline.handle(pkt, len(pkt), host, 9)
            samples.append(time.perf_counter_ns() - t0)
            if not isinstance(result, Acceptance):
                raise RuntimeError(f"bench packet rejected: {result[0]}")
    out[f"pipeline_{label}"] = _summary(samples)
    return out


def _crypto_stages(reps: int) -> dict:
    key = protocol.parse_key(protocol.generate_key())
    pkt = knock_packet(key, time.time_ns())
    blob = pkt[protocol.KEY_ID_SIZE :]
    entries = {key.key_id: time.time_ns()}
    return {
        "decrypt_decode": _timed(lambda: protocol.ClientData.decode(key.decrypt(blob)), reps),
        "blocklist_encode": _timed(lambda: encode(entries), reps),
    }


def _commander_stages(root: Path, reps: int, warm: bool = True) -> dict:
    """``forward`` and ``commander_process`` against a real commander process; ``warm=False``:
    only ``commander_process_cold``, with ``warm_shells = false`` in its config."""
    dep = Deployment(root)
    if not warm:
        with open(dep.config, "a", encoding="utf-8") as fh:
            fh.write("warm_shells = false\n")
    forward, total = [], []
    try:
        dep.start()
        message = protocol.encode_commander_data(
            protocol.command_hash(COMMAND), parse_ip("127.0.0.1")
        )
        socket_path = root / "ruroco.socket"
        for _ in range(reps):
            t0 = time.perf_counter_ns()
            send_to_commander(socket_path, message, 2.0)
            t1 = time.perf_counter_ns()
            t2 = dep.fifo.wait_byte(WAIT_S)
            forward.append(t1 - t0)
            if t2 is not None:
                total.append(t2 - t0)
    finally:
        dep.stop()
    if not warm:
        return {"commander_process_cold": _summary(total)}
    return {"forward": _summary(forward), "commander_process": _summary(total)}


def _in_process_commander(root: Path, reps: int) -> dict:
    """Dispatcher hand-off and spawn-to-FIFO inside this process (no socket, no server)."""
    dispatcher = Dispatcher(4)
    handoff = []
    started = threading.Event()
    stamp: list[int] = []

    def task() -> None:
        stamp.append(time.perf_counter_ns())
        started.set()

    for _ in range(reps):
        started.clear()
        stamp.clear()
        t0 = time.perf_counter_ns()
        dispatcher.submit("bench", task)
        if started.wait(WAIT_S):
            handoff.append(stamp[0] - t0)
        dispatcher.wait_idle(WAIT_S)
    dispatcher.shutdown()

    out = {"dispatch_handoff": _summary(handoff)}
    for key, warm in (("spawn_to_fifo", False), ("release_to_fifo", True)):
        out[key] = _executor_to_fifo(root / f"{key}.fifo", reps, warm)
    return out


def _executor_to_fifo(path: Path, reps: int, warm: bool) -> dict:
    """A new thread calls ``Executor.run`` -> ``printf``'s byte; ``warm``: the executor keeps
    warm shells for the command, so each run releases one (asserted by the count)."""
    fifo = Fifo(path)
    executor = Executor()
    command = Command("bench", f"printf x > '{fifo.path}'", 5)
    ip = parse_ip("127.0.0.1")
    samples = []
    try:
        executor.keep_warm([command], enabled=warm)
        with _quiet_stdout():
            for _ in range(reps):
                time.sleep(0.002)  # the last run's replacement shell is started by now
                t0 = time.perf_counter_ns()
                runner = threading.Thread(target=executor.run, args=(command, ip))
                runner.start()
                t1 = fifo.wait_byte(WAIT_S)
                runner.join(WAIT_S)
                if t1 is not None:
                    samples.append(t1 - t0)
    finally:
        executor.close()
        fifo.close()
    out = _summary(samples)
    out["released_warm"] = executor.released_warm
    return out


def run_breakdown(root: Path, reps: int = 200) -> dict:
    """All stages; ``root`` is on the deployment's disk, tmpfs figures use /dev/shm."""
    root.mkdir(parents=True, exist_ok=True)
    result: dict = {"reps": reps, "disk_dir": str(root)}
    result["udp_loopback"] = _udp_loopback(reps)
    result.update(_crypto_stages(reps))
    result.update(_server_stages(root, reps, "disk"))
    shm = Path(tempfile.mkdtemp(prefix="ruroco-bench-", dir=TMPFS)) if TMPFS.is_dir() else None
    if shm is not None:
        try:
            result.update(_server_stages(shm, reps, "tmpfs"))
            result["tmpfs_dir"] = str(TMPFS)
        finally:
            shutil.rmtree(shm, ignore_errors=True)
    result.update(_commander_stages(root / "commander", reps))
    result.update(_commander_stages(root / "commander_cold", reps, warm=False))
    result.update(_in_process_commander(root, reps))
    result.update(_startup_stages(reps))
    return result


def _startup_stages(reps: int) -> dict:
    """Process start-up, split (``bench/startup.py``): exec alone, with glibc's start-up,
    ``sh``; and one ``cpuid`` (its runs' averages, in µs like the rest)."""
    from bench import startup

    out: dict = {}
    for key, name in (("exec_nolibc", "nolibc"), ("exec_glibc_static", "glibc_static")):
        binary = startup.build(name)
        if binary is not None:
            out[key] = _summary(startup.spawn_to_reaped_ns([str(binary)], reps))
    sh = shutil.which("sh")
    if sh is not None:
        out["exec_sh"] = _summary(startup.spawn_to_reaped_ns([sh, "-c", "exit 0"], reps))
    probe = startup.build("cpuid")
    if probe is not None:
        out["cpuid"] = _summary([int(ns) for ns in startup.cpuid_ns(probe, min(reps, 20))])
    return out


if __name__ == "__main__":
    import json

    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp())
    print(json.dumps(run_breakdown(target, int(sys.argv[2]) if len(sys.argv) > 2 else 200)))
