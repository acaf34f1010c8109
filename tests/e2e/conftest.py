"""Fixtures for the end-to-end tests: a deployment per test, daemons always stopped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_harness import Deployment, DeploymentFactory


@pytest.fixture
def make_deployment(tmp_path: Path) -> Iterator[DeploymentFactory]:
    """Build (not start) deployments; every daemon any of them started is stopped afterwards."""
    made: list[Deployment] = []

    def make(extra_commands: dict[str, str] | None = None) -> Deployment:
        dep = Deployment(tmp_path / f"dep{len(made)}", extra_commands)
        made.append(dep)
        return dep

    try:
        yield make
    finally:
        problems = []
        for dep in made:
            try:
                dep.stop_all()
            except AssertionError as exc:
                problems.append(str(exc))
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def deploy(make_deployment: DeploymentFactory) -> Deployment:
    """Commander and server running, server on 127.0.0.1:<free port>."""
    return make_deployment().start()
