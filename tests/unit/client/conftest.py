"""Fixtures for the client tests: a temp conf dir, key files and loopback UDP receivers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from client_helpers import FIXTURE_KEY, Receiver


@pytest.fixture
def conf_dir(tmp_path: Path) -> Path:
    path = tmp_path / "conf"
    path.mkdir()
    return path


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "ruroco.key"
    path.write_text(FIXTURE_KEY)
    return path


@pytest.fixture
def receiver_v4() -> Iterator[Receiver]:
    rx = Receiver("127.0.0.1")
    yield rx
    rx.close()


@pytest.fixture
def receiver_v6() -> Iterator[Receiver]:
    rx = Receiver("::1")
    yield rx
    rx.close()
