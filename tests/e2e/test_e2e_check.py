"""``--check`` validates a deployment without side effects; bad config fails in one clean line."""

from __future__ import annotations

import subprocess

from e2e_harness import COMMANDER, SERVER, Deployment, DeploymentFactory, base_env


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv],
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )


def test_check_accepts_a_good_deployment_and_touches_nothing(
    make_deployment: DeploymentFactory,
) -> None:
    dep: Deployment = make_deployment()
    server = run(SERVER, "-c", dep.config, "--check")
    commander = run(COMMANDER, "-c", dep.config, "--commands", dep.commands, "--check")
    assert server.returncode == 0, server.stderr
    assert commander.returncode == 0, commander.stderr
    assert not dep.blocklist.exists()
    assert list(dep.run.iterdir()) == []  # no socket, no lock


def test_broken_config_is_one_line_error_naming_the_file_not_its_content(
    make_deployment: DeploymentFactory,
) -> None:
    dep: Deployment = make_deployment()
    marker = "do-not-echo-this-line"
    dep.config.write_text(f'ips = ["127.0.0.1"\nsecret = "{marker}"\n')  # invalid TOML
    dep.commands.write_text(f'[commands\ndefault = "{marker}"\n')
    for res in (
        run(SERVER, "-c", dep.config, "--check"),
        run(SERVER, "-c", dep.config),
        run(COMMANDER, "-c", dep.config, "--commands", dep.commands, "--check"),
        run(COMMANDER, "-c", dep.config, "--commands", dep.commands),
    ):
        out = res.stdout + res.stderr
        assert res.returncode == 1, out
        assert "Traceback" not in out
        assert marker not in out
        errors = [line for line in res.stderr.splitlines() if line.startswith("Error: ")]
        # one line per broken file (--check may report both), each naming its file
        assert 1 <= len(errors) <= 2, res.stderr
        assert str(dep.config) in errors[0], res.stderr
        assert all(str(dep.config) in e or str(dep.commands) in e for e in errors)
    assert not dep.socket_path.exists()
