"""The click command group of ``ruroco-client`` (help, usage errors, gen, reseed, send).

``send``'s options are generated from ``ruroco.client.options.SEND_OPTIONS``, the same
table the fast path in ``ruroco.client.cli`` parses, so both accept the same command lines.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from ruroco import __version__
from ruroco.client.cli import report, run_send
from ruroco.client.options import SEND_OPTIONS, U64_MAX, parse_u64
from ruroco.errors import RurocoError
from ruroco.protocol import PROTOCOL_VERSION

NOT_CARRIED_OVER = {
    "update": "update is not part of this implementation: upgrade the Python package "
    "with pip, or deploy a pinned version with the ruroco Ansible collection",
    "wizard": "wizard is not part of this implementation: set up a server with the ruroco "
    "Ansible collection's server role",
}


if TYPE_CHECKING:  # generic for type checkers only in newer click
    _U64Base = click.ParamType[int]
else:
    _U64Base = click.ParamType


class U64(_U64Base):
    """Unsigned 64-bit integer as Rust parses it (optional ``+``; no ``-``, spaces or ``_``)."""

    name = "u64"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= U64_MAX:
            return value  # the default
        parsed = parse_u64(str(value))
        if parsed is None:
            self.fail(f"{value!r} is not an unsigned 64-bit integer", param, ctx)
        return parsed


def _send_params() -> list[click.Parameter]:
    params: list[click.Parameter] = []
    for opt in SEND_OPTIONS:
        decls = [opt.dest, opt.short, opt.long]
        if opt.kind == "flag":
            params.append(click.Option(decls, is_flag=True, default=False, help=opt.help))
        else:
            # An explicit default=None counts as "given" in newer click and would defeat
            # required=True, so pass a default only when there is one.
            extra: dict[str, Any] = (
                {} if opt.default is None else {"default": opt.default, "show_default": True}
            )
            params.append(
                click.Option(
                    decls,
                    type=U64() if opt.kind == "u64" else str,
                    required=opt.required,
                    help=opt.help,
                    **extra,
                )
            )
    return params


def _exit_with(code: int) -> None:
    if code:
        click.get_current_context().exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(
    __version__,
    "-V",
    "--version",
    prog_name="ruroco-client",
    message=f"%(prog)s %(version)s (ruroco 0.14 wire protocol {PROTOCOL_VERSION})",
)
def cli() -> None:
    """Trigger a server-defined command with one encrypted UDP packet."""


def _send(**values: Any) -> None:
    _exit_with(run_send(values))


cli.add_command(
    click.Command(
        "send",
        params=_send_params(),
        callback=_send,
        help="Send one packet per destination (first IPv4, then first IPv6).",
        context_settings={"help_option_names": ["-h", "--help"]},
    )
)


@cli.command(context_settings={"help_option_names": ["-h", "--help"]})
def gen() -> None:
    """Print a new key (56 characters, no newline)."""
    from ruroco.client.sender import gen as gen_key

    try:
        gen_key()
    except (RurocoError, OSError) as exc:
        _exit_with(report(exc))


@cli.command(context_settings={"help_option_names": ["-h", "--help"]})
def reseed() -> None:
    """Reset the counter to the current time in nanoseconds."""
    from ruroco.client.sender import reseed as reseed_counter

    try:
        reseed_counter()
    except (RurocoError, OSError) as exc:
        _exit_with(report(exc))


def _not_carried_over(name: str) -> click.Command:
    def callback(**_: Any) -> None:
        click.echo(f"Error: {NOT_CARRIED_OVER[name]}", err=True)
        click.get_current_context().exit(2)

    return click.Command(
        name,
        callback=callback,
        help=f"Not available: {NOT_CARRIED_OVER[name].split(': ', 1)[1]}.",
        hidden=False,
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
        add_help_option=False,
    )


for _name in NOT_CARRIED_OVER:
    cli.add_command(_not_carried_over(_name))
