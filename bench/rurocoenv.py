"""A throw-away ruroco deployment: key, config, commands, FIFO, server and commander processes.

Everything lives in one temp directory; the command the commander runs is the shell builtin
``printf x > FIFO``, so the bench sees the moment the command actually ran.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from bench import proc
from bench.fifo import Fifo
from ruroco import protocol
from ruroco.ipaddr import parse_ip

REPO = Path(__file__).resolve().parent.parent
COMMAND = "bench"
# Put first on the commander's PYTHONPATH by ``Deployment(prespawned=N)``.
PRESPAWN_HOOK = Path(__file__).resolve().parent / "hooks" / "prespawn"


def knock_packet(key: protocol.Key, counter: int) -> bytes:
    """A valid knock for the bench command to 127.0.0.1 with ``counter`` (no source claim)."""
    data = protocol.ClientData(
        cmd_hash=protocol.command_hash(COMMAND),
        counter=counter,
        strict=True,
        src_ip=None,
        dst_ip=parse_ip("127.0.0.1"),
    )
    return protocol.build_packet(key, data)


class Deployment:
    """Files for one server+commander pair; ``start()`` launches them, ``stop()`` ends them."""

    def __init__(
        self,
        root: Path,
        *,
        per_ip: int = 2,
        global_limit: int = 100,
        legacy: bool = False,
        blocklist_dir: Path | None = None,
        kernel_filter: bool = False,
        server_cmd: list[str] | None = None,
        prespawned: int = 0,
    ) -> None:
        """``blocklist_dir`` defaults to ``root`` (on disk, as in production); the latency
        bench also runs with it on tmpfs to show what the fsync'd write costs.
        ``prespawned``: the commander keeps that many warm shells and replaces none once it
        had them all (``bench/hooks/prespawn``)."""
        self.root = root
        self.prespawned = prespawned
        self.blocklist_dir = blocklist_dir or root
        root.mkdir(parents=True, exist_ok=True)
        self.legacy = legacy
        self.server_cmd = server_cmd  # another server build, for before/after comparisons
        self.port = proc.free_udp_port()
        self.key_file = root / "bench.key"
        key_text = protocol.generate_key()
        fd = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(key_text)
        self.key = protocol.parse_key(key_text)
        del key_text
        self.fifo = Fifo(root / "cmd.fifo")
        self.config = root / "config.toml"
        self.config.write_text(
            "\n".join(
                (
                    'ips = ["127.0.0.1"]',
                    f'config_dir = "{root}"',
                    f'blocklist_dir = "{blocklist_dir or root}"',
                    f'socket_dir = "{root}"',
                    f"max_requests_per_second = {per_ip}",
                    f"max_requests_per_second_global = {global_limit}",
                    'socket_user = ""',
                    'socket_group = ""',
                    "allow_non_routable_ips = true",
                    *(("kernel_filter = true",) if kernel_filter else ()),
                    "",
                )
            )
        )
        self.commands = root / "commands.toml"
        self.commands.write_text(f"[commands]\n{COMMAND} = \"printf x > '{self.fifo.path}'\"\n")
        self.server_log = root / "server.log"
        self.commander_log = root / "commander.log"
        self.server = None
        self.commander = None

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def start(self) -> None:
        env = dict(os.environ)
        commander_env = env
        if self.prespawned:
            path = os.pathsep.join(filter(None, [str(PRESPAWN_HOOK), env.get("PYTHONPATH")]))
            commander_env = {
                **env,
                "PYTHONPATH": path,
                "RUROCO_BENCH_PRESPAWN": str(self.prespawned),
            }
        self.commander = proc.start(
            [
                proc.tool("ruroco-commander"),
                "-c",
                str(self.config),
                "--commands",
                str(self.commands),
            ],
            self.commander_log,
            env=commander_env,
        )
        sock = self.root / "ruroco.socket"
        proc.wait_for(sock.exists, 20, "ruroco-commander socket", self.commander)
        env["RUROCO_LISTEN_ADDRESS"] = f"127.0.0.1:{self.port}"
        if self.server_cmd:
            argv = [*self.server_cmd, "-c", str(self.config)]
        elif self.legacy:
            argv = [sys.executable, "-m", "bench.legacy_server", "-c", str(self.config)]
        else:
            argv = [proc.tool("ruroco-server"), "-c", str(self.config)]
        self.server = proc.start(argv, self.server_log, env=env, cwd=REPO)
        proc.wait_for(lambda: proc.udp_port_bound(self.port), 20, "ruroco-server", self.server)
        time.sleep(0.2)  # past the bind: the receive loop starts right after it

    def shells(self) -> int:
        """How many ``sh`` the commander has as children right now, waiting or running (not
        exited and waiting to be reaped)."""
        if self.commander is None:
            return 0
        parent = str(self.commander.pid)
        count = 0
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat", encoding="ascii", errors="replace") as fh:
                    stat = fh.read()
            except OSError:  # gone meanwhile
                continue
            name = stat[stat.find("(") + 1 : stat.rfind(")")]
            state, ppid = stat[stat.rfind(")") + 2 :].split()[:2]
            if name == "sh" and ppid == parent and state != "Z":  # a zombie has exited
                count += 1
        return count

    def crashed(self) -> str | None:
        """If a process died on its own: which one, its exit code and last log line."""
        for name, p, logf in (
            ("ruroco-server", self.server, self.server_log),
            ("ruroco-commander", self.commander, self.commander_log),
        ):
            if p is not None and p.poll() is not None:
                lines = logf.read_text(errors="replace").strip().splitlines() or [""]
                return f"{name} exited with {p.returncode} during the run: {lines[-1][:200]}"
        return None

    def stop(self) -> str:
        """Stop both processes; returns the server's log text (for its summary line)."""
        if self.server is not None:
            proc.stop(self.server)
        if self.commander is not None:
            proc.stop(self.commander)
        self.fifo.close()
        return self.server_log.read_text(errors="replace")

    def packet(self, counter: int) -> bytes:
        """A valid knock for the bench command with the given counter (no source claim)."""
        return knock_packet(self.key, counter)


class Counter:
    """Fresh, strictly increasing counters near the current time (the server's floor)."""

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        self._last = max(self._last + 1, time.time_ns())
        return self._last
