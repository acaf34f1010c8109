import time

import pytest
from server_helpers import CommanderStandIn, hung_commander

from ruroco.ipaddr import parse_ip
from ruroco.protocol import command_hash, encode_commander_data
from ruroco.server.forward import ForwardError, send_to_commander

MESSAGE = encode_commander_data(command_hash("default"), parse_ip("1.2.3.4"))


def test_message_arrives_exactly(tmp_path):
    listener = CommanderStandIn(tmp_path / "ruroco.socket")
    try:
        send_to_commander(tmp_path / "ruroco.socket", MESSAGE)
        assert listener.wait_for(1) == [MESSAGE]
        assert MESSAGE.hex() == "fe98b07b1ba6b3a200000000000000000000ffff01020304"
    finally:
        listener.close()


def test_missing_socket_fails_at_once(tmp_path):
    start = time.monotonic()
    with pytest.raises(ForwardError) as info:
        send_to_commander(tmp_path / "ruroco.socket", MESSAGE)
    assert time.monotonic() - start < 0.5
    assert str(info.value) == (
        f'Could not connect to socket "{tmp_path}/ruroco.socket": '
        "No such file or directory (os error 2)"
    )


def test_path_that_is_not_a_socket(tmp_path):
    path = tmp_path / "ruroco.socket"
    path.write_text("")
    with pytest.raises(ForwardError, match=r"Could not connect to socket.*Connection refused"):
        send_to_commander(path, MESSAGE)


def test_hung_commander_is_bounded_by_the_timeout(tmp_path):
    path = tmp_path / "ruroco.socket"
    with hung_commander(path):
        start = time.monotonic()
        with pytest.raises(ForwardError, match=r"Could not connect to socket.*timed out"):
            send_to_commander(path, MESSAGE, timeout=0.3)
        elapsed = time.monotonic() - start
        assert 0.25 <= elapsed < 1.0


@pytest.mark.parametrize("timeout", [0.0001, 0.001, 0.011])
def test_a_full_backlog_at_the_deadline_is_a_timeout(tmp_path, timeout):
    """The last connect can meet the full backlog (EAGAIN) after the deadline has passed: that
    delivery timed out, and its log line must say so, not 'Resource temporarily unavailable'
    (seen under load in the hand-off test). Tiny deadlines make the last try end past it."""
    path = tmp_path / "ruroco.socket"
    with hung_commander(path):
        for _ in range(50):
            with pytest.raises(ForwardError) as info:
                send_to_commander(path, MESSAGE, timeout=timeout)
            assert str(info.value) == f'Could not connect to socket "{path}": timed out'
