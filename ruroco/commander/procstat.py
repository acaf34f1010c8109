"""``/proc/PID/stat``, read one way for the commander (proc(5))."""

from __future__ import annotations


def stat_fields(pid: int) -> list[bytes]:
    """The fields of ``/proc/PID/stat`` after the command name, from the state (field 3) on:
    the name is cut at the last ``)``, since it may hold spaces and parentheses itself.
    OSError when the process is gone; IndexError for a line of another shape."""
    with open(f"/proc/{pid}/stat", "rb") as fh:
        fields = fh.read().rsplit(b")", 1)[1].split()
    if not fields:
        raise IndexError("empty /proc/PID/stat")
    return fields
