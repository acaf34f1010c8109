"""``ClapCommand``: a click command whose arguments first pass ``ruroco.clapargs`` (the
original's clap rules: ``-c=PATH`` means ``PATH``, an option given twice is a usage error).

The command class of ``ruroco-server`` and ``ruroco-commander``; click parses the result as
before.
"""

from __future__ import annotations

import click

from ruroco.clapargs import Repeated, clap_args, repeated_message


class ClapCommand(click.Command):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        options: dict[str, tuple[object, bool]] = {}
        eager: list[str] = []
        for param in self.get_params(ctx):
            if not isinstance(param, click.Option):
                continue
            names = [*param.opts, *param.secondary_opts]
            if param.is_eager:  # --help, --version: acted on where they stand
                eager += names
            elif not (param.multiple or param.count):  # such options may repeat
                options.update((name, (param, not param.is_flag)) for name in names)
        try:
            args = clap_args(args, options, tuple(eager))
        except Repeated as exc:
            if not ctx.resilient_parsing:
                key = exc.key
                hint = key.get_error_hint(ctx) if isinstance(key, click.Option) else str(key)
                raise click.UsageError(repeated_message(hint), ctx) from None
        return super().parse_args(ctx, args)
