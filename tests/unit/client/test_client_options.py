"""The one ``ruroco-client`` command-line parser: values, help text and usage errors.

The expected texts are what the click command this parser replaced printed (click 8.5.1,
80 columns), plus the ``connect`` command added since (its own tests:
test_client_connect.py); the property tests pin the syntax for every option and any token soup.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ruroco import __version__
from ruroco.client.options import (
    COMMANDS,
    SEND_OPTIONS,
    U64_MAX,
    CliExit,
    Opt,
    help_text,
    parse,
    parse_u64,
)

DEFAULTS = {
    "address": None,
    "key_file": None,
    "command": "default",
    "permissive": False,
    "ip": None,
    "ipv4": False,
    "ipv6": False,
    "send_delay_ms": 50,
    "protocol": 1,
}

PROGRAM_HELP = """\
Usage: ruroco-client [OPTIONS] COMMAND [ARGS]...

  Trigger a server-defined command with one encrypted UDP packet.

Options:
  -V, --version  Show the version and exit.
  -h, --help     Show this message and exit.

Commands:
  connect  Knock, then relay stdin/stdout to HOST PORT (ssh ProxyCommand).
  gen      Print a new key (56 characters, no newline).
  help     Show the help of the program, or of COMMAND, and exit.
  reseed   Reset the counter to the current time in nanoseconds.
  send     Send one packet per destination (first IPv4, then first IPv6).
  update   Not available: upgrade the Python package with pip, or deploy...
  wizard   Not available: set up a server with the ruroco Ansible...
"""

SEND_HELP = """\
Usage: ruroco-client send [OPTIONS]

  Send one packet per destination (first IPv4, then first IPv6).

Options:
  -a, --address TEXT       Destination: "host", "host:port", "ip", "ip:port"
                           or "[ipv6]:port" (default port 80)  [required]
  -k, --key-file TEXT      File holding the key  [required]
  -c, --command TEXT       Name of the command to run  [default: default]
  -e, --permissive         Do not pin the source IP (strict off)
  -i, --ip TEXT            Source IP the server must see (a single IP literal)
  -4, --ipv4               Send over IPv4 only
  -6, --ipv6               Send over IPv6 only
  -d, --send-delay-ms U64  Pause between destinations (ms)  [default: 50]
  --protocol [0|1]         Wire format: 1 (94 bytes, AES-256-GCM-SIV) or 0 for
                           servers of the released ruroco 0.14.2 (93 bytes,
                           AES-256-GCM; our server takes it with
                           accept_protocol_0 = true)  [default: 1]
  -h, --help               Show this message and exit.
