"""``ruroco-ui``'s command line: options, and one line instead of a traceback without the
``ui`` extra or with a conf dir that cannot be made."""

from __future__ import annotations

import fcntl
import os
import select
import socket
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

from client_helpers import FIXTURE_KEY

from ruroco.client.saved import SavedCommand, SavedCommands

UI = str(Path(sys.executable).with_name("ruroco-ui"))


def run(*args: str, code: str | None = None) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-c", code] if code else [UI]
    return subprocess.run(
        [*argv, *args], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )


def test_help_names_the_options() -> None:
    res = run("--help")
    assert res.returncode == 0
    assert "--conf-dir DIR" in res.stdout and "--protocol {0,1}" in res.stdout


def test_without_textual_one_line_says_how_to_install_the_extra() -> None:
    # None in sys.modules makes "import textual" fail as if it were not installed
    code = (
        "import sys; sys.modules['textual'] = None; sys.argv[0] = 'ruroco-ui';"
        " from ruroco.ui.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    res = run(code=code)
    assert res.returncode == 1
    assert res.stdout == ""
    assert res.stderr == (
        "Error: ruroco-ui needs the terminal UI framework Textual: install the ui extra,"
        " e.g. pip install 'ruroco-VERSION-py3-none-any.whl[ui]' (the wheel of make dist)\n"
    )


def test_a_conf_dir_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    res = run("--conf-dir", str(blocker / "conf"))
    assert res.returncode == 1
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    assert res.stderr.startswith(f'Error: Could not create config dir "{blocker / "conf"}"')


def test_a_bad_protocol_is_a_usage_error() -> None:
    res = run("--protocol", "2")
    assert res.returncode == 2
    assert "invalid choice: 2" in res.stderr


class Terminal:
    """``ruroco-ui`` on a pseudo-terminal of 80×24: the real driver, not the pilot."""

    def __init__(self, conf_dir: Path) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        env = {**os.environ, "TERM": "xterm-256color", "RUROCO_CONF_DIR": str(conf_dir)}
        self.proc = subprocess.Popen(
            [UI], stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True
        )
        os.close(slave)
        self.seen = b""

    def wait_for(self, text: bytes, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.seen and time.monotonic() < deadline:
            if select.select([self.master], [], [], 0.2)[0]:
                self.seen += os.read(self.master, 65536)
        assert text in self.seen, self.seen[-2000:]

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def exit_code(self, timeout: float) -> int:
        """Wait for the exit, reading what it draws meanwhile (a full pty would block it)."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            if select.select([self.master], [], [], 0.1)[0]:
                try:
                    self.seen += os.read(self.master, 65536)
                except OSError:
                    break
        return self.proc.wait(timeout=max(deadline - time.monotonic(), 0.1))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


def test_runs_in_a_real_terminal_and_quits_with_ctrl_q(tmp_path: Path) -> None:
    term = Terminal(tmp_path / "conf")
    try:
        term.wait_for(b"Dashboard")
        term.type(b"\x11")  # ctrl+q
        assert term.exit_code(30) == 0
    finally:
        term.close()
    assert (tmp_path / "conf").is_dir()  # the conf dir the CLI would use
    assert b"Traceback" not in term.seen


def test_quitting_does_not_wait_for_a_knock_that_waits_for_its_port(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "k.key").write_text(FIXTURE_KEY)
    with socket.socket() as probe:  # nothing listens there: the wait would last 30 s
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:  # takes the knocks
        sink.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{sink.getsockname()[1]}"
        SavedCommands(conf).set([SavedCommand(address, "c", key_file="k.key", wait_port=closed)])
        term = Terminal(conf)
        try:
            term.wait_for(b"never run")
            term.type(b"r")
            term.wait_for(b"waiting for")
            started = time.monotonic()
            term.type(b"\x11")
            assert term.exit_code(10) == 0
            assert time.monotonic() - started < 5
        finally:
            term.close()
    assert b"Traceback" not in term.seen and b"Exception in thread" not in term.seen
