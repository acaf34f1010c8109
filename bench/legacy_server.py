"""``ruroco-server`` with the original's rate-limit ordering, for the flood comparison.

Same CLI subset the bench needs (``-c CONFIG``; the address comes from
``RUROCO_LISTEN_ADDRESS`` as usual). ``bench.legacy`` counts every correctly sized datagram
against the per-IP and global caps before the key lookup, as ruroco 0.14 does.
"""

from __future__ import annotations

import sys

import click

from bench.legacy import serve_legacy
from ruroco.errors import RurocoError, format_error


@click.command()
@click.option("-c", "--config", "config_path", required=True, type=click.Path(dir_okay=False))
def main(config_path: str) -> None:
    try:
        serve_legacy(config_path)
    except RurocoError as exc:
        click.echo(format_error(exc), err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
