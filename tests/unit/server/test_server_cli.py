import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from server_helpers import FIXTURE_KEY, packet, write_setup

from ruroco.server.blocklist import encode

BIN = os.path.join(os.path.dirname(sys.executable), "ruroco-server")


def clean_env(**extra):
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RUROCO_LISTEN_ADDRESS", "LISTEN_PID", "LISTEN_FDS", "RUROCO_LOG")
    }
    env.update(extra)
    return env


def cli(*args, **env):
    return subprocess.run(
        [BIN, *args], capture_output=True, text=True, timeout=30, env=clean_env(**env)
    )


def snapshot(root):
    return sorted(
        (str(p.relative_to(root)), p.stat().st_mtime_ns, p.stat().st_mode) for p in root.rglob("*")
    )


def test_help_and_version():
    result = cli("--help")
    assert result.returncode == 0
    assert "--config" in result.stdout and "--check" in result.stdout
    assert "/etc/ruroco/config.toml" in result.stdout
    version = cli("-V")
    assert version.returncode == 0 and version.stdout.startswith("ruroco-server, version ")


def test_unknown_option_is_a_usage_error():
    assert cli("--nope").returncode == 2


def test_missing_config_exact_message():
    result = cli("-c", "/tmp/path/does/not/exist")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        'Error: Could not read "/tmp/path/does/not/exist": No such file or directory (os error 2)'
    )


def test_short_option_equals_value_is_the_path_as_in_the_original():
    """clap reads ``-c=PATH`` as ``PATH``; click read ``=PATH``."""
    for args in (("-c=/tmp/path/does/not/exist",), ("--check", "-c=/tmp/path/does/not/exist")):
        result = cli(*args)
        assert result.returncode == 1
        assert result.stderr.strip() == (
            'Error: Could not read "/tmp/path/does/not/exist": No such file or directory'
            " (os error 2)"
        )


def test_an_option_given_twice_is_a_usage_error_as_in_the_original(tmp_path):
    config = str(write_setup(tmp_path))
    for args in (("-c", config, "-c", config), ("--check", "--check", "-c", config)):
        result = cli(*args)
        assert result.returncode == 2, args
        assert result.stderr.startswith("Usage: ruroco-server [OPTIONS]")
        assert result.stderr.rstrip().endswith("cannot be used multiple times."), result.stderr
    assert not (tmp_path / "state" / "blocklist.msgpck").exists()


def test_directory_as_config_is_a_runtime_error_naming_it(tmp_path):
    for args in (("-c", str(tmp_path)), ("--check", "-c", str(tmp_path))):
        result = cli(*args)
        assert result.returncode == 1
        assert (
            result.stderr.strip()
            == f'Error: Could not read "{tmp_path}": Is a directory (os error 21)'
        )


