"""``ruroco-client`` entry point: a fast path for ``send``, click for everything else.

Exit codes: 0 ok, 1 runtime error (``Error: ...`` on stderr), 2 usage error. Nothing here
imports click unless the command line needs it (see ``ruroco.client.options``).
"""

from __future__ import annotations

import sys

from ruroco.client.options import parse_send_argv


def report(exc: BaseException) -> int:
    """Print a runtime error the way every ruroco CLI does and return exit code 1."""
    from ruroco.errors import format_error

    try:
        sys.stdout.flush()
        print(format_error(exc), file=sys.stderr)
    except (OSError, ValueError):
        pass
    return 1


def run_send(values: dict[str, object]) -> int:
    """Run ``send`` with parsed option values; the lock is held for the whole send."""
    from ruroco.client.sender import SendRequest, send
    from ruroco.errors import RurocoError

    try:
        send(SendRequest(**values))  # type: ignore[arg-type]
    except (RurocoError, OSError) as exc:
        return report(exc)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        values = parse_send_argv(args)
        if values is not None:
            return run_send(values)
        from ruroco.client.clickcli import cli

        try:
            cli.main(args=args, prog_name="ruroco-client")
        except SystemExit as exc:
            code = exc.code
            return code if isinstance(code, int) else (0 if code is None else 1)
        return 0
    except KeyboardInterrupt:
        return 130
