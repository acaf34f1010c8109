"""``ruroco.clapargs``, the one pass that makes all three command lines read options as clap:
``-x=VALUE`` is ``VALUE``, an option given twice is refused, everything else is untouched."""

from __future__ import annotations

import contextlib

import click
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from ruroco.clapargs import Repeated, clap_args
from ruroco.clapcommand import ClapCommand

CONFIG, CHECK, COMMANDS = object(), object(), object()
OPTIONS = {
    "-c": (CONFIG, True),
    "--config": (CONFIG, True),
    "--check": (CHECK, False),
    "-e": (CHECK, False),
    "--commands": (COMMANDS, True),
}
EAGER = ("-h", "--help", "-V", "--version")

_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=10)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-c=x"], ["-c", "x"]),
        (["-c="], ["-c", ""]),
        (["-c==x"], ["-c", "=x"]),
        (["-ec=x", "--commands", "-c=y"], ["-ec", "x", "--commands", "-c=y"]),  # a value
        (["-cx=y", "--commands=a=b"], ["-cx=y", "--commands=a=b"]),
        (["-e=1"], ["-e=1"]),  # a flag: left for the parser to refuse
        (["--", "-c=x", "-c=y"], ["--", "-c=x", "-c=y"]),
        (["-c=x", "--nope", "-c=y"], ["-c", "x", "--nope", "-c=y"]),  # ends at the unknown
        (["-c=x", "-h", "-c=y"], ["-c", "x", "-h", "-c=y"]),  # ends at the help
        (["--check", "--help", "--check"], ["--check", "--help", "--check"]),
    ],
)
def test_examples(args: list[str], expected: list[str]) -> None:
    assert clap_args(args, OPTIONS, EAGER) == expected


@pytest.mark.parametrize(
    ("args", "key"),
    [
        (["-c", "a", "--config=b"], CONFIG),
        (["-ec", "a", "-c=b"], CONFIG),
        (["--check", "-e"], CHECK),  # two names of one option
        (["-ee"], CHECK),
        (["x", "--commands", "a", "y", "--commands", "b"], COMMANDS),
    ],
)
def test_an_option_given_twice(args: list[str], key: object) -> None:
    with pytest.raises(Repeated) as info:
        clap_args(args, OPTIONS, EAGER)
    assert info.value.key is key


_tokens = st.one_of(
    st.sampled_from([*OPTIONS, *EAGER, "--", "-", "-ec", "-ce", "-x", "--nope", "-c-e"]),
    _text.filter(lambda t: "=" not in t),
)


@settings(max_examples=500)
@given(st.lists(_tokens, max_size=10))
def test_without_a_short_equals_value_nothing_changes(args: list[str]) -> None:
    """Every other command line reaches the parser as it was (or is refused as a repeat)."""
    with contextlib.suppress(Repeated):
        assert clap_args(args, OPTIONS, EAGER) == args


@click.command(cls=ClapCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-c", "--config", default="default")
@click.option("--check", is_flag=True)
@click.version_option("1", "-V", "--version")
def toy(config: str, check: bool) -> None:
    click.echo(repr((config, check)))


@settings(max_examples=200)
@given(_text, st.data())
def test_click_command_reads_every_syntax_of_a_value_as_clap(
    value: str, data: st.DataObject
) -> None:
    forms = [["-c", value], [f"-c={value}"], ["--config", value], [f"--config={value}"]]
    if value and not value.startswith("="):
        forms.append([f"-c{value}"])
    args = data.draw(st.sampled_from(forms))
    result = CliRunner().invoke(toy, ["--check", *args])
    assert (result.exit_code, result.output) == (0, f"{(value, True)!r}\n")


@pytest.mark.parametrize(
    "args", [["-c", "a", "-c", "b"], ["-c=a", "--config", "a"], ["--check", "--check"]]
)
def test_click_command_refuses_an_option_given_twice(args: list[str]) -> None:
    result = CliRunner().invoke(toy, args)
    assert result.exit_code == 2
    assert "cannot be used multiple times." in result.output


def test_click_command_help_and_version_as_before() -> None:
    assert CliRunner().invoke(toy, ["--help", "-c", "a", "-c", "b"]).exit_code == 0
    assert CliRunner().invoke(toy, ["-V", "-V"]).output.endswith("version 1\n")