"""


def outcome(argv: list[str]) -> CliExit:
    with pytest.raises(CliExit) as info:
        parse(argv)
    return info.value


def usage_error(command: str, message: str) -> str:
    usage = f"ruroco-client {command} [OPTIONS]" if command else "ruroco-client [OPTIONS] COMMAND"
    usage += "" if command else " [ARGS]..."
    path = f"ruroco-client {command}" if command else "ruroco-client"
    return f"Usage: {usage}\nTry '{path} --help' for help.\n\nError: {message}\n"


@pytest.fixture(autouse=True)
def _columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")  # help wraps to the terminal, like click's


def test_send_defaults_and_every_syntax() -> None:
    assert parse(["send", "-a", "h", "-k", "k"]) == (
        "send",
        {**DEFAULTS, "address": "h", "key_file": "k"},
    )
    expected = {
        "address": "h",
        "key_file": "k",
        "command": "a=b",
        "permissive": True,
        "ip": "::1",
        "ipv4": True,
        "ipv6": True,
        "send_delay_ms": 7,
        "protocol": 1,
    }
    for argv in (
        ["-a", "h", "-k", "k", "-c", "a=b", "-e", "-4", "-6", "-i", "::1", "-d", "+7"],
        ["--address", "h", "--key-file=k", "--command=a=b", "--permissive", "--ipv4", "--ipv6",
         "--ip", "::1", "--send-delay-ms=007"],
        ["-ah", "-kk", "-ca=b", "-e46i::1", "-d7"],
        ["-46ea", "h", "-k", "k", "-c", "a=b", "-i::1", "-d", "7"],
    ):  # fmt: skip
        assert parse(["send", *argv]) == ("send", expected), argv


def test_protocol_is_0_or_1_and_anything_else_a_usage_error() -> None:
    for argv, protocol in ((["--protocol", "0"], 0), (["--protocol=1"], 1), ([], 1)):
        assert parse(["send", "-a", "h", "-k", "k", *argv])[1]["protocol"] == protocol
    for bad in ("2", "00", "", "+0", "-1", "v0"):
        result = outcome(["send", "-a", "h", "-k", "k", f"--protocol={bad}"])
        assert (result.code, result.out) == (2, "")
        assert result.err == usage_error(
            "send", f"Invalid value for '--protocol': {bad!r} is not 0 or 1"
        )


def test_values_are_the_next_token_even_if_it_looks_like_an_option() -> None:
    _, values = parse(["send", "-a", "-k", "-k", "--", "-c", ""])
    assert (values["address"], values["key_file"], values["command"]) == ("-k", "--", "")


@pytest.mark.parametrize(
    ("argv", "values"),
    [
        (["-a=h", "-k=k"], {"address": "h", "key_file": "k"}),
        (["-a=", "-k=-k"], {"address": "", "key_file": "-k"}),  # -a= is "", -k=-k is "-k"
        (["-a==h", "-k", "k", "-c=a=b"], {"address": "=h", "key_file": "k", "command": "a=b"}),
        (["-e4a=h", "-k=k", "-d=+5"], {"address": "h", "key_file": "k", "permissive": True,
                                       "ipv4": True, "send_delay_ms": 5}),
        (["-a", "-a=h", "-k", "k"], {"address": "-a=h", "key_file": "k"}),  # a value, as before
        (["-ah=", "--key-file==k"], {"address": "h=", "key_file": "=k"}),  # no change there
    ],
)  # fmt: skip
def test_short_option_equals_value_is_the_value_as_in_clap(
    argv: list[str], values: dict[str, object]
) -> None:
    """The original's clap reads ``-a=VALUE`` as ``VALUE``; click read ``=VALUE``."""
    assert parse(["send", *argv]) == ("send", {**DEFAULTS, **values})


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (["-a", "x", "-k", "k", "--address", "y"], "'-a' / '--address'"),
        (["-a", "x", "-k", "k", "-a=x"], "'-a' / '--address'"),
        (["-a", "x", "-k", "k", "-d", "5", "-d", "5"], "'-d' / '--send-delay-ms'"),
        (["-a", "x", "-k", "k", "-e", "-e"], "'-e' / '--permissive'"),
        (["-a", "x", "-k", "k", "-e4e"], "'-e' / '--permissive'"),
        (["-a", "x", "-k", "k", "-4", "--ipv4"], "'-4' / '--ipv4'"),
        (["-a", "x", "-k", "k", "--protocol", "0", "--protocol=0"], "'--protocol'"),
        (["-e", "-e", "--help"], "'-e' / '--permissive'"),  # before the help, as in clap
    ],
)
def test_an_option_given_twice_is_a_usage_error_as_in_clap(argv: list[str], hint: str) -> None:
    """clap: "the argument ... cannot be used multiple times" (exit 2); click took the last."""
    result = outcome(["send", *argv])
    message = f"Option {hint} cannot be used multiple times."
    assert (result.code, result.out, result.err) == (2, "", usage_error("send", message))


def test_a_repeat_after_the_help_is_not_looked_at() -> None:
    assert outcome(["send", "--help", "-e", "-e"]).out == SEND_HELP
    assert outcome(["send", "-h", "-h"]).out == SEND_HELP


