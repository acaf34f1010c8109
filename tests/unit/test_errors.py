"""The ``Error: …`` / ``Caused by:`` rendering shared by every CLI."""

from __future__ import annotations

from pathlib import Path

from ruroco.errors import RurocoError, error_chain, format_error, os_reason, qpath


def _chain(*messages: str) -> BaseException:
    exc: BaseException | None = None
    for message in reversed(messages):
        new = RurocoError(message)
        new.__cause__ = exc
        exc = new
    assert exc is not None
    return exc


def test_single_message() -> None:
    assert format_error(RurocoError("Key too short")) == "Error: Key too short"


def test_one_cause_is_bare() -> None:
    try:
        try:
            Path("/does/not/exist").read_bytes()
        except OSError as exc:
            raise RurocoError('Could not read key file "/does/not/exist"') from exc
    except RurocoError as err:
        text = format_error(err)
    assert text == (
        'Error: Could not read key file "/does/not/exist"\n\nCaused by:\n'
        "    No such file or directory (os error 2)"
    )


def test_several_causes_are_numbered() -> None:
    text = format_error(_chain("top", "middle", "bottom"))
    assert text.endswith("Caused by:\n    0: middle\n    1: bottom")
    assert error_chain(_chain("a", "a", "b")) == ["a", "b"]


def test_qpath_escapes_like_rust_debug() -> None:
    assert qpath("/etc/ruroco") == '"/etc/ruroco"'
    assert qpath('a"b\\c') == '"a\\"b\\\\c"'


def test_os_reason_is_the_one_os_error_text() -> None:
    """Every "why" of an OS failure in a message comes from here, in the original's form."""
    try:
        Path("/does/not/exist").read_bytes()
    except OSError as exc:
        assert os_reason(exc) == "No such file or directory (os error 2)"
    assert os_reason(OSError(None, "no errno")) == "no errno"  # strerror without a number
    assert os_reason(TimeoutError("timed out")) == "timed out"  # an OSError without strerror
    assert os_reason(ValueError("invalid port value")) == "invalid port value"
    assert os_reason(ValueError()) == "ValueError"
