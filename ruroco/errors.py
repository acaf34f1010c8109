"""One exception type for every expected failure, so CLIs can print a clean chain.

Programs raise ``RurocoError("top-level message") from cause``; ``format_error`` renders
the chain the way the original prints anyhow errors (``Error: ...`` / ``Caused by:``), which
keeps operator-facing output stable without tracebacks.
"""

from __future__ import annotations


class RurocoError(Exception):
    """An expected, user-facing failure; the message is safe to print (never a key)."""


class ProtocolError(RurocoError):
    """A key, packet or message that does not follow the protocol (``ruroco.protocol``,
    ``ruroco.ipc``); defined here so the commander gets it without loading cryptography."""


def error_chain(exc: BaseException) -> list[str]:
    """Messages of ``exc`` and its causes, outermost first, without duplicates."""
    out: list[str] = []
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        msg = os_reason(cur)
        if msg and (not out or out[-1] != msg):
            out.append(msg)
        cur = cur.__cause__
    return out


def os_reason(exc: BaseException) -> str:
    """Why ``exc`` happened, as the original prints it: ``No such file or directory (os error
    2)`` for an ``OSError``, else the exception's text (or its type name if it has none)."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror} (os error {exc.errno})" if exc.errno else exc.strerror
    return str(exc) or type(exc).__name__


def format_error(exc: BaseException) -> str:
    """``Error: top`` plus an indented ``Caused by:`` block, as the original CLI prints it."""
    chain = error_chain(exc)
    lines = [f"Error: {chain[0] if chain else type(exc).__name__}"]
    causes = chain[1:]
    if causes:
        lines += ["", "Caused by:"]
        if len(causes) == 1:
            lines.append(f"    {causes[0]}")
        else:
            lines += [f"    {i}: {c}" for i, c in enumerate(causes)]
    return "\n".join(lines)


def format_error_line(exc: BaseException) -> str:
    """The chain on one line (``Error: top: cause``): what the daemons print, one journal line."""
    chain = error_chain(exc)
    return "Error: " + (": ".join(chain) if chain else type(exc).__name__)


def qpath(value: object) -> str:
    """Quote a path or string the way Rust's ``{:?}`` does, so messages match the original."""
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'