def test_gen_and_reseed_take_no_values() -> None:
    assert parse(["gen"]) == ("gen", {})
    assert parse(["reseed", "--"]) == ("reseed", {})
    assert parse(["--", "gen"]) == ("gen", {})


@pytest.mark.parametrize(
    ("argv", "out"),
    [
        (["-h"], PROGRAM_HELP),
        (["--help", "nope"], PROGRAM_HELP),
        (["send", "-h"], SEND_HELP),
        (["send", "-a", "h", "--help", "-d", "x"], SEND_HELP),  # eager: before value checks
        (["-V"], f"ruroco-client {__version__} (ruroco 0.14 wire protocol 1)\n"),
        (["-Vh"], f"ruroco-client {__version__} (ruroco 0.14 wire protocol 1)\n"),
    ],
)
def test_help_and_version_exit_0_on_stdout(argv: list[str], out: str) -> None:
    result = outcome(argv)
    assert (result.code, result.out, result.err) == (0, out, "")


@pytest.mark.parametrize(
    ("argv", "out"),
    [
        (["help"], PROGRAM_HELP),
        (["help", "send"], SEND_HELP),
        (["--", "help", "send"], SEND_HELP),
        (["help", "update"], help_text(COMMANDS["update"], 78)),
        (["help", "help"], "Usage: ruroco-client help [COMMAND]\n\n"
         "  Show the help of the program, or of COMMAND, and exit.\n"),
    ],
)  # fmt: skip
def test_the_help_command_prints_a_help_and_exits_0(argv: list[str], out: str) -> None:
    """clap's automatic ``help [COMMAND]`` of the original: exit 0, the help on stdout."""
    result = outcome(argv)
    assert (result.code, result.out, result.err) == (0, out, "")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["help", "nope"], "No such command 'nope'."),
        (["help", "hepl"], "No such command 'hepl'. Did you mean 'help'?"),
        (["help", "-h"], "No such command '-h'."),
        (["help", "send", "x"], "Got unexpected extra argument (x)"),
        (["help", "gen", "send"], "Got unexpected extra argument (send)"),
    ],
)
def test_the_help_command_takes_one_known_name(argv: list[str], message: str) -> None:
    """As in clap: no options, at most one name, and a known one (exit 2 otherwise)."""
    result = outcome(argv)
    assert (result.code, result.out, result.err) == (2, "", usage_error("", message))


def test_no_arguments_print_the_help_to_stderr_and_exit_2() -> None:
    result = outcome([])
    assert (result.code, result.out, result.err) == (2, "", PROGRAM_HELP)


def test_command_help_texts() -> None:
    for name in ("gen", "reseed"):
        assert outcome([name, "--help"]).out == (
            f"Usage: ruroco-client {name} [OPTIONS]\n\n  {COMMANDS[name].help}\n\n"
            "Options:\n  -h, --help  Show this message and exit.\n"
        )


@given(st.integers(min_value=20, max_value=300))
def test_help_fits_the_terminal(columns: int) -> None:
    width = max(min(columns, 80) - 2, 50)
    for command in (None, *COMMANDS.values()):
        text = help_text(command, width)
        assert all(len(line) <= width for line in text.splitlines()), (width, text)
        for opt in command.options if command else ():
            assert opt.long in text and opt.short in text


