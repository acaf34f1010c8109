"""``ruroco-server`` command line: a thin click layer over ``serve`` and ``check``.

The console script's first import: SIGHUP is claimed here, before the slower imports, so a
``systemctl reload`` during start is kept for later instead of killing the process
(``ruroco.hangup``).
"""

from __future__ import annotations

from ruroco import hangup

hangup.defer()

import sys  # noqa: E402 (after SIGHUP is claimed)

import click  # noqa: E402

from ruroco import __version__  # noqa: E402
from ruroco.clapcommand import ClapCommand  # noqa: E402
from ruroco.errors import RurocoError, format_error_line  # noqa: E402
from ruroco.server.config import DEFAULT_CONFIG_PATH  # noqa: E402


@click.command(cls=ClapCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(),
    default=str(DEFAULT_CONFIG_PATH),
    show_default=True,
    help="Path to config.toml.",
)
@click.option(
    "--check",
    is_flag=True,
    help="Validate the config, key files and blocklist, then exit (writes and binds nothing).",
)
@click.version_option(__version__, "-V", "--version", prog_name="ruroco-server")
def main(config_path: str, check: bool) -> None:
    """Receive knock packets and forward authorized commands to ruroco-commander."""
    if check:
        from ruroco.server.check import check as run_check

        result = run_check(config_path)
        for warning in result.warnings:
            click.echo(f"Warning: {warning}", err=True)
        for problem in result.problems:
            click.echo(f"Error: {problem}", err=True)
        if not result.ok:
            sys.exit(1)
        click.echo(result.summary)
        return
    from ruroco.server.server import serve

    try:
        serve(config_path)
    except RurocoError as exc:
        click.echo(format_error_line(exc), err=True)
        sys.exit(1)
