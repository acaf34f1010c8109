from ruroco.server.throttle import ErrorThrottle, suppressed_suffix


def test_first_error_may_be_logged_immediately():
    throttle = ErrorThrottle(5.0)
    assert throttle.gate(100.0) == 0
    assert throttle.suppressed == 0


def test_errors_within_the_interval_are_counted_and_reported_later():
    throttle = ErrorThrottle(5.0)
    assert throttle.gate(100.0) == 0
    for t in (100.1, 101.0, 104.9):
        assert throttle.gate(t) is None
    assert throttle.suppressed == 3
    assert throttle.gate(105.0) == 3
    assert throttle.suppressed == 0


def test_two_within_interval_then_reset():
    throttle = ErrorThrottle(5.0)
    throttle.gate(0.0)
    throttle.gate(1.0)
    throttle.gate(2.0)
    assert throttle.suppressed == 2
    count = throttle.gate(10.0)
    assert throttle.suppressed == 0
    assert "d" + suppressed_suffix(count or 0) == "d (2 more suppressed in the last 5s)"


def test_a_suppressed_call_does_not_move_the_window():
    throttle = ErrorThrottle(5.0)
    throttle.gate(0.0)
    assert throttle.gate(4.9) is None
    assert throttle.gate(5.0) == 1  # measured from the last line written, not the last call


def test_zero_interval_lets_every_line_through():
    throttle = ErrorThrottle(0.0)
    assert [throttle.gate(t) for t in (0.0, 0.0, 1.0)] == [0, 0, 0]


def test_suffix_text():
    assert suppressed_suffix(0) == ""
    assert suppressed_suffix(7) == " (7 more suppressed in the last 5s)"
