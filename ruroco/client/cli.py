"""``ruroco-client`` entry point: parse with ``ruroco.client.options``, then run the command.

Exit codes: 0 ok, 1 runtime error (``Error: ...`` on stderr), 2 usage error. The parser is
the only one; each command loads the modules it needs only once it runs.
"""

from __future__ import annotations

import sys

from ruroco.client.options import CliExit, parse

TYPE_CHECKING = False  # typing itself would cost the cold start ~10 ms
if TYPE_CHECKING:
    from typing import TextIO


def report(exc: BaseException) -> int:
    """Print a runtime error the way every ruroco CLI does and return exit code 1."""
    from ruroco.errors import format_error

    try:
        sys.stdout.flush()
        print(format_error(exc), file=sys.stderr)
    except (OSError, ValueError):
        pass
    return 1


def run(command: str, values: dict[str, object]) -> int:
    """Run ``connect``, ``send``, ``gen`` or ``reseed``; the client lock is held while it
    runs, except by ``connect``, which takes it only to advance the counter."""
    from ruroco.client import sender
    from ruroco.errors import RurocoError

    try:
        if command == "connect":
            from ruroco.client import connect

            connect.connect(connect.ConnectRequest(**values))  # type: ignore[arg-type]
        elif command == "send":
            request = sender.SendRequest(**values)  # type: ignore[arg-type]
            sender.send(request, reserve_ahead=False)  # takes from an open range, opens none
        elif command == "gen":
            sender.gen()
        else:
            sender.reseed()
    except (RurocoError, OSError) as exc:
        return report(exc)
    return 0


def _write(stream: TextIO, text: str) -> None:
    if text:
        try:
            stream.write(text)
            stream.flush()
        except (OSError, ValueError):
            pass


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        try:
            command, values = parse(args)
        except CliExit as done:
            _write(sys.stdout, done.out)
            _write(sys.stderr, done.err)
            return done.code
        return run(command, values)
    except KeyboardInterrupt:
        return 130
