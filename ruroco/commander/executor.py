"""Run one configured command (spec §4.7, deviation 3) and log its outcome as one line.

``sh -c`` runs in its own session, so on timeout the whole process group can be killed:
the original killed only ``sh`` and let background children outlive the timeout. Output goes
to unnamed temp files in ``$TMPDIR`` (not pipes), so a chatty command can never deadlock us,
and nothing is left behind even if the commander dies.
"""

from __future__ import annotations

import contextlib
import enum
import os
import signal
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from typing import IO

from ruroco import log
from ruroco.commander.commands import Command
from ruroco.ipaddr import ip_text
from ruroco.protocol import command_hash

# Beyond this a deadline is meaningless (and float/int conversion could overflow): no deadline.
NO_DEADLINE_AFTER_SEC = 2**32
# How much of each capture file makes it into the log line; the rest is counted, not logged.
MAX_LOGGED_OUTPUT = 64 * 1024


class Status(enum.Enum):
    SUCCESS = "success"
    FAILURE = "failure"
    TIMEOUT = "timeout"
    ERROR = "error"


@dataclass(frozen=True)
class Outcome:
    status: Status
    returncode: int | None = None
    stdout: str = ""
    stderr: str = ""


class Executor:
    """Spawns commands and remembers the running ones so a shutdown can kill them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen[bytes]] = set()

    def run(self, command: Command, ip: bytes) -> Outcome:
        ip_str = ip_text(ip)
        log.info(f"Running command ({command_hash(command.name)}) {command.cmd} for {ip_str}")
        try:
            outcome = self._run(command, ip_str)
        except Exception as exc:  # never let one command take a worker (or the daemon) down
            log.error(f"Error executing {command.cmd} for {ip_str}: {exc}")
            return Outcome(Status.ERROR)
        _log_outcome(command, ip_str, outcome)
        return outcome

    def kill_all(self) -> int:
        """SIGKILL every running command's process group; returns how many were signalled."""
        with self._lock:
            procs = [p for p in self._running if p.returncode is None]
        for proc in procs:
            _kill_group(proc)
        return len(procs)

    def _run(self, command: Command, ip_str: str) -> Outcome:
        with _capture("stdout") as out, _capture("stderr") as err:
            env = dict(os.environ)
            env["RUROCO_IP"] = ip_str
            try:
                proc = subprocess.Popen(
                    ["sh", "-c", command.cmd],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    env=env,
                    start_new_session=True,  # own process group: a timeout kills all of it
                )
            except OSError as exc:
                raise OSError(f"Could not spawn {command.cmd}: {exc.strerror}") from exc
            with self._lock:
                self._running.add(proc)
            try:
                timed_out = _wait(proc, command.timeout_sec)
            finally:
                with self._lock:
                    self._running.discard(proc)
            stdout, stderr = _read(out), _read(err)
        if timed_out:
            return Outcome(Status.TIMEOUT, proc.returncode, stdout, stderr)
        status = Status.SUCCESS if proc.returncode == 0 else Status.FAILURE
        return Outcome(status, proc.returncode, stdout, stderr)


def _wait(proc: subprocess.Popen[bytes], timeout_sec: int) -> bool:
    """Wait for ``sh``; True when it had to be killed. Popen.wait polls at up to 50 ms."""
    if timeout_sec > NO_DEADLINE_AFTER_SEC:
        proc.wait()
        return False
    try:
        proc.wait(timeout=timeout_sec)
        return False
    except subprocess.TimeoutExpired:
        # sh is not reaped yet, so its pid (= the group id) cannot have been reused.
        _kill_group(proc)
        proc.wait()
        return True


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _capture(which: str) -> IO[bytes]:
    """An unnamed file in $TMPDIR: nothing to clean up, even if we are killed."""
    try:
        return tempfile.TemporaryFile(prefix=f"ruroco-cmd-{os.getpid()}-", suffix=f"-{which}")
    except OSError as exc:
        raise OSError(
            f"Could not create {which} capture in {tempfile.gettempdir()}: {exc.strerror}"
        ) from exc


def _read(fh: IO[bytes]) -> str:
    try:
        size = os.fstat(fh.fileno()).st_size
        fh.seek(0)
        data = fh.read(MAX_LOGGED_OUTPUT)
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace").rstrip()
    if size > MAX_LOGGED_OUTPUT:
        text += f" … ({size - MAX_LOGGED_OUTPUT} more bytes not logged)"
    return text


def _log_outcome(command: Command, ip_str: str, outcome: Outcome) -> None:
    body = f"{command.cmd} for {ip_str}\nstdout: {outcome.stdout}\nstderr: {outcome.stderr}"
    if outcome.status is Status.SUCCESS:
        log.info(f"Execution was successful: {body}")
    elif outcome.status is Status.TIMEOUT:
        log.error(f"Execution timed out after {command.timeout_sec}s and was killed: {body}")
    else:
        rc = outcome.returncode
        how = f"killed by signal {-rc}" if rc is not None and rc < 0 else f"exit status {rc}"
        log.error(f"Execution was not successful ({how}): {body}")