@pytest.mark.parametrize(
    ("argv", "command", "message"),
    [
        (["send"], "send", "Missing option '-a' / '--address'."),
        (["send", "-a", "h"], "send", "Missing option '-k' / '--key-file'."),
        (["send", "extra"], "send", "Missing option '-a' / '--address'."),
        (["send", "-a", "h", "-k", "k", "--bogus"], "send", "No such option '--bogus'."),
        (["send", "--key", "k"], "send", "No such option '--key'. Did you mean '--key-file'?"),
        (["send", "--ipv"], "send",
         "No such option '--ipv'. (Did you mean one of: '--ip', '--ipv4', '--ipv6'?)"),
        (["send", "-4x"], "send", "No such option '-x'."),
        (["send", "-e=1"], "send", "No such option '-='."),
        (["send", "-V"], "send", "No such option '-V'."),
        (["send", "-a"], "send", "Option '-a' requires an argument."),
        (["send", "-a", "h", "--key-file"], "send", "Option '--key-file' requires an argument."),
        (["send", "--permissive=1"], "send", "Option '--permissive' does not take a value."),
        (["send", "--help=1"], "send", "Option '--help' does not take a value."),
        (["send", "-a", "h", "-k", "k", "x", "y"], "send", "Got unexpected extra arguments (x y)"),
        (["send", "-a", "h", "-k", "k", "--", "-d"], "send", "Got unexpected extra argument (-d)"),
        (["send", "-k", "k", "-d", "abc"], "send",
         "Invalid value for '-d' / '--send-delay-ms': 'abc' is not an unsigned 64-bit integer"),
        (["send", "-d", "-1", "-a", "h", "-k", "k"], "send",
         "Invalid value for '-d' / '--send-delay-ms': '-1' is not an unsigned 64-bit integer"),
        (["gen", "-V"], "gen", "No such option '-V'."),
        (["gen", "--he"], "gen", "No such option '--he'. Did you mean '--help'?"),
        (["reseed", "x"], "reseed", "Got unexpected extra argument (x)"),
        (["nope"], "", "No such command 'nope'."),
        (["GEN"], "", "No such command 'GEN'."),
        (["sned"], "", "No such command 'sned'. (Did you mean one of: 'reseed', 'send'?)"),
        (["-x", "send"], "", "No such option '-x'."),
        (["--vers"], "", "No such option '--vers'. Did you mean '--version'?"),
        (["--version=1"], "", "Option '--version' does not take a value."),
        (["--"], "", "Missing command."),
        (["--", "-x"], "", "No such option '-x'."),
        (["--", "-"], "", "No such command '-'."),
    ],
)  # fmt: skip
def test_usage_errors_exit_2_with_click_s_messages(
    argv: list[str], command: str, message: str
) -> None:
    result = outcome(argv)
    assert (result.code, result.out, result.err) == (2, "", usage_error(command, message))


@pytest.mark.parametrize(
    "argv", [["update"], ["update", "--version", "v0.14.2", "-b", "/tmp"], ["wizard", "-h"]]
)
def test_commands_not_carried_over_accept_anything_and_exit_2(argv: list[str]) -> None:
    result = outcome(argv)
    assert result.code == 2 and result.out == ""
    assert result.err == f"Error: {COMMANDS[argv[0]].unavailable}\n"
    assert "Ansible collection" in result.err


@pytest.mark.parametrize(
    ("text", "value"),
    [("0", 0), ("50", 50), ("+7", 7), ("007", 7), (str(U64_MAX), U64_MAX)],
)
def test_parse_u64_accepts(text: str, value: int) -> None:
    assert parse_u64(text) == value


@pytest.mark.parametrize("text", ["", "+", "-1", "5_0", " 5", "5 ", "1e3", "٣", str(U64_MAX + 1)])
def test_parse_u64_rejects(text: str) -> None:
    assert parse_u64(text) is None


@given(st.one_of(st.text(max_size=25), st.integers(-5, U64_MAX + 5).map(str)))
def test_parse_u64_is_rust_s_u64_from_str(text: str) -> None:
    digits = text.removeprefix("+")
    ok = digits != "" and all("0" <= c <= "9" for c in digits) and int(digits) <= U64_MAX
    assert parse_u64(text) == (int(digits) if ok else None)


# Values that are not an option's text; any text works with the separate forms.
_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)


def _spelled(draw: st.DrawFn, opt: Opt, value: str | None) -> list[str]:
    """``opt`` with ``value`` in one of the syntaxes both parsers read the same way."""
    name = draw(st.sampled_from([f for f in (opt.short, opt.long) if f]))
    if value is None:
        return [name]
    if name == opt.long and draw(st.booleans()):
        return [f"{name}={value}"]
    if name == opt.short and draw(st.booleans()):
        return [f"{name}={value}"]  # clap's form; "-a=" is the empty value
    if name == opt.short and value and not value.startswith("=") and draw(st.booleans()):
        return [name + value]
    return [name, value]