def test_config_without_ips(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('foo = "bar"\n')
    result = cli("--config", str(path))
    assert result.returncode == 1
    assert result.stderr.startswith(f'Error: Could not parse server config "{path}"')


def test_check_ok_writes_nothing_and_binds_nothing(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as held:
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        config = write_setup(tmp_path, extra=f'address = "127.0.0.1:{port}"\n')
        before = snapshot(tmp_path)
        result = cli("--check", "-c", str(config))
        assert snapshot(tmp_path) == before
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and result.stderr == ""
    assert lines[0].startswith(f'"{config}" OK: 2 destination IP(s), 1 key(s)')
    assert "with 0 entries" in lines[0]
    assert not (tmp_path / "state" / "blocklist.msgpck").exists()


def test_check_reads_an_existing_blocklist(tmp_path):
    config = write_setup(tmp_path)
    (tmp_path / "state" / "blocklist.msgpck").write_bytes(encode({b"\xff" * 8: 5, b"\1" * 8: 1}))
    result = cli("--check", "-c", str(config))
    assert result.returncode == 0 and "with 2 entries" in result.stdout


def test_check_reports_every_problem_naming_the_files(tmp_path):
    config = write_setup(tmp_path)
    (tmp_path / "etc" / "bad.key").write_text("DEADBEEF")
    (tmp_path / "etc" / "copy.key").write_text(FIXTURE_KEY)
    (tmp_path / "etc" / "copy.key").chmod(0o600)
    (tmp_path / "state" / "blocklist.msgpck").write_bytes(b"garbage")
    result = cli("--check", "-c", str(config))
    assert result.returncode == 1
    assert result.stdout == ""
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 3, errors
    assert f'Error: Could not load key "{tmp_path}/etc/bad.key": Key too short' in errors
    assert any("Duplicate key files detected" in e and "copy.key" in e for e in errors)
    assert any(
        e.startswith("Error: Could not create blocklist from vec")
        and f'"{tmp_path}/state/blocklist.msgpck"' in e
        for e in errors
    )
    assert FIXTURE_KEY not in result.stderr


def test_check_bad_config_and_missing_keys(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('ips = ["nope"]\n')
    result = cli("--check", "-c", str(path))
    assert result.returncode == 1
    assert result.stderr.startswith(f'Error: Could not parse server config "{path}": ips[0]')
    path.write_text(f'ips = []\nconfig_dir = "{tmp_path}/empty"\n')
    (tmp_path / "empty").mkdir()
    result = cli("--check", "-c", str(path))
    assert result.returncode == 1
    assert f'Could not find any .key files in "{tmp_path}/empty"' in result.stderr


def test_star_address_is_refused_at_start_and_in_check(tmp_path):
    """``*:PORT`` bound loopback only (glibc reads a host ``*`` with a port as no host at
    all); the original exits 1 (Rust resolves the host alone). One line, exit 1."""
    config = str(write_setup(tmp_path, extra='address = "*:34111"\n'))
    message = (
        'Error: Could not UdpSocket bind "*:34111": "*" is not an address'
        ' (every address: "[::]:34111")'
    )
    for args, env in (
        (("-c", config), {}),
        (("-c", config), {"RUROCO_LISTEN_ADDRESS": "*:34111"}),
        (("--check", "-c", config), {}),
    ):
        result = subprocess.run(
            [BIN, *args], capture_output=True, text=True, timeout=15, env=clean_env(**env)
        )
        assert result.returncode == 1, (args, env, result.stdout)
        assert result.stderr.strip() == message, (args, env)


@pytest.mark.parametrize(
    ("template", "bound"),
    [("::1:{port}", "[::1]"), ("::ffff:127.0.0.1:{port}", "[::ffff:127.0.0.1]"),
     ("127.0.0.1:+{port}", "127.0.0.1"), ("::1:+{port}", "[::1]")],
)  # fmt: skip
def test_addresses_the_original_starts_with_start_ours(tmp_path, template, bound):
    """Unbracketed IPv6 and a ``+`` before the port: the original binds them (Rust's
    ``ToSocketAddrs``), so a config it starts with starts ours (docs/deviations.md)."""
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
        probe.bind(("::1", 0))
        port = probe.getsockname()[1]
    address = template.format(port=port)
    config = write_setup(tmp_path, extra=f'address = "{address}"\n')
    check = cli("--check", "-c", str(config))
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen(
        [BIN, "-c", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "Running server on" in line:
                break
        assert f"Running server on {bound}:{port}" in lines[-1], lines
    finally:
        proc.terminate()
        _out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err


def start(tmp_path, **env):
    config = write_setup(tmp_path)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [BIN, "-c", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(RUROCO_LISTEN_ADDRESS=f"127.0.0.1:{port}", **env),
    )
    deadline = time.monotonic() + 15
    while not (tmp_path / "state" / "blocklist.msgpck").exists():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    time.sleep(0.3)  # socket selection follows the blocklist write
    return proc, port


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_the_process_cleanly_within_a_second(tmp_path, signum):
    proc, port = start(tmp_path)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.sendto(packet(), ("127.0.0.1", port))
        client.sendto(b"short", ("127.0.0.1", port))
    time.sleep(0.3)
    begin = time.monotonic()
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=5)
    assert time.monotonic() - begin < 1.0
    assert proc.returncode == 0, err
    assert "Shutdown requested, stopping server loop" in out
    assert "Server statistics: received=2 accepted=1" in out
    assert "Valid data for key [FF, FF, FF, FF, FF, FF, FF, FF]" in out
    assert "Rejected datagram from 127.0.0.1 port" in err


def test_debug_logging_shows_every_rejection(tmp_path):
    proc, port = start(tmp_path, RUROCO_LOG="DEBUG")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        for _ in range(3):
            client.sendto(bytes(94), ("127.0.0.1", port))
    time.sleep(0.5)
    proc.terminate()
    out, err = proc.communicate(timeout=5)
    assert out.count("DEBUG ] Successfully received 94 bytes from") == 3
    assert out.count("DEBUG ] Rejected datagram from 127.0.0.1 port") == 3
    assert err.count("ERROR ] Rejected datagram") == 1  # throttled
