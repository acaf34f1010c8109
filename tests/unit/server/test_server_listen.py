import os
import socket
import subprocess
import sys
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from server_helpers import write_setup

from ruroco.server.listen import ListenError, _split, bind_udp, check_address, select_socket


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_explicit_address_binds_and_wins():
    port = free_port()
    env = {"RUROCO_LISTEN_ADDRESS": "127.0.0.1:1", "LISTEN_PID": "1", "LISTEN_FDS": "1"}
    with select_socket("127.0.0.1:2", explicit=f"127.0.0.1:{port}", env=env) as sock:
        assert sock.getsockname() == ("127.0.0.1", port)
        assert sock.type == socket.SOCK_DGRAM


def test_env_address_outranks_socket_activation_and_config():
    port = free_port()
    env = {"RUROCO_LISTEN_ADDRESS": f"127.0.0.1:{port}", "LISTEN_PID": "1", "LISTEN_FDS": "2"}
    with select_socket("127.0.0.1:2", env=env) as sock:
        assert sock.getsockname() == ("127.0.0.1", port)


def test_config_address_binds_ipv6_literal():
    with select_socket("[::1]:0", env={}) as sock:
        assert sock.family == socket.AF_INET6
        assert sock.getsockname()[0] == "::1"


def test_hostname_is_resolved():
    with select_socket("localhost:0", env={}) as sock:
        assert sock.getsockname()[0] in ("127.0.0.1", "::1")


def test_fallback_is_dual_stack_34020():
    try:
        sock = select_socket(None, env={})
    except ListenError as exc:  # only if something else on this machine holds the port
        assert str(exc).startswith('Could not UdpSocket bind "[::]:34020"')
        return
    with sock:
        assert sock.family == socket.AF_INET6
        assert sock.getsockname()[:2] == ("::", 34020)
        assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 0


def test_listen_fds_two():
    with pytest.raises(ListenError) as info:
        select_socket(None, env={"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "2"})
    assert str(info.value) == "LISTEN_FDS was set to 2, expected 1"


def test_listen_fds_checked_before_pid():
    with pytest.raises(ListenError, match=r"^LISTEN_FDS was set to 0, expected 1$"):
        select_socket(None, env={"LISTEN_PID": "12345", "LISTEN_FDS": "0"})


def test_listen_pid_mismatch_exact():
    with pytest.raises(ListenError) as info:
        select_socket(None, env={"LISTEN_PID": "12345", "LISTEN_FDS": "1"}, pid=999)
    assert str(info.value) == "LISTEN_PID (12345) does not match current PID"


def test_only_one_activation_variable_is_ignored():
    port = free_port()
    with select_socket(f"127.0.0.1:{port}", env={"LISTEN_FDS": "1"}) as sock:
        assert sock.getsockname()[1] == port


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("not-a-valid-host:99999", "invalid port value"),
        ("invalid-address-xyz", "invalid socket address"),
        ("[::1]", "invalid port value"),  # as Rust: "1]" is the text after the last colon
        ("[::1]:+80", "invalid socket address"),  # no "+" inside the literal form
        ("[::1]:99999", "invalid port value"),
        ("[::1%lo]:80", "invalid socket address"),  # a scope in brackets is a number
        ("127.0.0.1:asd", "invalid port value"),
        ("127.0.0.1:-80", "invalid port value"),
        ("[not-v6]:80", "invalid socket address"),
        (":80", "invalid socket address"),
        ("*:80", '"*" is not an address (every address: "[::]:80")'),
        ("*:+80", '"*" is not an address (every address: "[::]:80")'),
    ],
)
def test_invalid_addresses(address, reason):
    with pytest.raises(ListenError) as info:
        bind_udp(address)
    assert str(info.value) == f'Could not UdpSocket bind "{address}": {reason}'


@pytest.mark.parametrize(
    ("template", "bound"),
    [
        ("::1:{port}", "::1"),
        ("::ffff:127.0.0.1:{port}", "::ffff:127.0.0.1"),
        ("127.0.0.1:+{port}", "127.0.0.1"),
        ("127.0.0.1:0{port}", "127.0.0.1"),
        ("::1:+{port}", "::1"),
        (":::{port}", "::"),
        ("[::1%{lo}]:{port}", "::1"),
    ],
)
def test_address_forms_the_original_binds(template, bound):
    """Rust's ``ToSocketAddrs for &str``: a ``[v6]:port`` literal, else the last colon splits
    off a u16 port (``+`` allowed) and the rest is resolved, unbracketed IPv6 included."""
    port = free_port()
    address = template.format(port=port, lo=socket.if_nametoindex("lo"))
    with bind_udp(address) as sock:
        assert sock.getsockname()[:2] == (bound, port)


