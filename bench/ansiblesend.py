"""``ruroco_send`` as Ansible runs it: the library knock's figure from real playbook runs.

Issue 13 asks for one knock ≤ 1 ms "after start-up" in the library path ``ruroco_send``
uses. A forked child of the bench is only a model of that path; this stage runs the real
thing. ``ansible-playbook`` (linear strategy, ``forks`` 1, ``HOSTS`` inventory hosts with the
local connection) runs one ``ruroco.ruroco.ruroco_send`` task per host to a loopback socket
of the bench. The strategy imports the action plugin in the controller's main process, which
calls ``sender.warm_up`` there, and forks one worker per host and task; each worker's
``sender.send`` call is timed by a wrapper that a ``sitecustomize`` on ``PYTHONPATH`` puts
around it (bench code: the collection and the package run unchanged). Every datagram is read
back and decrypted to check its counter rises, and every timed knock must come from a
worker, not from the main process.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

from bench import proc
from bench.clientbench import received_counter, summary_us, write_key
from bench.rurocoenv import REPO
from ruroco import protocol

HOSTS = 50

_HOOK = """\
import os
import time

from ruroco.client import sender

_send, _out = sender.send, os.environ["RUROCO_BENCH_SEND_TIMES"]


def send(*args, **kwargs):
    start = time.perf_counter_ns()
    try:
        return _send(*args, **kwargs)
    finally:
        elapsed = time.perf_counter_ns() - start
        with open(_out, "a") as fh:
            fh.write(f"{os.getpid()} {elapsed}\\n")


sender.send = send
"""

_PLAY = """\
- hosts: knock
  gather_facts: false
  tasks:
    - ruroco.ruroco.ruroco_send:
        address: "127.0.0.1:{port}"
        key_file: "{key_file}"
        conf_dir: "{conf_dir}"
"""


def run_ansible_send(root: Path, runs: int = 2, hosts: int = HOSTS) -> dict:
    """``runs`` playbook runs of ``hosts`` knocks each; ``send`` time inside the workers."""
    root.mkdir(parents=True, exist_ok=True)
    key_file = write_key(root / "ansible.key")
    key = protocol.parse_key(key_file.read_text())
    (root / "hook").mkdir(exist_ok=True)
    (root / "hook" / "sitecustomize.py").write_text(_HOOK)
    inventory = root / "inventory.ini"
    inventory.write_text(
        "[knock]\n" + "".join(f"h{i} ansible_connection=local\n" for i in range(hosts))
    )
    times = root / "send-times.txt"
    playbook, env = proc.ansible_playbook(root / "ansible-tmp")
    env.update(
        ANSIBLE_FORKS="1",
        ANSIBLE_COLLECTIONS_PATH=str(REPO),
        PYTHONPATH=os.pathsep.join(filter(None, [str(root / "hook"), env.get("PYTHONPATH")])),
        RUROCO_BENCH_SEND_TIMES=str(times),
    )
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    samples: list[int] = []
    walls: list[float] = []
    last = -1
    try:
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(5)
        play = root / "knock.yml"
        play.write_text(
            _PLAY.format(port=rx.getsockname()[1], key_file=key_file, conf_dir=root / "conf")
        )
        for _ in range(runs):
            times.unlink(missing_ok=True)
            t0 = time.perf_counter()
            log = root / "ansible-playbook.log"
            log.unlink(missing_ok=True)
            # A tracked child in its own session: stopped with its workers on a timeout or
            # on any exit of the bench, so none keeps the conf dir's lock or loads the CPUs.
            done = proc.start([playbook, "-i", str(inventory), str(play)], log, env=env)
            try:
                code = done.wait(timeout=300)
            except subprocess.TimeoutExpired:
                proc.stop(done)
                raise RuntimeError("ansible-playbook took more than 300 s") from None
            walls.append(time.perf_counter() - t0)
            if code != 0:
                raise RuntimeError(f"ansible-playbook failed: {log.read_text()[-800:]}")
            rows = [line.split() for line in times.read_text().splitlines()]
            if len(rows) != hosts or any(int(pid) == done.pid for pid, _ in rows):
                raise RuntimeError(f"{len(rows)} knocks timed of {hosts}, or one not in a worker")
            samples.extend(int(ns) for _, ns in rows)
            for _ in range(hosts):
                value = received_counter(rx, key)
                if value <= last:
                    raise RuntimeError(f"counter {value} after {last}")
                last = value
    finally:
        rx.close()
    return {
        "send_in_worker": summary_us(samples),
        "forks": 1,
        "hosts": hosts,
        "runs": runs,
        "playbook_s": [round(w, 2) for w in walls],
    }
