"""Log line format, level routing and robustness (spec §5.1)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from ruroco import log


@pytest.mark.parametrize(
    ("value", "enabled"),
    [
        ("debug", True),
        ("DEBUG", True),
        ("Debug", True),
        ("info", False),
        ("", False),
        (None, False),
    ],
)
def test_parse_log_env(value: str | None, enabled: bool) -> None:
    assert log.parse_log_env(value) is enabled


def test_colourize() -> None:
    assert log.colourize("INFO", True) == "\x1b[32mINFO\x1b[0m"
    assert log.colourize("INFO", False) == "INFO"


def test_timestamp_shape() -> None:
    ts = log.timestamp(1725821510_123_456_789)
    assert ts == "2024-09-08T18:51:50.123Z" and len(ts) == 24


def test_one_line_per_event_even_with_newlines() -> None:
    line = log.format_line("INFO", "stdout: a\nb\rc\x1b[31m", ns=0)
    assert line == "[1970-01-01T00:00:00.000Z INFO ] stdout: a\\nb\\rc\\x1b[31m\n"
    assert line.count("\n") == 1


def _run(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )


def test_levels_go_to_the_right_stream_and_debug_needs_env() -> None:
    code = "from ruroco import log; log.info('i'); log.debug('d'); log.error('e')"
    quiet = _run(code, {"RUROCO_LOG": "info"})
    pattern = r"^\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO \] i\n$"
    assert re.match(pattern, quiet.stdout)
    assert quiet.stderr.endswith(" ERROR ] e\n")
    loud = _run(code, {"RUROCO_LOG": "debug"})
    assert " DEBUG ] d" in loud.stdout


def test_write_errors_are_ignored() -> None:
    code = (
        "import os, sys\nos.close(1)\nfrom ruroco import log\nlog.info('x')\n"
        "print('alive', file=sys.stderr)"
    )
    result = _run(code, {})
    assert result.returncode == 0 and "alive" in result.stderr
