"""``ruroco-ui`` entry point: options, the conf dir, then the Textual app (docs/ui.md).

Textual comes with the ``ui`` extra only, so the daemons never pull in a UI framework;
without it this prints one line saying how to install it (exit 1), never a traceback.
"""

from __future__ import annotations

import argparse
import sys

from ruroco.client.request import DEFAULT_PROTOCOL

PROG = "ruroco-ui"
MISSING_EXTRA = (
    f"Error: {PROG} needs the terminal UI framework Textual: install the ui extra,"
    " e.g. pip install 'ruroco-VERSION-py3-none-any.whl[ui]' (the wheel of make dist)"
)


def parser() -> argparse.ArgumentParser:
    from ruroco import __version__

    p = argparse.ArgumentParser(
        prog=PROG,
        description="Knock from a terminal: run, create and edit saved ruroco commands.",
    )
    p.add_argument(
        "--conf-dir",
        metavar="DIR",
        help="where the counter, client.lock and commands_list.toml live"
        " (default: $RUROCO_CONF_DIR, else ~/.config/ruroco)",
    )
    p.add_argument(
        "--protocol",
        type=int,
        choices=(0, 1),
        default=DEFAULT_PROTOCOL,
        help="wire format: 1, or 0 for servers of the released ruroco 0.14.2"
        f" (default: {DEFAULT_PROTOCOL})",
    )
    p.add_argument("-V", "--version", action="version", version=f"{PROG} {__version__}")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        import textual  # noqa: F401 - only to tell a missing extra from other errors
    except ImportError:
        print(MISSING_EXTRA, file=sys.stderr)
        return 1
    from ruroco.client.confdir import ensure_conf_dir, resolve_conf_dir
    from ruroco.errors import RurocoError, format_error_line

    try:
        conf_dir = resolve_conf_dir() if args.conf_dir is None else ensure_conf_dir(args.conf_dir)
    except RurocoError as exc:
        print(format_error_line(exc), file=sys.stderr)
        return 1
    from ruroco.ui.app import RurocoUI

    try:
        RurocoUI(conf_dir, args.protocol).run()
    except KeyboardInterrupt:
        return 130
    return 0
