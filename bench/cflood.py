"""Builds the C flood sender (bench/flood.c) into bench/out/ when a C compiler exists.

Rebuilt only when the source is newer than the binary. Without a compiler the benchmarks
fall back to the Python sender and RESULTS.md says which engine ran.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

SOURCE = Path(__file__).resolve().parent / "flood.c"
BINARY = Path(__file__).resolve().parent / "out" / "flood-c"
#: What flood.c sends (its header comment describes each shape).
SHAPES = ("random", "known", "oversized", "small", "mix")


def build() -> Path | None:
    """Path of an up-to-date binary, or None without a working C compiler."""
    return compile_c(SOURCE, BINARY)


def compile_c(source: Path, binary: Path, flags: list[str] | None = None) -> Path | None:
    """``binary`` built from ``source`` with ``flags`` (rebuilt only when the source is
    newer), or None without a working C compiler or when the build fails."""
    if binary.exists() and binary.stat().st_mtime >= source.stat().st_mtime:
        return binary
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    binary.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [cc, "-O2", "-Wall", "-Wextra", *(flags or []), "-o", str(binary), str(source)],
        capture_output=True,
        timeout=120,
        check=False,
    )
    return binary if done.returncode == 0 else None


def argv(
    binary: Path,
    host: str,
    port: int,
    sources: int,
    octet: int,
    seconds: float,
    rate: float,
    key_id: bytes | None,
    *,
    shape: str | None = None,
    pktinfo: bool = False,
) -> list[str]:
    """Command line for one run. Without ``shape``, ``key_id`` (public, sent in clear)
    selects the known-key shape and its absence the random one; ``shape`` names one of
    ``SHAPES`` (``known`` and ``mix`` need ``key_id``). ``pktinfo``: one unbound socket
    spoofs every source with ``IP_PKTINFO`` instead of one bound socket per source."""
    if shape is None:
        shape = "known" if key_id is not None else "random"
    if shape not in SHAPES:
        raise ValueError(f"unknown flood shape {shape!r}")
    if shape in ("known", "mix") and key_id is None:
        raise ValueError(f"the {shape} shape needs the key id")
    out = [str(binary), host, str(port), str(sources), str(octet), str(seconds), str(rate)]
    out += [shape, key_id.hex() if key_id is not None else "-"]
    return out + (["pktinfo"] if pktinfo else [])
