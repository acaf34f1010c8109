"""The commander daemon shortens the GIL's switch interval (``GIL_SWITCH_INTERVAL_SEC``), so
a worker running Python holds up the accepting thread for at most that long."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from commander_helpers import write_commands, write_config

from ruroco.commander.commander import GIL_SWITCH_INTERVAL_SEC

# ``run`` is the daemon (the CLI calls it after loading the files). A thread sends SIGTERM
# once the socket exists; the interval is printed (stderr: the log is on stdout) before and
# after ``run``.
_RUN = """
import os, signal, sys, threading, time
from pathlib import Path
from ruroco.commander.commander import run
from ruroco.commander.commands import load_command_file
from ruroco.commander.config import load_config
directory = Path(sys.argv[1])
print("interval", sys.getswitchinterval(), file=sys.stderr)
def stop() -> None:
    while not (directory / "ruroco.socket").exists():
        time.sleep(0.01)
    os.kill(os.getpid(), signal.SIGTERM)
threading.Thread(target=stop, daemon=True).start()
config = load_config(directory / "config.toml")
run(config, load_command_file(directory / "commands.toml"))
print("interval", sys.getswitchinterval(), file=sys.stderr)
"""


def _run_daemon(directory: Path, script: str) -> subprocess.CompletedProcess[str]:
    """``script`` in a Python of its own, given a commander set-up in ``directory``."""
    write_config(directory, config_dir=str(directory), socket_user="", socket_group="")
    write_commands(directory, {"t": "true"})
    return subprocess.run(
        [sys.executable, "-c", script, str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_daemon_runs_with_the_short_switch_interval(tmp_path: Path) -> None:
    result = _run_daemon(tmp_path, _RUN)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    marked = [line.split()[1] for line in lines if line.startswith("interval ")]
    before, after = map(float, marked)
    assert before == 0.005  # CPython's default: the daemon changed it, not the interpreter
    assert after == pytest.approx(GIL_SWITCH_INTERVAL_SEC) and after < before


# ``start`` wrapped so that the process gets SIGTERM the moment the socket exists, the
# earliest a supervisor or a test that waits for the socket can send it.
_TERM_AT_START = """
import os, signal, sys
from pathlib import Path
from ruroco.commander import commander as module
from ruroco.commander.commands import load_command_file
from ruroco.commander.config import load_config
real_start = module.Commander.start
def start(self):
    real_start(self)
    os.kill(os.getpid(), signal.SIGTERM)
module.Commander.start = start
directory = Path(sys.argv[1])
module.run(load_config(directory / "config.toml"), load_command_file(directory / "commands.toml"))
"""


def test_a_sigterm_as_soon_as_the_socket_exists_stops_in_order(tmp_path: Path) -> None:
    """The handlers are installed before the start: the daemon stops as on any SIGTERM (it
    used to die by the signal's default action, leaving its socket behind)."""
    result = _run_daemon(tmp_path, _TERM_AT_START)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Commander stopped" in result.stdout
    assert not (tmp_path / "ruroco.socket").exists()
