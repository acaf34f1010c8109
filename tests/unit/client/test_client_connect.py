"""``ruroco-client connect``: its command line, the family plan, and real runs on loopback.

The runs use the installed ``ruroco-client`` against a UDP ``Receiver`` standing in for the
server (it decrypts every knock) and real TCP services on 127.0.0.1/::1 with no guard; the
guarded path (real server, commander and nftables) is tests/e2e/test_e2e_connect.py.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from client_helpers import CLIENT, FIXTURE_KEY, Receiver, client_env, read_counter_file
from hypothesis import given, settings
from hypothesis import strategies as st

import ruroco
from ruroco.client.address import AddressError, Destination
from ruroco.client.connect import DEFAULT_KNOCK_PORT, plan_routes, target_address
from ruroco.client.options import (
    COMMANDS,
    CONNECT_OPTIONS,
    MAX_SECONDS,
    CliExit,
    Opt,
    parse,
    parse_port,
    parse_seconds,
)
from ruroco.ipaddr import MAPPED_PREFIX, parse_ip
from ruroco.protocol import command_hash

CONNECT_HELP = """\
Usage: ruroco-client connect [OPTIONS] HOST PORT

  Knock, then relay stdin/stdout to HOST PORT (ssh ProxyCommand). Knocks over
  the address family it connects with (both if HOST has both), waits until
  PORT accepts a TCP connection, knocking again every --interval seconds, and
  relays until either side closes.

Options:
  -a, --address TEXT   The ruroco server: "host", "host:port", "ip", "ip:port"
                       or "[ipv6]:port" (default: HOST, port 80)
  --knock-port PORT    The ruroco server's UDP port on HOST, without -a (works
                       for IPv6 HOSTs, which ssh's %h gives without brackets)
                       [default: 80]
  -k, --key-file TEXT  File holding the key  [required]
  -c, --command TEXT   Name of the command to run  [default: default]
  -e, --permissive     Do not pin the source IP (strict off)
  -i, --ip TEXT        Source IP the server must see (a single IP literal)
  -4, --ipv4           Knock and connect over IPv4 only
  -6, --ipv6           Knock and connect over IPv6 only
  --timeout SECONDS    Give up (exit 1) if PORT has not accepted a connection
                       by then  [default: 30]
  --interval SECONDS   Knock again, with a fresh counter, after this long
                       without a connection  [default: 2]
  --fdpass             Hand the connected socket to ssh over stdout and exit
                       (ProxyUseFdpass yes)
  --protocol [0|1]     Wire format: 1 (94 bytes, AES-256-GCM-SIV) or 0 for
                       servers of the released ruroco 0.14.2 (93 bytes,
                       AES-256-GCM; our server takes it with accept_protocol_0
                       = true)  [default: 1]
  -v, --verbose        Log knocks and the connection to stderr
  -h, --help           Show this message and exit.
