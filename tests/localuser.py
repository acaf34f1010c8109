"""A real unprivileged user for the local-attacker tests, and a directory it can reach.

The suite runs as root (CI and ``make test``); these tests act as a second, unprivileged
user on the same host, the way a compromised service account would (docs/security.md).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ATTACKER = "ruroco-test-attacker"


@pytest.fixture(scope="session")
def attacker() -> pwd.struct_passwd:
    """An unprivileged system user, created once per machine if it does not exist."""
    try:
        return pwd.getpwnam(ATTACKER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", ATTACKER],
            check=True,
        )
        return pwd.getpwnam(ATTACKER)


def run_as(user: pwd.struct_passwd, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` as ``user`` (no supplementary groups); fails the test if it fails."""
    return subprocess.run(
        list(argv),
        user=user.pw_uid,
        group=user.pw_gid,
        extra_groups=[],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A root-owned 0755 directory under /tmp that every user can traverse (pytest's own
    tmp_path is 0700, so an unprivileged user could not reach anything inside it)."""
    path = Path(tempfile.mkdtemp(prefix="ruroco-shared-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def attacker_dir(shared_dir: Path, attacker: pwd.struct_passwd) -> Path:
    """A directory inside ``shared_dir`` that belongs to the attacker."""
    path = shared_dir / "attacker"
    path.mkdir(mode=0o755)
    os.chown(path, attacker.pw_uid, attacker.pw_gid)
    return path


def planted_link(shared: Path, user: pwd.struct_passwd, name: str) -> tuple[Path, Path]:
    """A /tmp-like directory in ``shared`` (sticky, writable by all) where ``user`` planted
    the link ``name`` to a root-owned 0755 directory: returns that directory and the
    target, which a daemon that followed the link would use."""
    sticky = shared / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    target = shared / "target"
    target.mkdir(mode=0o755)
    run_as(user, "ln", "-s", str(target), str(sticky / name))
    return sticky, target


def in_fork_as(uid: int, gid: int, fn: Callable[[], object]) -> str:
    """Run ``fn()`` in a forked child that dropped to ``uid``/``gid`` (no supplementary
    groups); returns its report: ``ok <result>``, ``error <message>`` for a ``RurocoError``,
    ``crash <repr>`` otherwise. In-process, so the code under test needs no interpreter that
    the user could execute (a venv's python may live under root's 0700 home)."""
    from ruroco.errors import RurocoError

    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        os.close(read_fd)
        try:
            if os.getuid() == 0:
                os.setgroups([])
                os.setgid(gid)
                os.setuid(uid)
            report = f"ok {fn()}"
        except RurocoError as exc:
            report = f"error {exc}"
        except BaseException as exc:
            report = f"crash {exc!r}"
        os.write(write_fd, report.encode())
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as fh:
        out = fh.read().decode()
    os.waitpid(pid, 0)
    return out
