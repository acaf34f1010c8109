"""``ruroco-commander`` command line: a thin click layer over ``commander.run`` and ``check``.

The console script's first import: SIGHUP is claimed here, before the slower imports, so a
``systemctl reload`` while the commander starts is kept for later (a reload once it serves)
instead of killing it (``ruroco.hangup``, shared by both daemons).
"""

from __future__ import annotations

from ruroco import hangup

hangup.defer()

import sys  # noqa: E402 (after SIGHUP is claimed)
from pathlib import Path  # noqa: E402

import click  # noqa: E402
from click.core import ParameterSource  # noqa: E402

from ruroco import __version__  # noqa: E402
from ruroco.clapcommand import ClapCommand  # noqa: E402
from ruroco.commander.check import check  # noqa: E402
from ruroco.commander.commands import DEFAULT_COMMANDS_PATH, load_command_file  # noqa: E402
from ruroco.commander.config import DEFAULT_CONFIG_PATH, load_config  # noqa: E402
from ruroco.errors import RurocoError, format_error_line  # noqa: E402

_PATH = click.Path(path_type=Path)


@click.command(cls=ClapCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-c",
    "--config",
    "config_path",
    type=_PATH,
    default=DEFAULT_CONFIG_PATH,
    show_default=True,
    help="Path to config.toml (shared with ruroco-server: socket_dir, socket_user, limits).",
)
@click.option(
    "--commands",
    "commands_path",
    type=_PATH,
    default=DEFAULT_COMMANDS_PATH,
    show_default=True,
    help="Path to commands.toml: the commands and grants, root's alone (mode 0600).",
)
@click.option(
    "--check",
    "check_only",
    is_flag=True,
    help="Validate the files given with -c/--commands (both defaults if neither is given), "
    "print a summary and exit; touches no lock or socket.",
)
@click.option(
    "--list-grants",
    "list_grants",
    is_flag=True,
    help="List the live grants (grant, address, time left) from the kernel's nftables state "
    "and exit; reads no file.",
)
@click.version_option(__version__, "-V", "--version", prog_name="ruroco-commander")
@click.pass_context
def main(
    ctx: click.Context, config_path: Path, commands_path: Path, check_only: bool, list_grants: bool
) -> None:
    """Run the commands that ruroco-server forwards over the Unix socket (runs as root)."""
    if list_grants:
        sys.exit(_list_grants())
    if check_only:
        given_config = ctx.get_parameter_source("config_path") != ParameterSource.DEFAULT
        given_commands = ctx.get_parameter_source("commands_path") != ParameterSource.DEFAULT
        both = given_config == given_commands
        problems, summary, warnings = check(
            config_path if both or given_config else None,
            commands_path if both or given_commands else None,
        )
        for warning in warnings:
            click.echo(f"Warning: {warning}", err=True)
        for problem in problems:
            click.echo(f"Error: {problem}", err=True)
        if problems:
            sys.exit(1)
        click.echo(summary)
        return
    from ruroco.commander.commander import run  # keep --check and --help light

    try:
        config = load_config(config_path)  # config errors win over commands errors
        commands = load_command_file(commands_path)
        run(config, commands, config_path, commands_path)
    except RurocoError as exc:
        click.echo(format_error_line(exc), err=True)
        sys.exit(1)


def _list_grants() -> int:
    """One line per live grant, from ``nft -j list table inet ruroco`` (docs/grants.md)."""
    from ruroco.commander import nft

    try:
        current = nft.Nft().table()
    except nft.NftError as exc:
        click.echo(f"Error: {exc}", err=True)
        return 1
    if current is None:
        click.echo(f"No grants: there is no table {nft.FAMILY} {nft.TABLE}")
        return 0
    live = nft.live_grants(current)
    if not live:
        click.echo("No live grants")
        return 0
    rows = [("grant", "address", "left", "timeout")] + [
        (g.grant, g.address, _duration(g.expires_sec), _duration(g.timeout_sec)) for g in live
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def _duration(seconds: int) -> str:
    """``9m59s``; ``never`` for an element without a timeout."""
    if seconds < 0:
        return "never"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    text = "".join(f"{value}{unit}" for value, unit in parts if value)
    return text or "0s"