"""

DEFAULTS: dict[str, object] = {
    "address": None,
    "knock_port": None,
    "key_file": None,
    "command": "default",
    "permissive": False,
    "ip": None,
    "ipv4": False,
    "ipv6": False,
    "timeout": 30.0,
    "interval": 2.0,
    "fdpass": False,
    "protocol": 1,
    "verbose": False,
}


@pytest.fixture(autouse=True)
def _columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")


def outcome(argv: list[str]) -> CliExit:
    with pytest.raises(CliExit) as info:
        parse(argv)
    return info.value


# -- command line ------------------------------------------------------------------------------


def test_connect_help_documents_every_option_and_both_arguments() -> None:
    result = outcome(["connect", "--help"])
    assert (result.code, result.out, result.err) == (0, CONNECT_HELP, "")
    assert "connect  Knock, then relay stdin/stdout" in outcome(["--help"]).out


def test_connect_defaults_and_arguments_anywhere() -> None:
    expected = {**DEFAULTS, "key_file": "k", "host": "h.example", "port": 22}
    for argv in (
        ["connect", "h.example", "22", "-k", "k"],
        ["connect", "-k", "k", "h.example", "22"],
        ["connect", "h.example", "-kk", "22"],
        ["connect", "-k", "k", "--", "h.example", "22"],
    ):
        assert parse(argv) == ("connect", expected), argv
    everything = ["-a", "gw:8080", "-c", "open_ssh", "-e", "-i", "fd00::9", "-46"]
    everything += ["--timeout=0.5", "--interval", "+1.25", "--fdpass", "-v"]
    _, values = parse(["connect", "fd00::1", "2222", "-k", "k", *everything])
    assert values == {
        **DEFAULTS,
        "address": "gw:8080",
        "key_file": "k",
        "command": "open_ssh",
        "permissive": True,
        "ip": "fd00::9",
        "ipv4": True,
        "ipv6": True,
        "timeout": 0.5,
        "interval": 1.25,
        "fdpass": True,
        "verbose": True,
        "host": "fd00::1",
        "port": 2222,
    }


def _usage_error(message: str) -> str:
    return (
        "Usage: ruroco-client connect [OPTIONS] HOST PORT\n"
        "Try 'ruroco-client connect --help' for help.\n\n"
        f"Error: {message}\n"
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-k", "k"], "Missing argument 'HOST'."),
        (["h", "-k", "k"], "Missing argument 'PORT'."),
        (["h", "22"], "Missing option '-k' / '--key-file'."),
        (["h", "0", "-k", "k"], "Invalid value for 'PORT': '0' is not a port (1-65535)"),
        (["h", "65536", "-k", "k"], "Invalid value for 'PORT': '65536' is not a port (1-65535)"),
        (["h", "ssh", "-k", "k"], "Invalid value for 'PORT': 'ssh' is not a port (1-65535)"),
        (["h", "22", "x", "-k", "k"], "Got unexpected extra argument (x)"),
        (["h", "22", "-k", "k", "--timeout", "0"],
         "Invalid value for '--timeout': '0' is not a number of seconds above 0 and at most"
         " 86400"),
        (["h", "22", "-k", "k", "--interval", "1e3"],
         "Invalid value for '--interval': '1e3' is not a number of seconds above 0 and at"
         " most 86400"),
        (["h", "22", "-k", "k", "--interval", "0.999"],
         "Invalid value for '--interval': '0.999' is less than 1 second; knocking more often only"
         " meets the server's per-source rate limit"),
        (["h", "22", "-k", "k", "--timeout"], "Option '--timeout' requires an argument."),
        (["h", "22", "-k", "k", "--fdpass=1"], "Option '--fdpass' does not take a value."),
        (["h", "22", "-k", "k", "-d", "5"], "No such option '-d'."),
        (["h", "22", "-k", "k", "--knock-port", "0"],
         "Invalid value for '--knock-port': '0' is not a port (1-65535)"),
        (["h", "22", "-k", "k", "--knock-port", "http"],
         "Invalid value for '--knock-port': 'http' is not a port (1-65535)"),
        (["h", "22", "-k", "k", "--knock-port", "34020", "-a", "gw"],
         "'--knock-port' is the port on HOST: with '-a' / '--address' give the port there"),
    ],
)  # fmt: skip
def test_connect_usage_errors(argv: list[str], message: str) -> None:
    result = outcome(["connect", *argv])
    assert (result.code, result.out, result.err) == (2, "", _usage_error(message))


_seconds_text = st.one_of(
    st.from_regex(r"\A\+?[0-9]{0,7}(\.[0-9]{0,4})?\Z"),
    st.text(max_size=10),
    st.sampled_from(["inf", "nan", "1e3", "-1", "0", "0.0", ".", "+", "86400", "86400.0001"]),
)


@given(_seconds_text)
def test_seconds_are_plain_decimals_above_zero_and_at_most_a_day(text: str) -> None:
    digits = text.removeprefix("+")
    whole, _, frac = digits.partition(".")
    plain = (
        digits.count(".") <= 1
        and (whole + frac) != ""
        and all(c in "0123456789" for c in whole + frac)
    )
    value = float(digits if digits != "." else "x") if plain else None
    expected = value if value is not None and 0 < value <= MAX_SECONDS else None
    assert parse_seconds(text) == expected


@given(st.one_of(st.integers(-5, 70000).map(str), st.text(max_size=6)))
def test_port_is_1_to_65535_in_ascii_digits(text: str) -> None:
    ok = text != "" and all(c in "0123456789" for c in text) and 0 < int(text) <= 65535
    assert parse_port(text) == (int(text) if ok else None)


_value = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=10)


@st.composite
def _connect_line(draw: st.DrawFn) -> tuple[list[str], dict[str, object]]:
    """A valid ``connect`` line: options in random syntax and order, HOST and PORT anywhere
    between them (HOST never looks like an option)."""
    chosen = draw(st.lists(st.sampled_from(CONNECT_OPTIONS), unique=True))
    if any(o.dest == "address" for o in chosen):  # --knock-port is for HOST, not with -a
        chosen = [o for o in chosen if o.dest != "knock_port"]
    expected = dict(DEFAULTS)
    items: list[tuple[Opt, str | None]] = []
    required = [o for o in CONNECT_OPTIONS if o.required and o not in chosen]  # each once
    for opt in draw(st.permutations([*chosen, *required])):
        if opt.kind == "flag":
            items.append((opt, None))
            expected[opt.dest] = True
        elif opt.kind == "protocol":
            items.append((opt, draw(st.sampled_from(["0", "1"]))))
            expected[opt.dest] = int(items[-1][1] or "")
        elif opt.kind == "port":
            number = draw(st.integers(1, 65535))
            items.append((opt, str(number)))
            expected[opt.dest] = number
        elif opt.kind in ("seconds", "interval"):
            least = 1000 if opt.kind == "interval" else 1  # in ms: MIN_INTERVAL, or above 0
            number = draw(st.integers(least, 86_400_000)) / 1000
            items.append((opt, draw(st.sampled_from([repr(number), f"+{number}"]))))
            expected[opt.dest] = number
        else:
            items.append((opt, draw(_value)))
            expected[opt.dest] = items[-1][1]
    tokens: list[list[str]] = []
    for opt, value in items:
        names = [n for n in (opt.short, opt.long) if n]
        name = draw(st.sampled_from(names))
        if value is None:
            tokens.append([name])
        elif draw(st.booleans()):
            tokens.append([f"{name}={value}"])  # -k=VALUE too, as the original's clap
        else:
            tokens.append([name, value])
    host = draw(st.from_regex(r"\A[a-z0-9][a-z0-9.:-]{0,20}\Z"))
    port = draw(st.integers(1, 65535))
    at = sorted(draw(st.lists(st.integers(0, len(tokens)), min_size=2, max_size=2)))
    argv = ["connect"]
    for i, token in enumerate([*tokens, []]):
        argv += [host] if i == at[0] else []
        argv += [str(port)] if i == at[1] else []
        argv += token
    expected |= {"host": host, "port": port}
    return argv, expected


@settings(max_examples=300)
@given(_connect_line())
def test_any_valid_connect_line_parses_to_its_values(
    line: tuple[list[str], dict[str, object]],
) -> None:
    argv, expected = line
    assert parse(argv) == ("connect", expected)


# -- which family to knock over ------------------------------------------------------------------


def _dest(text: str, port: int = 22) -> Destination:
    ip = parse_ip(text)
    return Destination(ip, port, v4=ip[:12] == MAPPED_PREFIX)


_v4 = st.integers(1, 250).map(lambda n: _dest(f"192.0.2.{n}"))
_v6 = st.integers(1, 250).map(lambda n: _dest(f"2001:db8::{n:x}"))
_dests = st.lists(st.one_of(_v4, _v6), max_size=5)


@settings(max_examples=300)
@given(_dests, st.one_of(st.none(), _dests), st.booleans(), st.booleans())
def test_every_knock_goes_over_the_family_it_then_connects_with(
    targets: list[Destination], servers: list[Destination] | None, ipv4: bool, ipv6: bool
) -> None:
    wanted = [t for t in targets if not ((ipv4 and not ipv6 and not t.is_ipv4) or
                                         (ipv6 and not ipv4 and t.is_ipv4))]  # fmt: skip
    firsts = [t for i, t in enumerate(wanted) if all(u.is_ipv4 != t.is_ipv4 for u in wanted[:i])]
    knockable = [
        t for t in firsts if servers is None or any(s.is_ipv4 == t.is_ipv4 for s in servers)
    ]
    if not knockable:
        with pytest.raises(AddressError):
            plan_routes("h", targets, servers, ipv4, ipv6)
        return
    routes, skipped = plan_routes("h", targets, servers, ipv4, ipv6)
    assert [r.target for r in routes] == knockable  # resolver order, first of each family
    assert skipped == ["IPv4" if t.is_ipv4 else "IPv6" for t in firsts if t not in knockable]
    for route in routes:
        assert route.knock.is_ipv4 == route.target.is_ipv4
        if servers is None:  # the default server is HOST itself: the very address connected to
            assert (route.knock.ip, route.knock.port) == (route.target.ip, DEFAULT_KNOCK_PORT)
        else:
            assert route.knock == next(s for s in servers if s.is_ipv4 == route.target.is_ipv4)


def test_a_claimed_source_picks_its_family_and_knocks_once() -> None:
    both = [_dest("2001:db8::1"), _dest("192.0.2.1")]
    routes, _ = plan_routes("h", both, [_dest("192.0.2.9", 80)], claim=parse_ip("2001:db8::7"))
    assert [(r.knock.text, r.target.text) for r in routes] == [
        ("192.0.2.9:80", "[2001:db8::1]:22")  # the claim decides the grant, not the knock
    ]
    with pytest.raises(AddressError, match=r"h has no IPv4 address .* 192\.0\.2\.7 \(--ip\)"):
        plan_routes("h", both[:1], None, claim=parse_ip("192.0.2.7"))


def test_the_mismatch_is_named() -> None:
    with pytest.raises(AddressError) as info:
        plan_routes("h", [_dest("2001:db8::1")], [_dest("192.0.2.9", 80)])
    assert str(info.value).startswith(
        "Cannot knock over the address family h is reached by: h has IPv6 addresses only"
    )


@pytest.mark.parametrize(
    ("host", "address"),
    [("h.example", "h.example"), ("fd00::1", "[fd00::1]"), ("[fd00::1]", "[fd00::1]"),
     ("10.0.0.1", "10.0.0.1")],
)  # fmt: skip
def test_target_address_brackets_bare_ipv6(host: str, address: str) -> None:
    assert target_address(host) == address


@pytest.mark.parametrize("host", ["", "[]", "a b", "a/b", "[[::1]]", "h\n"])
def test_target_address_refuses_what_is_no_host(host: str) -> None:
    with pytest.raises(AddressError, match="Invalid host"):
        target_address(host)


# -- real runs on loopback ---------------------------------------------------------------------


class Service:
    """A TCP service on loopback in a thread: ``echo`` or ``banner`` (send, then close)."""

    def __init__(self, host: str = "127.0.0.1", mode: str = "echo") -> None:
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.mode = mode
        self.accepted = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            if self.mode == "banner":
                conn.sendall(b"SSH-2.0-banner\r\n")
                return
            while data := conn.recv(65536):
                conn.sendall(data)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def echo() -> Iterator[Service]:
    s = Service()
    yield s
    s.close()


def _closed_port() -> int:
    """A loopback port nothing listens on (connects to it are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def connect_args(rx: Receiver, key_file: Path, host: str, port: int, *extra: str) -> list[str]:
    return [CLIENT, "connect", host, str(port), "-k", str(key_file), "-a", rx.address, *extra]


def _received(rx: Receiver, wait: float = 0.5) -> list[tuple[int, int, bytes]]:
    """Every knock that reached ``rx``: (counter, command hash, destination IP)."""
    out = []
    while True:
        try:
            data = rx.receive_data(wait)
        except TimeoutError:
            return out
        out.append((data.counter, data.cmd_hash, data.dst_ip))


def test_relays_bytes_both_ways_after_one_knock(
    conf_dir: Path, key_file: Path, receiver_v4: Receiver, echo: Service
) -> None:
    payload = os.urandom(4 << 20)
    argv = connect_args(receiver_v4, key_file, "127.0.0.1", echo.port, "-c", "open_ssh", "-v")
    done = subprocess.run(
        argv, input=payload, capture_output=True, env=client_env(conf_dir), timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == payload  # the echo, and nothing else on stdout
    (counter, cmd, dst), *more = _received(receiver_v4)
    assert not more
    assert (cmd, dst) == (command_hash("open_ssh"), parse_ip("127.0.0.1"))
    assert counter == read_counter_file(conf_dir)
    log = done.stderr.decode()
    assert "knocking and connecting over IPv4" in log
    assert f"with counter {counter} " in log
    assert f"Connected to 127.0.0.1:{echo.port} over IPv4" in log


def test_the_peer_closing_ends_the_relay_while_stdin_stays_open(
    conf_dir: Path, key_file: Path, receiver_v4: Receiver
) -> None:
    banner = Service(mode="banner")
    try:
        proc = subprocess.Popen(
            connect_args(receiver_v4, key_file, "127.0.0.1", banner.port),
            stdin=subprocess.PIPE,  # never closed by us until the end
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=client_env(conf_dir),
        )
        assert proc.stdout is not None and proc.stderr is not None and proc.stdin is not None
        out = proc.stdout.read()  # EOF once connect has exited, with our stdin still open
        assert proc.wait(10) == 0
        assert out == b"SSH-2.0-banner\r\n"
        assert proc.stderr.read() == b""  # quiet without -v
        proc.stdin.close()
    finally:
        banner.close()


def test_a_port_that_never_opens_exits_1_with_one_line(
    conf_dir: Path, key_file: Path, receiver_v4: Receiver
) -> None:
    port = _closed_port()
    argv = connect_args(receiver_v4, key_file, "127.0.0.1", port, "--timeout", "2.2")
    t0 = time.monotonic()
    done = subprocess.run(
        [*argv, "--interval", "1"],
        capture_output=True,
        text=True,
        env=client_env(conf_dir),
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    elapsed = time.monotonic() - t0
    assert done.returncode == 1
    assert done.stdout == ""
    knocks = _received(receiver_v4)
    assert len(knocks) == 3  # at 0, 1 and 2 s
    assert done.stderr == (
        f"Error: No TCP connection to 127.0.0.1:{port} after 3 knocks over IPv4 in 2.2s"
        " (--timeout 2.2, --interval 1; last try: connection refused)\n"
    )
    assert elapsed < 2.2 + 2.0  # the wait itself plus a generous start-up
    counters = [c for c, _, _ in knocks]
    assert counters == sorted(set(counters))  # fresh counter for every knock


def test_the_lock_is_free_while_connect_waits(
    conf_dir: Path, key_file: Path, receiver_v4: Receiver
) -> None:
    waiting = subprocess.Popen(
        connect_args(receiver_v4, key_file, "127.0.0.1", _closed_port(), "--timeout", "3"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=client_env(conf_dir),
    )
    try:
        time.sleep(0.8)  # well into its wait
        assert waiting.poll() is None
        sent = subprocess.run(
            [CLIENT, "send", "-a", receiver_v4.address, "-k", str(key_file)],
            capture_output=True,
            text=True,
            env=client_env(conf_dir),
            timeout=20,
        )
        assert sent.returncode == 0, sent.stderr  # no "Client already running"
    finally:
        assert waiting.wait(20) == 1
    counters = [c for c, _, _ in _received(receiver_v4)]
    assert len(counters) == len(set(counters)) >= 3


def test_20_parallel_connects_get_20_distinct_counters(
    conf_dir: Path, key_file: Path, receiver_v4: Receiver, echo: Service
) -> None:
    procs = [
        subprocess.Popen(
            connect_args(receiver_v4, key_file, "127.0.0.1", echo.port, "--interval", "30"),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=client_env(conf_dir),
        )
        for _ in range(20)
    ]
    results = [p.communicate(f"hello {i}\n".encode(), timeout=60) for i, p in enumerate(procs)]
    for i, (p, (out, err)) in enumerate(zip(procs, results, strict=True)):
        assert (p.returncode, out, err) == (0, f"hello {i}\n".encode(), b"")
    counters = [c for c, _, _ in _received(receiver_v4)]
    assert len(counters) == len(set(counters)) == 20
    assert max(counters) == read_counter_file(conf_dir)


def test_ipv6_target_knocks_over_ipv6(
    conf_dir: Path, key_file: Path, receiver_v6: Receiver
) -> None:
    echo6 = Service("::1")
    try:
        argv = connect_args(receiver_v6, key_file, "::1", echo6.port, "-v")
        done = subprocess.run(
            argv, input=b"six", capture_output=True, env=client_env(conf_dir), timeout=30
        )
        assert (done.returncode, done.stdout) == (0, b"six"), done.stderr
        ((_, _, dst),) = _received(receiver_v6)
        assert dst == parse_ip("::1")
        assert f"Connected to [::1]:{echo6.port} over IPv6" in done.stderr.decode()
    finally:
        echo6.close()


@pytest.mark.parametrize("host", ["::1", "127.0.0.1"])
def test_knock_port_knocks_host_at_that_port_also_for_a_bare_ipv6_host(
    conf_dir: Path, key_file: Path, host: str
) -> None:
    """ssh's ``%h`` is a bare IPv6 literal: ``-a %h:PORT`` cannot name its port, this can."""
    rx, service = Receiver(host), Service(host)
    try:
        argv = [CLIENT, "connect", host, str(service.port), "-k", str(key_file)]
        argv += ["--knock-port", rx.address.rsplit(":", 1)[1], "-v"]
        done = subprocess.run(
            argv, input=b"hi", capture_output=True, env=client_env(conf_dir), timeout=30
        )
        assert (done.returncode, done.stdout) == (0, b"hi"), done.stderr
        ((_, _, dst),) = _received(rx)
        assert dst == parse_ip(host)
    finally:
        service.close()
        rx.close()


def test_no_knock_over_another_family_than_the_connection(
    conf_dir: Path, key_file: Path, receiver_v4: Receiver
) -> None:
    done = subprocess.run(
        connect_args(receiver_v4, key_file, "::1", 22),
        capture_output=True,
        text=True,
        env=client_env(conf_dir),
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 1
    assert done.stderr.startswith(
        "Error: Cannot knock over the address family ::1 is reached by: ::1 has IPv6"
    )
    assert done.stderr.count("\n") == 1
    assert receiver_v4.nothing_pending()


def test_fdpass_hands_the_connected_socket_over_like_ssh_receives_it(
    conf_dir: Path, key_file: Path, receiver_v4: Receiver, echo: Service
) -> None:
    ours, theirs = socket.socketpair()
    with ours:
        done = subprocess.run(
            connect_args(receiver_v4, key_file, "127.0.0.1", echo.port, "--fdpass"),
            stdin=subprocess.DEVNULL,
            stdout=theirs.fileno(),
            stderr=subprocess.PIPE,
            env=client_env(conf_dir),
            timeout=30,
        )
        theirs.close()
        assert done.returncode == 0, done.stderr
        data, fds, _flags, _addr = socket.recv_fds(ours, 1, 1)
        assert (data, len(fds)) == (b"\0", 1)  # what ssh's mm_receive_fd expects
    with socket.socket(fileno=fds[0]) as conn:  # the client has exited: the socket is ours
        assert conn.getpeername()[1] == echo.port
        conn.sendall(b"direct")
        assert conn.recv(16) == b"direct"
    assert len(_received(receiver_v4)) == 1


def test_fdpass_without_a_unix_socket_says_so(
    conf_dir: Path, key_file: Path, receiver_v4: Receiver, echo: Service
) -> None:
    done = subprocess.run(
        connect_args(receiver_v4, key_file, "127.0.0.1", echo.port, "--fdpass"),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=client_env(conf_dir),
        timeout=30,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == (
        "Error: --fdpass needs a Unix socket as standard output, which ssh gives with"
        " ProxyUseFdpass yes\n"
    )
    # Said before anything is sent: no command ran on the server for a connection never used.
    assert receiver_v4.nothing_pending()
    assert not (conf_dir / "counter").exists()


HEAVY = ("click", "dataclasses", "typing", "ipaddress", "pathlib", "socket", "re", "contextlib")


def test_connect_imports_nothing_heavy(
    conf_dir: Path, key_file: Path, receiver_v4: Receiver
) -> None:
    """Start-up stays ``send``'s: the whole connect path loads no heavy stdlib module."""
    banner = Service(mode="banner")
    argv = ["connect", "127.0.0.1", str(banner.port), "-k", str(key_file)]
    argv += ["-a", receiver_v4.address]
    code = (
        "import sys, os\n"
        "from ruroco.client.cli import main\n"
        f"rc = main({argv!r})\n"
        f"loaded = sorted(m for m in {HEAVY!r} if m in sys.modules)\n"
        "import json\n"
        "os.write(2, json.dumps([rc, loaded]).encode())\n"
    )
    repo = str(Path(ruroco.__file__).resolve().parent.parent)
    env = client_env(conf_dir)
    env["PYTHONPATH"] = os.pathsep.join([repo, sysconfig.get_paths()["purelib"]])
    try:
        done = subprocess.run(
            [sys.executable, "-S", "-c", code],
            env=env,
            capture_output=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )
    finally:
        banner.close()
    assert done.stdout == b"SSH-2.0-banner\r\n"
    assert json.loads(done.stderr) == [0, []]
    assert FIXTURE_KEY.encode() not in done.stderr + done.stdout
    assert COMMANDS["connect"].args == ("HOST", "PORT")
