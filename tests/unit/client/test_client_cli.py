"""``ruroco-client`` as a real process: exit codes, messages, and the packets on the wire."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from client_helpers import (
    CLIENT,
    FIXTURE_KEY,
    Receiver,
    client_env,
    ip16,
    read_counter_file,
    run_client,
)

import ruroco
from ruroco.protocol import command_hash


def _no_key_leak(result: subprocess.CompletedProcess[str]) -> None:
    assert FIXTURE_KEY not in result.stdout + result.stderr


def test_gen_prints_only_the_key(conf_dir: Path) -> None:
    result = run_client("gen", conf_dir=conf_dir)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout) == 56 and result.stdout.endswith("==")
    assert len(base64.b64decode(result.stdout, validate=True)) == 40
    assert result.stderr == ""
    assert (conf_dir / "client.lock").exists()
    second = run_client("gen", conf_dir=conf_dir).stdout
    assert second != result.stdout


def test_generated_key_sends(conf_dir: Path, tmp_path: Path) -> None:
    key = run_client("gen", conf_dir=conf_dir).stdout
    (tmp_path / "gen.key").write_text(key)
    rx = Receiver("127.0.0.1", key)
    try:
        result = run_client(
            "send", "-a", rx.address, "-k", str(tmp_path / "gen.key"), conf_dir=conf_dir
        )
        assert result.returncode == 0, result.stderr
        assert rx.receive_data().counter == read_counter_file(conf_dir)
        assert key not in result.stdout + result.stderr
    finally:
        rx.close()


def test_reseed(conf_dir: Path) -> None:
    before = time.time_ns()
    result = run_client("reseed", conf_dir=conf_dir)
    assert result.returncode == 0, result.stderr
    assert "Counter reseeded" in result.stdout
    assert before <= read_counter_file(conf_dir) <= time.time_ns()


def test_send_v4_packet_fields_and_counter_persisted_first(
    conf_dir: Path, key_file: Path, receiver_v4: Receiver
) -> None:
    proc = subprocess.Popen(
        [
            CLIENT,
            "send",
            "-a",
            receiver_v4.address,
            "-k",
            str(key_file),
            "-c",
            "open_port",
            "-i",
            "192.168.178.123",
        ],
        env=client_env(conf_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        packet_data = receiver_v4.receive_data(timeout=20)
        on_disk_at_arrival = read_counter_file(conf_dir)  # the file is written before the send
    finally:
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert packet_data.counter == on_disk_at_arrival == read_counter_file(conf_dir)
    assert packet_data.cmd_hash == command_hash("open_port")
    assert packet_data.strict is True
    assert packet_data.src_ip == ip16("192.168.178.123")
    assert packet_data.dst_ip == ip16("127.0.0.1")
    assert FIXTURE_KEY not in out + err
    assert "Sent command open_port from 127.0.0.1:" in out
    assert receiver_v4.nothing_pending()  # one destination, one datagram


def test_send_v6_permissive(conf_dir: Path, key_file: Path, receiver_v6: Receiver) -> None:
    result = run_client(
        "send", "--address", receiver_v6.address, f"--key-file={key_file}", "--permissive",
        "--send-delay-ms", "0", conf_dir=conf_dir,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = receiver_v6.receive_data()
    assert data.strict is False
    assert data.dst_ip == ip16("::1")
    assert data.src_ip is None
    assert data.cmd_hash == command_hash("default")


def test_consecutive_sends_consume_consecutive_counters(
    conf_dir: Path, key_file: Path, receiver_v4: Receiver, receiver_v6: Receiver
) -> None:
    for rx in (receiver_v4, receiver_v6):
        result = run_client("send", "-a", rx.address, "-k", str(key_file), conf_dir=conf_dir)
        assert result.returncode == 0, result.stderr
    first, second = receiver_v4.receive_data(), receiver_v6.receive_data()
    assert second.counter == first.counter + 1 == read_counter_file(conf_dir)


def test_attached_short_values_and_flag_clusters_send(
    conf_dir: Path, key_file: Path, receiver_v4: Receiver
) -> None:
    """``-aVALUE`` and ``-e4`` (click's syntax, kept by the one parser) send the same packet."""
    result = run_client(
        "send", f"-a{receiver_v4.address}", f"-k{key_file}", "-ccmd", "-e4", conf_dir=conf_dir
    )
    assert result.returncode == 0, result.stderr
    data = receiver_v4.receive_data()
    assert (data.cmd_hash, data.strict) == (command_hash("cmd"), False)


def test_short_options_with_equals_send_as_in_the_original(
    conf_dir: Path, key_file: Path, receiver_v4: Receiver
) -> None:
    """clap reads ``-a=VALUE`` as ``VALUE`` (the original sends); click kept the ``=``."""
    result = run_client(
        "send", f"-a={receiver_v4.address}", f"-k={key_file}", "-ec=cmd", conf_dir=conf_dir
    )
    assert result.returncode == 0, result.stderr
    data = receiver_v4.receive_data()
    assert (data.cmd_hash, data.strict) == (command_hash("cmd"), False)


def test_an_option_given_twice_exits_2_as_in_the_original(
    conf_dir: Path, key_file: Path, receiver_v4: Receiver
) -> None:
    k = str(key_file)
    for args in (
        ["-a", receiver_v4.address, "-k", k, "-a", receiver_v4.address],
        ["-a", receiver_v4.address, "-k", k, "-e", "-e"],
    ):
        result = run_client("send", *args, conf_dir=conf_dir)
        assert result.returncode == 2, (args, result.stderr)
        assert "cannot be used multiple times." in result.stderr
    assert receiver_v4.nothing_pending()
    assert not (conf_dir / "counter").exists()


def test_send_example_from_original_suite(conf_dir: Path, key_file: Path) -> None:
    result = run_client(
        "send", "-a", "127.0.0.1:1234", "-k", str(key_file), "-i", "192.168.178.123",
        conf_dir=conf_dir,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def _fails(conf_dir: Path, *args: str) -> str:
    result = run_client(*args, conf_dir=conf_dir)
    assert result.returncode == 1, (result.stdout, result.stderr)
    _no_key_leak(result)
    logged, sep, error = result.stderr.partition("Error: ")
    assert sep
    assert all(line.startswith("[") for line in logged.splitlines())  # only log lines before
    return sep + error


def test_bad_key_exact_message_and_no_counter(conf_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.key"
    bad.write_text("DEADBEEF")
    assert _fails(conf_dir, "send", "-a", "127.0.0.1:9", "-k", str(bad)) == "Error: Key too short\n"
    assert not (conf_dir / "counter").exists()
    assert (conf_dir / "client.lock").exists()


def test_missing_key_file(conf_dir: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nope.key"
    err = _fails(conf_dir, "send", "-a", "127.0.0.1:9", "-k", str(missing))
    assert err == (
        f'Error: Could not read key file "{missing}"\n\nCaused by:\n'
        "    No such file or directory (os error 2)\n"
    )
    assert not (conf_dir / "counter").exists()


def test_runtime_error_messages(conf_dir: Path, key_file: Path) -> None:
    k = str(key_file)
    assert _fails(conf_dir, "send", "-a", "127.0.0.1:9", "-k", k, "-i", "not-an-ip").startswith(
        'Error: Invalid --ip value "not-an-ip"'
    )
    assert _fails(conf_dir, "send", "-a", "127.0.0.1:asd", "-k", k) == (
        'Error: Invalid port "asd" in address "127.0.0.1:asd"\n'
    )
    assert _fails(conf_dir, "send", "-a", "127.0.0.1:0", "-k", k) == (
        'Error: Invalid port "0" in address "127.0.0.1:0"\n'
    )
    assert _fails(conf_dir, "send", "-a", "[::1]", "-k", k).startswith(
        'Error: Invalid address "[::1]", expected'
    )
    assert _fails(conf_dir, "send", "-a", "999.999.999.999:9999", "-k", k).startswith(
        "Error: Could not resolve hostname for 999.999.999.999:9999"
    )
    assert _fails(conf_dir, "send", "-a", "127.0.0.1:9", "-k", k, "-6") == (
        "Error: Could not find any IPv6 address for 127.0.0.1:9\n"
    )
    err = _fails(conf_dir, "send", "-a", "[::ffff:255.255.255.255]:1234", "-k", k)
    assert err.startswith("Error: Could not send to any destination: [::ffff:255.255.255.255]:1234")
    (conf_dir / "counter").write_bytes(b"short")
    err = _fails(conf_dir, "send", "-a", "127.0.0.1:9", "-k", k)
    assert err.startswith(f'Error: Could not read counter file "{conf_dir / "counter"}"')
    assert "failed to fill whole buffer" in err
    assert (conf_dir / "counter").read_bytes() == b"short"


def test_usage_errors_exit_2(conf_dir: Path, key_file: Path) -> None:
    k = str(key_file)
    for args in (
        ["send", "-a", "127.0.0.1:9"],
        ["send", "-k", k],
        ["send", "-a", "127.0.0.1:9", "-k", k, "-d", "abc"],
        ["send", "-a", "127.0.0.1:9", "-k", k, "-d", "-1"],
        ["send", "-a", "127.0.0.1:9", "-k", k, "-d", "18446744073709551616"],
        ["send", "-a", "127.0.0.1:9", "-k", k, "--bogus"],
        ["send", "-a", "127.0.0.1:9", "-k", k, "extra"],
        ["gen", "-V"],
        ["nope"],
    ):
        result = run_client(*args, conf_dir=conf_dir)
        assert result.returncode == 2, (args, result.stderr)
        assert "Usage:" in result.stderr, args
    assert not (conf_dir / "counter").exists()


@pytest.mark.parametrize(
    ("command", "option", "name"),
    [
        ("send", "-c", "'-c' / '--command'"),
        ("send", "-a", "'-a' / '--address'"),
        ("send", "-i", "'-i' / '--ip'"),
        ("connect", "-c", "'-c' / '--command'"),
        ("connect", "-a", "'-a' / '--address'"),
        ("connect", "HOST", "'HOST'"),
    ],
)
def test_text_that_is_not_utf8_is_a_usage_error(
    conf_dir: Path, key_file: Path, command: str, option: str, name: str
) -> None:
    """As clap's String arguments: exit 2 and one error, no traceback, no counter used."""
    bad = b"h\xffx"
    where = [b"-a", b"127.0.0.1:9"] if command == "send" else [b"127.0.0.1", b"22"]
    if option == "HOST":
        where = [bad, b"22"]
    elif option == "-a":
        where = ([] if command == "send" else where) + [b"-a", bad]
    else:
        where += [option.encode(), bad]
    argv = [CLIENT.encode(), command.encode(), *where, b"-k", str(key_file).encode()]
    result = subprocess.run(
        argv, env=client_env(conf_dir), capture_output=True, timeout=20, check=False
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.decode().endswith(
        f"\nError: Invalid value for {name}: it is not valid UTF-8\n"
    )
    assert b"Traceback" not in result.stderr
    assert not (conf_dir / "counter").exists()


def test_help_and_version(conf_dir: Path) -> None:
    for args in (["--help"], ["-h"], ["send", "--help"], ["gen", "-h"], ["reseed", "--help"]):
        result = run_client(*args, conf_dir=conf_dir)
        assert result.returncode == 0, (args, result.stderr)
        assert result.stdout.startswith("Usage: ruroco-client") and result.stderr == ""
    assert "-d, --send-delay-ms U64" in run_client("send", "-h", conf_dir=conf_dir).stdout
    for flag in ("-V", "--version"):
        result = run_client(flag, conf_dir=conf_dir)
        assert result.returncode == 0
        assert (
            result.stdout == f"ruroco-client {ruroco.__version__} (ruroco 0.14 wire protocol 1)\n"
        )
    result = run_client(conf_dir=conf_dir)  # no command: the help, as a usage error
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("Usage: ruroco-client [OPTIONS] COMMAND [ARGS]...")
    assert not (conf_dir / "counter").exists()


def test_help_command_prints_the_help_and_exits_0(conf_dir: Path) -> None:
    """``help`` and ``help COMMAND``, clap's auto subcommand in the original (exit 0 there)."""
    for args, same_as in ((["help"], ["--help"]), (["help", "send"], ["send", "--help"])):
        result = run_client(*args, conf_dir=conf_dir)
        assert result.returncode == 0, (args, result.stderr)
        assert result.stdout == run_client(*same_as, conf_dir=conf_dir).stdout
        assert result.stderr == ""
    for args in (["help", "nope"], ["help", "send", "x"], ["help", "-h"]):
        result = run_client(*args, conf_dir=conf_dir)
        assert result.returncode == 2, args  # as in the original
        assert result.stdout == "" and "Usage:" in result.stderr
    assert not (conf_dir / "counter").exists()


def test_update_and_wizard_are_not_carried_over(conf_dir: Path) -> None:
    for args in (["update"], ["update", "--version", "v0.14.2", "-b", "/tmp"], ["wizard"]):
        result = run_client(*args, conf_dir=conf_dir)
        assert result.returncode == 2, args
        assert result.stdout == ""
        assert len(result.stderr.strip().splitlines()) == 1
        assert "Ansible collection" in result.stderr


def test_a_key_from_a_slow_source_does_not_hold_the_lock(
    conf_dir: Path, key_file: Path, tmp_path: Path, receiver_v4: Receiver
) -> None:
    """``-k <(gpg -d …)`` waits at a passphrase prompt: other knocks go on meanwhile."""
    fifo = tmp_path / "key.fifo"
    os.mkfifo(fifo)
    slow = subprocess.Popen(
        [CLIENT, "send", "-a", receiver_v4.address, "-k", str(fifo), "-c", "slow"],
        env=client_env(conf_dir),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(0.5)  # it waits for the key now
        assert slow.poll() is None
        fast = run_client("send", "-a", receiver_v4.address, "-k", str(key_file), conf_dir=conf_dir)
        assert fast.returncode == 0, fast.stderr
        assert receiver_v4.receive_data().cmd_hash == command_hash("default")
        with open(fifo, "w") as fh:
            fh.write(FIXTURE_KEY)
        assert slow.wait(20) == 0, slow.stderr.read() if slow.stderr else ""
        assert receiver_v4.receive_data().cmd_hash == command_hash("slow")
    finally:
        slow.kill()
        slow.wait()
        if slow.stderr:
            slow.stderr.close()


def test_cli_fails_fast_while_another_process_holds_the_lock(
    conf_dir: Path, key_file: Path
) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\n"
            "from ruroco.client.sender import client_lock\n"
            f"lock = client_lock({str(conf_dir)!r}).acquire()\n"
            "print('locked', flush=True)\n"
            "time.sleep(30)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        for args in (["send", "-a", "127.0.0.1:9", "-k", str(key_file)], ["gen"], ["reseed"]):
            start = time.monotonic()
            result = run_client(*args, conf_dir=conf_dir)
            assert time.monotonic() - start < 15  # did not wait for the 30 s holder
            assert result.returncode == 1, args
            assert result.stderr.startswith(
                f'Error: Client already running (lock at "{conf_dir / "client.lock"}")'
            )
            assert result.stdout == ""
        assert not (conf_dir / "counter").exists()
    finally:
        holder.kill()
        holder.wait(timeout=10)