def test_star_is_not_an_address_anywhere():
    """glibc reads the host ``*`` with a service as no host (loopback); the original resolves
    the host alone, where ``*`` is no name, and exits 1."""
    with pytest.raises(ListenError, match=r'^Could not UdpSocket bind "\*:34111": "\*" is not'):
        select_socket("*:34111", env={})
    with pytest.raises(ListenError, match=r'"\*" is not an address'):
        select_socket(None, env={"RUROCO_LISTEN_ADDRESS": "*:34111"})
    with pytest.raises(ListenError, match=r'"\*" is not an address'):
        check_address("*:34111")


def test_invalid_env_address_fails():
    with pytest.raises(ListenError, match=r'^Could not UdpSocket bind "nope"'):
        select_socket(None, env={"RUROCO_LISTEN_ADDRESS": "nope"})


def test_address_in_use():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as held:
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        with pytest.raises(ListenError, match=r"Address already in use \(os error 98\)"):
            bind_udp(f"127.0.0.1:{port}")


LAUNCHER = """
import os, sys
os.dup2(int(sys.argv[1]), 3)
os.environ["LISTEN_PID"] = str(os.getpid())
os.environ["LISTEN_FDS"] = "1"
os.execv(sys.argv[2], sys.argv[2:])
"""


def server_bin() -> str:
    return os.path.join(os.path.dirname(sys.executable), "ruroco-server")


def test_socket_activation_fd3_handover(tmp_path):
    config = write_setup(tmp_path, extra='address = "127.0.0.1:1"\n')  # must not be used
    udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    udp.bind(("::1", 0))
    port = udp.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "RUROCO_LISTEN_ADDRESS"}
    proc = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, str(udp.fileno()), server_bin(), "-c", str(config)],
        pass_fds=(udp.fileno(),),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    udp.close()  # the server now owns the only copy
    try:
        deadline = time.monotonic() + 10
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as client:
            # send until the server has certainly started; all are rejected as too short
            while time.monotonic() < deadline and proc.poll() is None:
                client.sendto(b"hello", ("::1", port))
                time.sleep(0.2)
                if (tmp_path / "state" / "blocklist.msgpck").exists():
                    client.sendto(b"hello", ("::1", port))
                    time.sleep(0.3)
                    break
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=5)
    assert proc.returncode == 0, err
    assert "UdpSocket from_raw_fd 3 (systemd socket activation)" in out
    assert "bind to" not in out
    assert f"Running server on [::1]:{port}" in out
    assert "Rejected datagram from ::1 port " in err
    assert "received=" in out and "rejected_size=" in out


def test_socket_activation_pid_mismatch_exits_1(tmp_path):
    config = write_setup(tmp_path)
    env = dict(os.environ, LISTEN_PID="12345", LISTEN_FDS="1")
    env.pop("RUROCO_LISTEN_ADDRESS", None)
    proc = subprocess.run(
        [server_bin(), "-c", str(config)], env=env, capture_output=True, text=True, timeout=20
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == "Error: LISTEN_PID (12345) does not match current PID"


_REASONS = ("invalid socket address", "invalid port value")


@given(st.one_of(st.text(max_size=40), st.text(":[]*+%0123456789abcdef.", max_size=30)))
def test_address_parser_never_raises_anything_unexpected(text):
    try:
        host, port = _split(text)
    except ValueError as exc:
        assert str(exc) in _REASONS or str(exc).startswith('"*" is not an address'), exc
        return
    assert 0 <= port <= 65535
    port_text = text.rpartition(":")[2]
    assert port_text.removeprefix("+") == f"{port:0{len(port_text.removeprefix('+'))}d}"
    if text.startswith("["):  # the literal form: the brackets go, the rest is the host
        assert text == f"[{host}]:{port_text}" and not port_text.startswith("+")
    else:
        assert text == f"{host}:{port_text}" and host not in ("", "*")
    assert "[" not in host and "]" not in host


@given(st.ip_addresses(), st.integers(0, 65535), st.sampled_from(["", "+", "0"]))
def test_address_parser_accepts_every_ip_literal(ip, port, prefix):
    """Bracketed and unbracketed IPv6, as the original; ``+`` or zeros before the port."""
    assert _split(f"{ip}:{prefix}{port}") == (str(ip), port)
    if ip.version == 6:
        bracketed = f"[{ip}]:{prefix}{port}"
        if prefix == "+":
            with pytest.raises(ValueError, match="invalid socket address"):
                _split(bracketed)
        else:
            assert _split(bracketed) == (str(ip), port)