@st.composite
def _send_items(draw: st.DrawFn) -> tuple[list[list[str]], dict[str, object]]:
    """The options of a valid ``send`` command line in random syntax and order, each as its
    tokens, and the expected values."""
    chosen = draw(st.lists(st.sampled_from(SEND_OPTIONS), unique=True))
    required = [opt for opt in SEND_OPTIONS if opt.required and opt not in chosen]
    expected = dict(DEFAULTS)
    items: list[tuple[Opt, str | None]] = []
    for opt in draw(st.permutations([*chosen, *required])):
        if opt.kind == "flag":
            items.append((opt, None))
            expected[opt.dest] = True
        elif opt.kind == "u64":
            number = draw(st.integers(0, U64_MAX))
            items.append((opt, draw(st.sampled_from([str(number), f"+{number}", f"0{number}"]))))
            expected[opt.dest] = number
        elif opt.kind == "protocol":
            items.append((opt, draw(st.sampled_from(["0", "1"]))))
            expected[opt.dest] = int(items[-1][1] or "")
        else:
            items.append((opt, draw(_text)))
            expected[opt.dest] = items[-1][1]
    return [_spelled(draw, opt, value) for opt, value in items], expected


@settings(max_examples=300)
@given(_send_items())
def test_any_valid_send_line_parses_to_its_values(
    line: tuple[list[list[str]], dict[str, object]],
) -> None:
    items, expected = line
    assert parse(["send", *(token for item in items for token in item)]) == ("send", expected)


@settings(max_examples=300)
@given(_send_items(), st.data())
def test_any_option_given_again_is_refused(
    line: tuple[list[list[str]], dict[str, object]], data: st.DataObject
) -> None:
    """Whichever option, names, syntax and place: a second one is a usage error (clap)."""
    items, _expected = line
    opt = data.draw(st.sampled_from(SEND_OPTIONS))
    value = None if opt.kind == "flag" else data.draw(st.sampled_from(["0", "1"]))
    items.insert(data.draw(st.integers(0, len(items))), _spelled(data.draw, opt, value))
    items.insert(data.draw(st.integers(0, len(items))), _spelled(data.draw, opt, value))
    result = outcome(["send", *(token for item in items for token in item)])
    assert result.code == 2 and result.out == ""
    assert result.err.endswith(f"Error: Option {opt.hint} cannot be used multiple times.\n")


_tokens = st.one_of(
    st.sampled_from(
        [f for opt in SEND_OPTIONS for f in (opt.short, opt.long)]
        + ["-h", "--help", "-V", "--version", "--", "-", "-e4", "-4d", "--key", "send", "gen"]
    ),
    _text,
    st.builds(lambda a, b: f"{a}={b}", st.sampled_from(["--address", "--ipv4", "-a"]), _text),
)


@settings(max_examples=500)
@given(st.lists(_tokens, max_size=8), st.sampled_from(["send", "gen", "reseed", "update", ""]))
def test_any_command_line_parses_or_exits_cleanly(tokens: list[str], command: str) -> None:
    argv = [command, *tokens] if command else tokens
    try:
        name, values = parse(argv)
    except CliExit as done:
        assert done.code in (0, 2)
        text = done.out if done.code == 0 else done.err
        assert text.endswith("\n") and (done.code == 0 or "Error: " in text or "Usage:" in text)
        assert not (done.out and done.err)
        return
    assert name in ("send", "gen", "reseed")
    if name == "send":
        assert set(values) == set(DEFAULTS)
        assert all(isinstance(values[o.dest], str) for o in SEND_OPTIONS if o.required)
        assert isinstance(values["send_delay_ms"], int)
    else:
        assert values == {}
