"""A real OpenSSH server on 127.0.0.1 for the ``connect`` bench and the ssh-through-``connect``
tests: ``ssh`` logs in with a key made for the run and runs a command, so a figure or a test
ends at the remote command's output, not at a protocol banner.

Everything the server needs lives in the work directory (host key, client key,
``authorized_keys``, config, pid file); nothing in ``/etc/ssh`` is read or changed, and the
server listens on 127.0.0.1 only. Callers inside a network namespace pass ``prefix`` (e.g.
``nsenter -t PID -n``) so that sshd and ssh run there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

SSHD = "/usr/sbin/sshd"
# sshd refuses to start without its privilege separation directory (Debian: /run/sshd).
PRIVSEP_DIR = "/run/sshd"


class SshServer:
    """``sshd -D -e`` on ``127.0.0.1:port``; ``argv(command)`` is an ``ssh`` that logs in as
    the current user with the run's key and runs ``command``."""

    def __init__(self, work: Path, port: int, prefix: tuple[str, ...] = ()) -> None:
        if not os.path.exists(SSHD):
            raise RuntimeError(f"{SSHD} is missing: `make sysdeps` installs openssh-server")
        self.work, self.port, self.prefix = work, port, prefix
        work.mkdir(parents=True, exist_ok=True)
        os.makedirs(PRIVSEP_DIR, mode=0o755, exist_ok=True)
        self.host_key, self.client_key = work / "host_ed25519", work / "client_ed25519"
        for key in (self.host_key, self.client_key):
            if not key.exists():
                subprocess.run(
                    ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True
                )
        authorized = work / "authorized_keys"
        shutil.copyfile(f"{self.client_key}.pub", authorized)
        self.log = work / f"sshd-{port}.log"
        config = work / f"sshd-{port}.conf"
        config.write_text(
            f"ListenAddress 127.0.0.1:{port}\n"
            f"HostKey {self.host_key}\n"
            f"AuthorizedKeysFile {authorized}\n"
            f"PidFile {work}/sshd-{port}.pid\n"
            "PermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "UsePAM no\n"
            # The work directory is the test's tmp dir, whose parents are not root-only.
            "StrictModes no\n"
            "PrintMotd no\n"
            "UseDNS no\n"
        )
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [*prefix, SSHD, "-D", "-e", "-f", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        self._wait_listening()

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + 20
        while "Server listening on" not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"sshd did not start: {self.log.read_text(errors='replace')}")
            time.sleep(0.02)

    def argv(self, command: str, *options: str) -> list[str]:
        """``ssh`` to this server running ``command``; ``options`` are extra ``-o`` values."""
        argv = [*self.prefix, "ssh", "-F", "/dev/null", "-i", str(self.client_key)]
        for option in (
            "BatchMode=yes",
            "IdentitiesOnly=yes",
            "StrictHostKeyChecking=no",
            "UserKnownHostsFile=/dev/null",
            "LogLevel=ERROR",
            "ConnectTimeout=20",
            *options,
        ):
            argv += ["-o", option]
        return [*argv, "-p", str(self.port), "127.0.0.1", command]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> SshServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
