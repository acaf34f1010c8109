"""Log line format, level routing and robustness."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


def test_a_string_buffer_gets_plain_lines_without_an_exception_per_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Ansible action plugin collects the client's lines in a StringIO: no colour, and no
    exception raised and caught for every line, as asking it for a descriptor did (a forked
    worker's knock paid for it)."""
    buffer = io.StringIO()
    monkeypatch.setattr(sys, "stdout", buffer)
    raised: list[type[BaseException]] = []

    def trace(frame: object, event: str, arg: object) -> object:
        if event == "exception":
            raised.append(arg[0])  # type: ignore[index]
        return trace

    sys.settrace(trace)
    try:
        log.info("one")
        log.info("two")
    finally:
        sys.settrace(None)
    assert raised == []
    lines = buffer.getvalue().splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == ["INFO ] one", "INFO ] two"]


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


# --- escaping and length cap (security review finding 11) --------------------------------

BIDI_CONTROLS = frozenset(
    chr(c) for c in (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))
)
FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})
PREFIX = "[1970-01-01T00:00:00.000Z ERROR ] "
JOURNALD_LINE_MAX = 48 * 1024  # bytes, systemd-journald's default LineMax=
MARKER = re.compile(r" … \((\d+) more characters not logged\)\Z")


def _forbidden(ch: str) -> bool:
    return unicodedata.category(ch) in FORBIDDEN_CATEGORIES or ch in BIDI_CONTROLS


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("next\x85line", "next\\x85line"),  # NEL: a line break for some viewers
        ("\x9b31mred", "\\x9b31mred"),  # CSI: one-byte escape sequence introducer
        ("a\u2028b\u2029c", "a\\u2028b\\u2029c"),
        ("user\u202egnp.exe", "user\\u202egnp.exe"),  # right-to-left override
        ("\u2066x\u2069\u200e\u200f\u061c", "\\u2066x\\u2069\\u200e\\u200f\\u061c"),
        ("bad \udcff name", "bad \\udcff name"),  # lone surrogate from a file name
        ("\x00\x7f\x9f", "\\x00\\x7f\\x9f"),
        ("tab\there\\n stays", "tab\\there\\n stays"),
        ("plain café ✓ 漢字", "plain café ✓ 漢字"),
    ],
)
def test_escapes_c1_separators_bidi_and_surrogates(raw: str, escaped: str) -> None:
    assert log.format_line("INFO", raw, ns=0) == f"[1970-01-01T00:00:00.000Z INFO ] {escaped}\n"


def test_every_code_point_python_does_not_print_is_escaped_and_nothing_else() -> None:
    every = [chr(c) for c in range(sys.maxunicode + 1)]
    hidden = [ch for ch in every if not ch.isprintable()]
    assert all(ch in hidden for ch in every if _forbidden(ch))  # the named dangers included
    for ch in hidden:
        out = log.escape(ch)
        assert out.startswith("\\") and out.isascii() and out.isprintable(), repr(ch)
        assert out in ("\\n", "\\r", "\\t") or int(out[2:], 16) == ord(ch), repr(ch)
    shown = "".join(ch for ch in every if ch.isprintable())
    assert log.escape(shown) == shown  # nothing else is touched


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("a\u200bb", "a\\u200bb"),  # zero-width space: hides text in a viewer
        ("\ufeffx", "\\ufeffx"),  # byte order mark
        ("\u2060", "\\u2060"),  # word joiner
        ("\U000e0041", "\\U000e0041"),  # tag character: invisible "A"
        ("\ue000", "\\ue000"),  # private use
        ("\xa0", "\\xa0"),  # no-break space, looks like a space
    ],
)
def test_invisible_format_characters_are_escaped(raw: str, escaped: str) -> None:
    assert log.escape(raw) == escaped
    assert log.format_line("INFO", raw, ns=0).endswith(escaped + "\n")


