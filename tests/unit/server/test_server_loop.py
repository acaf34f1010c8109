import io
import os
import shutil
import signal
import socket
import threading
import time

import pytest
from server_helpers import CommanderStandIn, hung_commander, packet, write_setup

from ruroco.errors import RurocoError
from ruroco.ipaddr import parse_ip
from ruroco.protocol import command_hash, encode_commander_data
from ruroco.server.server import Server, create_server


class Running:
    """A real server on a loopback port, run in a thread, stopped with ``request_stop``."""

    def __init__(self, tmp_path, extra="", commander=True, **kwargs):
        self.config_path = write_setup(tmp_path, extra=extra)
        time.sleep(0.002)  # packets made after this are above the startup floor
        self.server = create_server(self.config_path, address="127.0.0.1:0", **kwargs)
        time.sleep(0.002)
        self.address = self.server.sock.getsockname()
        self.commander = (
            CommanderStandIn(self.server.socket_path, accept=commander) if commander else None
        )
        self.result = None
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.client.bind(("127.0.0.1", 0))

    def _run(self):
        try:
            self.result = self.server.run()
        except Exception as exc:  # surfaced by stop()
            self.error = exc

    def send(self, data):
        self.client.sendto(data, self.address)

    def settle(self, received, timeout=5.0):
        deadline = time.monotonic() + timeout
        while self.server.stats.received < received and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.server.stats.received

    def stop(self):
        start = time.monotonic()
        self.server.request_stop()
        self.thread.join(5)
        elapsed = time.monotonic() - start
        self.client.close()
        if self.commander:
            self.commander.close()
        self.server.close()
        return elapsed


def test_valid_packet_is_forwarded_and_replay_is_not(tmp_path):
    run = Running(tmp_path)
    try:
        data = packet()
        run.send(data)
        run.send(data)
        run.send(b"short")
        run.send(data + b"x")
        assert run.settle(4) == 4
        assert run.commander.wait_for(1) == [
            encode_commander_data(command_hash("default"), parse_ip("127.0.0.1"))
        ]
        time.sleep(0.2)
        assert len(run.commander.messages) == 1
    finally:
        assert run.stop() < 1.0
    stats = run.result
    assert stats.received == 4 and stats.forwarded == 1
    assert stats.pipeline["replay"] == 1 and stats.pipeline["size"] == 2
    assert "received=4 accepted=1 forwarded=1" in stats.summary()


def test_never_replies(tmp_path):
    run = Running(tmp_path)
    try:
        run.client.settimeout(0.5)
        for data in (packet(), packet(), bytes(94), b"", b"x" * 500):
            run.send(data)
        run.settle(5)
        with pytest.raises(TimeoutError):
            run.client.recvfrom(2048)
    finally:
        run.stop()


def test_idle_server_stops_within_a_second(tmp_path):
    run = Running(tmp_path)
    time.sleep(0.3)
    assert run.stop() < 1.0
    assert run.error is None and run.result.received == 0


def test_persist_failure_forwards_nothing(tmp_path):
    run = Running(tmp_path)
    try:
        shutil.rmtree(run.server.config.blocklist_path().parent)
        run.send(packet())
        run.settle(1)
        time.sleep(0.2)
        assert run.commander.messages == []
    finally:
        run.stop()
    assert run.result.pipeline["persist"] == 1 and run.result.forwarded == 0


def test_missing_commander_is_logged_and_counted_not_fatal(tmp_path, capfd):
    run = Running(tmp_path, commander=False)
    try:
        run.send(packet())
        run.send(packet())
        run.settle(2)
    finally:
        run.stop()
    assert run.error is None
    assert run.result.forward_failed == 2 and run.result.pipeline["accepted"] == 2
    assert "Could not connect to socket" in capfd.readouterr().err


def test_hung_commander_never_blocks_the_receive_loop(tmp_path):
    """The hand-off waits up to its timeout for the commander, but off the receive loop: the
    datagram after an accepted knock is received long before that timeout runs out."""
    run = Running(tmp_path, commander=False, forward_timeout=3.0)
    try:
        with hung_commander(run.server.socket_path):
            start = time.monotonic()
            run.send(packet())
            run.send(bytes(94))
            assert run.settle(2, timeout=5) == 2
            assert time.monotonic() - start < 2.0, "the receive loop waited for the commander"
    finally:
        run.stop()
    assert run.result.forward_failed == 1


