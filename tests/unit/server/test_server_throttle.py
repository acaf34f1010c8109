from ruroco.server.throttle import ErrorThrottle, suppressed_suffix


def collecting(interval=5.0):
    lines = []
    return ErrorThrottle(interval, emit=lines.append, debug=False), lines


def test_first_error_is_logged_immediately():
    throttle, lines = collecting()
    assert throttle.report(lambda: "boom", now=100.0)
    assert lines == ["boom"]
    assert throttle.suppressed == 0


def test_errors_within_the_interval_are_counted_and_reported_later():
    throttle, lines = collecting()
    throttle.report(lambda: "first", now=100.0)
    for t in (100.1, 101.0, 104.9):
        assert not throttle.report(lambda: "hidden", now=t)
    assert throttle.suppressed == 3
    assert throttle.report(lambda: "later", now=105.0)
    assert lines == ["first", "later (3 more suppressed in the last 5s)"]
    assert throttle.suppressed == 0


def test_two_within_interval_then_reset():
    throttle, lines = collecting()
    throttle.report(lambda: "a", now=0.0)
    throttle.report(lambda: "b", now=1.0)
    throttle.report(lambda: "c", now=2.0)
    assert throttle.suppressed == 2
    throttle.report(lambda: "d", now=10.0)
    assert throttle.suppressed == 0
    assert lines[-1] == "d (2 more suppressed in the last 5s)"


def test_message_is_not_built_when_suppressed():
    throttle, _ = collecting()
    throttle.report(lambda: "x", now=0.0)
    calls = []

    def render():
        calls.append(1)
        return "never"

    throttle.report(render, now=1.0)
    assert calls == []


def test_suffix_text():
    assert suppressed_suffix(0) == ""
    assert suppressed_suffix(7) == " (7 more suppressed in the last 5s)"