def test_nul_flood_becomes_one_capped_line_with_a_count() -> None:
    line = log.format_line("ERROR", "stdout: " + "\x00" * 65536, ns=0)
    assert line.count("\n") == 1 and line.endswith("\n")
    assert len(line.encode()) < JOURNALD_LINE_MAX
    body = line[len(PREFIX) : -1]
    assert len(body) <= log.MAX_MESSAGE_CHARS
    marker = MARKER.search(body)
    assert marker is not None
    kept = body[: marker.start()]
    assert kept == "stdout: " + "\\x00" * ((len(kept) - 8) // 4)  # no escape cut in half
    assert 8 + kept.count("\\x00") + int(marker.group(1)) == 8 + 65536


def test_wide_characters_stay_under_the_journald_limit() -> None:
    line = log.format_line("ERROR", "😀" * 40_000, ns=0)  # 4 UTF-8 bytes each
    assert len(line.encode()) < JOURNALD_LINE_MAX
    assert MARKER.search(line[:-1]) is not None


def test_capping_each_stream_keeps_both_visible() -> None:
    """How the executor logs a command's output: cap stdout and stderr separately."""
    stdout = "\x00" * 65536
    stderr = "permission denied\n"
    out, err = log.escape_capped(stdout), log.escape_capped(stderr)
    body = f"cmd for 1.2.3.4\nstdout: {out}\nstderr: {err}"
    line = log.format_line("ERROR", f"Execution was not successful (exit status 1): {body}", ns=0)
    assert line.endswith("\\nstderr: permission denied\\n\n")
    assert "more characters not logged)\\nstderr: " in line
    assert len(line) <= log.MAX_MESSAGE_CHARS + len(PREFIX) + 1


def test_escape_capped_short_text_is_only_escaped() -> None:
    assert log.escape_capped("a\nb", 64) == "a\\nb"
    assert log.escape_capped("x" * 64, 64) == "x" * 64
    capped = log.escape_capped("x" * 65, 64)
    assert len(capped) <= 64 and capped.endswith(" more characters not logged)")


def test_escape_capped_refuses_a_cap_without_room_for_the_marker() -> None:
    assert log.MIN_CAP == 64
    with pytest.raises(ValueError, match="at least"):
        log.escape_capped("x", log.MIN_CAP - 1)


def test_surrogates_and_non_utf8_streams_still_log_a_line() -> None:
    code = "from ruroco import log; log.info('caf\\xe9 \\u2713 \\udcff')"
    result = _run(code, {"PYTHONIOENCODING": "ascii"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith(" INFO ] caf\\xe9 \\u2713 \\udcff\n")


_DANGEROUS = st.sampled_from(
    ["\n", "\r", "\x00", "\x1b", "\x7f", "\x85", "\x9b", "\u2028", "\u2029", *BIDI_CONTROLS]
)
_CHARS = st.one_of(_DANGEROUS, st.characters(exclude_categories=()))
_PIECE = st.text(_CHARS, max_size=40)
_TEXT = st.one_of(
    _PIECE, st.builds(lambda piece, times: piece * times, _PIECE, st.integers(0, 5000))
)


@settings(max_examples=300, deadline=None)
@given(text=_TEXT, level=st.sampled_from(["INFO", "ERROR", "DEBUG"]))
def test_property_format_line_is_one_safe_bounded_line(text: str, level: str) -> None:
    line = log.format_line(level, text, ns=0)
    assert line.count("\n") == 1 and line.endswith("\n")
    assert not any(_forbidden(ch) for ch in line[:-1])
    prefix = f"[1970-01-01T00:00:00.000Z {level} ] "
    assert line.startswith(prefix)
    assert len(line) <= len(prefix) + log.MAX_MESSAGE_CHARS + 1
    assert len(line.encode()) < JOURNALD_LINE_MAX


@settings(max_examples=300, deadline=None)
@given(text=_TEXT, limit=st.integers(64, 3000))  # log.MIN_CAP is 64
def test_property_escape_capped_is_an_escaped_prefix_plus_count(text: str, limit: int) -> None:
    out = log.escape_capped(text, limit)
    assert len(out) <= limit
    assert log.escape(out) == out  # already safe: logging it escapes nothing twice
    marker = MARKER.search(out)
    if marker is None:
        assert out == log.escape(text)
    else:
        omitted = int(marker.group(1))
        assert 0 < omitted <= len(text)
        assert out[: marker.start()] == log.escape(text[: len(text) - omitted])
        assert len(log.escape(text)) > limit  # only cut when it did not fit