def test_receive_error_is_unrecoverable(tmp_path):
    config_path = write_setup(tmp_path)
    server = create_server(config_path, address="127.0.0.1:0")
    server.sock.close()
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(1)
    broken = Server(server.config, server.pipeline, tcp, server.socket_path)
    try:
        with pytest.raises(RurocoError, match=r"^Could not receive bytes from socket, giving up"):
            broken.run()
    finally:
        broken.close()


def test_signal_handler_sets_the_stop_flag(tmp_path):
    server = create_server(write_setup(tmp_path), address="127.0.0.1:0")
    old_term = signal.getsignal(signal.SIGTERM)
    old_int = signal.getsignal(signal.SIGINT)
    old_fd = signal.set_wakeup_fd(-1)
    try:
        server.install_signal_handlers()
        server.install_signal_handlers()  # installing twice is harmless
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        start = time.monotonic()
        stats = server.run()  # returns at once: the handler set the stop flag
        assert time.monotonic() - start < 0.5 and stats.received == 0
    finally:
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGINT, old_int)
        signal.set_wakeup_fd(old_fd)
        server.close()


def test_loop_rejections_of_size_and_unknown_key_log_as_the_pipeline_renders(tmp_path, capfd):
    """The drain loop decides these two with Decision.screen; lines equal Pipeline.handle's."""
    from ruroco.server.pipeline import Pipeline, render

    run = Running(tmp_path, throttle_interval=0.0)
    try:
        port = run.client.getsockname()[1]
        run.send(b"x" * 95)
        run.settle(1)
        run.send(bytes(94))
        assert run.settle(2) == 2
    finally:
        run.stop()
    assert run.result.pipeline["size"] == 1 and run.result.pipeline["unknown_key"] == 1
    reference = Pipeline(run.server.config, run.server.pipeline.keys, run.server.pipeline.blocklist)
    expected = [
        render(reference.handle(b"x" * 95 + bytes(1), 95, "127.0.0.1", port)),
        render(reference.handle(bytes(94), 94, "127.0.0.1", port)),
    ]
    err = capfd.readouterr().err
    lines = [line.split("] ", 1)[1] for line in err.splitlines() if "Rejected datagram" in line]
    assert lines == expected


class _SendsGarbageOnStart(io.StringIO):
    """The server's output: when the server says it runs, datagrams arrive that its kernel
    filter refuses, before the server writes anything else (loopback delivers in ``sendto``)."""

    def __init__(self, count: int) -> None:
        super().__init__()
        self.count = count
        self.target: tuple[str, int] | None = None

    def write(self, text: str) -> int:
        if "Running server on" in text and self.target is not None:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
                for _ in range(self.count):
                    tx.sendto(os.urandom(94), self.target)
        return super().write(text)


def test_drops_from_the_running_line_on_are_all_reported(tmp_path, monkeypatch):
    """Counting starts before the server says it runs: an operator (or a test, or systemd's
    readiness) that sees the line and then meets a flood sees every dropped datagram in the
    summary lines. The count used to start after the line, and drops in between were lost."""
    out = _SendsGarbageOnStart(25)
    monkeypatch.setattr("sys.stdout", out)
    monkeypatch.setattr("sys.stderr", out)  # where the summary goes: it is an error line
    config_path = write_setup(tmp_path, extra="kernel_filter = true\ndrop_report_seconds = 1\n")
    server = create_server(config_path, address="127.0.0.1:0")
    out.target = server.sock.getsockname()
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while "Kernel dropped" not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        server.request_stop()
        thread.join(5)
        server.close()
    lines = [line for line in out.getvalue().splitlines() if "Kernel dropped" in line]
    assert [line.split("] ", 1)[1] for line in lines] == [
        "Kernel dropped 25 datagrams in the last 1 s (receive queue full or kernel filter)"
    ]
