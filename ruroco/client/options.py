"""The one command-line parser of ``ruroco-client``: a declarative table, parsed and documented.

``COMMANDS`` lists every subcommand with its options; ``parse`` turns an argv into
``(command, values)`` and ``help_text`` renders ``--help`` from the same table, so names,
defaults and help cannot drift apart. The syntax and messages are click's (which this
replaced: its import alone cost the client's start ~30 ms): ``-x VALUE``, ``-xVALUE``,
``--long VALUE``, ``--long=VALUE``, clustered flags (``-e4``), ``--`` ends the options, and a
value is the next token even if it starts with ``-``; where the original's clap differs from
click, ``ruroco.clapargs`` (shared with the daemons) goes first: ``-x=VALUE`` means ``VALUE``
and an option given twice is a usage error.
Usage errors print the usage line, a ``Try '... --help'`` hint and ``Error: ...``, exit 2.

``help [COMMAND]`` (clap's automatic subcommand in the original) prints the help of the
program or of COMMAND and exits 0.

Commands may also take positional arguments (``connect HOST PORT``), named in the usage line
and checked like click's: ``Missing argument 'HOST'.``, ``Got unexpected extra argument``.

Pure: no I/O and no import beyond ``ruroco.client.request`` and ``ruroco.clapargs`` on the
``send`` path (not even
``typing``, ~10 ms of cold start); help, suggestions and the version load theirs when used.
"""

from __future__ import annotations

from ruroco.clapargs import Repeated, clap_args, repeated_message
from ruroco.client.request import DEFAULT_COMMAND, DEFAULT_PROTOCOL, DEFAULT_SEND_DELAY_MS
from ruroco.limits import U64_MAX

PROG = "ruroco-client"
HELP_FLAGS = ("-h", "--help")
VERSION_FLAGS = ("-V", "--version")


# ``--timeout`` and ``--interval`` of ``connect``: seconds as a decimal, above 0, at most a day
# (a longer wait is a mistake, and ``time.sleep``/``poll`` take any value up to it).
MAX_SECONDS = 86_400.0
# The least ``--interval`` (and ``wait_for.interval`` of ``ruroco_send``): knocking more often
# only meets the server's per-source rate limit (2 a second by default), whose refusals are log
# lines that fail2ban counts, so a tight loop could ban the operator (docs/connect.md).
MIN_INTERVAL = 1.0


class Opt:
    """One option: its flags (``short`` may be empty), destination, value kind, default and
    help text."""

    __slots__ = ("default", "dest", "help", "kind", "long", "required", "short")

    def __init__(
        self,
        short: str,
        long: str,
        dest: str,
        kind: str,
        default: object,
        help: str,
        required: bool = False,
    ) -> None:
        self.short = short
        self.long = long
        self.dest = dest
        # "str", "flag", "u64", "seconds", "interval" (seconds, at least MIN_INTERVAL),
        # "port" (1-65535) or "protocol" (0 or 1)
        self.kind = kind
        self.default = default
        self.help = help
        self.required = required

    @property
    def takes_value(self) -> bool:
        return self.kind != "flag"

    @property
    def hint(self) -> str:
        """How messages name the option: ``'-a' / '--address'`` (or ``'--timeout'``)."""
        return f"'{self.short}' / '{self.long}'" if self.short else f"'{self.long}'"


class Command:
    """A subcommand; ``unavailable`` ones accept any arguments and fail with that message.

    ``args`` names its positional arguments in order (upper case, as the usage line shows
    them); each is required, and its value is stored under the lower-case name."""

    __slots__ = ("args", "help", "name", "options", "unavailable")

    def __init__(
        self,
        name: str,
        help: str,
        options: tuple[Opt, ...] = (),
        unavailable: str = "",
        args: tuple[str, ...] = (),
    ) -> None:
        self.name = name
        self.help = help
        self.options = options
        self.unavailable = unavailable
        self.args = args


PROTOCOL_OPTION = Opt(
    "",
    "--protocol",
    "protocol",
    "protocol",
    DEFAULT_PROTOCOL,
    "Wire format: 1 (94 bytes, AES-256-GCM-SIV) or 0 for servers of the released ruroco"
    " 0.14.2 (93 bytes, AES-256-GCM; our server takes it with accept_protocol_0 = true)",
)

SEND_OPTIONS: tuple[Opt, ...] = (
    Opt(
        "-a",
        "--address",
        "address",
        "str",
        None,
        'Destination: "host", "host:port", "ip", "ip:port" or "[ipv6]:port" (default port 80)',
        required=True,
    ),
    Opt("-k", "--key-file", "key_file", "str", None, "File holding the key", required=True),
    Opt("-c", "--command", "command", "str", DEFAULT_COMMAND, "Name of the command to run"),
    Opt("-e", "--permissive", "permissive", "flag", False, "Do not pin the source IP (strict off)"),
    Opt("-i", "--ip", "ip", "str", None, "Source IP the server must see (a single IP literal)"),
    Opt("-4", "--ipv4", "ipv4", "flag", False, "Send over IPv4 only"),
    Opt("-6", "--ipv6", "ipv6", "flag", False, "Send over IPv6 only"),
    Opt(
        "-d",
        "--send-delay-ms",
        "send_delay_ms",
        "u64",
        DEFAULT_SEND_DELAY_MS,
        "Pause between destinations (ms)",
    ),
    PROTOCOL_OPTION,
)

# ``connect --knock-port``: HOST with another port than 80, where ``-a %h:PORT`` cannot say it
# (ssh's ``%h`` is a bare IPv6 literal, and ``::1:34020`` is no address). Its default is None
# so that ``-a`` with it can be refused; None knocks at port 80.
KNOCK_PORT_OPTION = Opt(
    "",
    "--knock-port",
    "knock_port",
    "port",
    None,
    "The ruroco server's UDP port on HOST, without -a (works for IPv6 HOSTs, which ssh's %h"
    " gives without brackets)  [default: 80]",
)

CONNECT_OPTIONS: tuple[Opt, ...] = (
    Opt(
        "-a",
        "--address",
        "address",
        "str",
        None,
        'The ruroco server: "host", "host:port", "ip", "ip:port" or "[ipv6]:port" (default:'
        " HOST, port 80)",
    ),
    KNOCK_PORT_OPTION,
    *SEND_OPTIONS[1:5],
    Opt("-4", "--ipv4", "ipv4", "flag", False, "Knock and connect over IPv4 only"),
    Opt("-6", "--ipv6", "ipv6", "flag", False, "Knock and connect over IPv6 only"),
    Opt(
        "",
        "--timeout",
        "timeout",
        "seconds",
        30.0,
        "Give up (exit 1) if PORT has not accepted a connection by then",
    ),
    Opt(
        "",
        "--interval",
        "interval",
        "interval",
        2.0,
        "Knock again, with a fresh counter, after this long without a connection",
    ),
    Opt(
        "",
        "--fdpass",
        "fdpass",
        "flag",
        False,
        "Hand the connected socket to ssh over stdout and exit (ProxyUseFdpass yes)",
    ),
    PROTOCOL_OPTION,
    Opt("-v", "--verbose", "verbose", "flag", False, "Log knocks and the connection to stderr"),
)

_UPDATE = (
    "update is not part of this implementation: upgrade the Python package with pip, "
    "or deploy a pinned version with the ruroco Ansible collection"
)
_WIZARD = (
    "wizard is not part of this implementation: set up a server with the ruroco Ansible "
    "collection's server role"
)

COMMANDS: dict[str, Command] = {
    c.name: c
    for c in (
        Command(
            "connect",
            "Knock, then relay stdin/stdout to HOST PORT (ssh ProxyCommand). Knocks over the"
            " address family it connects with (both if HOST has both), waits until PORT"
            " accepts a TCP connection, knocking again every --interval seconds, and relays"
            " until either side closes.",
            CONNECT_OPTIONS,
            args=("HOST", "PORT"),
        ),
        Command("gen", "Print a new key (56 characters, no newline)."),
        Command("reseed", "Reset the counter to the current time in nanoseconds."),
        Command(
            "send", "Send one packet per destination (first IPv4, then first IPv6).", SEND_OPTIONS
        ),
        Command("update", f"Not available: {_UPDATE.split(': ', 1)[1]}.", unavailable=_UPDATE),
        Command("wizard", f"Not available: {_WIZARD.split(': ', 1)[1]}.", unavailable=_WIZARD),
    )
}
# ``help [COMMAND]``, clap's automatic subcommand in the original: the help of the program or
# of COMMAND, exit 0. Not in ``COMMANDS`` (it runs nothing and takes no options), but listed.
HELP_COMMAND = Command(
    "help", "Show the help of the program, or of COMMAND, and exit.", args=("[COMMAND]",)
)
ABOUT = "Trigger a server-defined command with one encrypted UDP packet."


class CliExit(Exception):
    """The command line is handled without running a command: print ``out``/``err``, exit."""

    def __init__(self, code: int, out: str = "", err: str = "") -> None:
        super().__init__(code, out, err)
        self.code = code
        self.out = out
        self.err = err


def parse_u64(text: str) -> int | None:
    """Rust ``u64::from_str``: optional ``+``, ASCII digits, in range; None otherwise."""
    digits = text[1:] if text.startswith("+") else text
    if not (digits.isascii() and digits.isdigit()):
        return None
    value = int(digits)
    return value if value <= U64_MAX else None


def parse_seconds(text: str) -> float | None:
    """A decimal number of seconds above 0 and at most ``MAX_SECONDS`` (``2``, ``0.5``,
    ``+1.25``); None otherwise (no exponent, ``inf`` or ``nan``: ``float()`` is too lax)."""
    digits = text[1:] if text.startswith("+") else text
    whole, dot, frac = digits.partition(".")
    if not (whole or frac) or not all(
        p == "" or (p.isascii() and p.isdigit()) for p in (whole, frac)
    ):
        return None
    value = float(f"{whole or 0}.{frac or 0}") if dot else float(whole)
    return value if 0 < value <= MAX_SECONDS else None


def parse_port(text: str) -> int | None:
    """A TCP port 1 … 65535 in ASCII digits (what ssh's ``%p`` gives); None otherwise."""
    if not (text.isascii() and text.isdigit()):
        return None
    value = int(text)
    return value if 0 < value <= 65535 else None


def _usage(command: Command | None) -> str:
    if command is None:
        return f"Usage: {PROG} [OPTIONS] COMMAND [ARGS]..."
    options = "" if command is HELP_COMMAND else " [OPTIONS]"
    return " ".join((f"Usage: {PROG} {command.name}{options}", *command.args))


def usage_error(command: Command | None, message: str) -> CliExit:
    """Exit 2 with the usage line, the help hint and ``Error: message`` on stderr."""
    path = f"{PROG} {command.name}" if command else PROG
    hint = f"Try '{path} --help' for help."
    return CliExit(2, err=f"{_usage(command)}\n{hint}\n\nError: {message}\n")


def _did_you_mean(name: str, candidates: list[str]) -> str:
    """Click's suggestion suffix: the close matches among ``candidates``, if any."""
    from difflib import get_close_matches

    close = sorted(get_close_matches(name, candidates))
    if len(close) > 1:
        return f" (Did you mean one of: {', '.join(map(repr, close))}?)"
    return f" Did you mean {close[0]!r}?" if close else ""


def _no_such_option(command: Command | None, name: str, longs: list[str]) -> CliExit:
    """Unknown option; long ones get suggestions (``longs``), short ones none."""
    return usage_error(command, f"No such option {name!r}.{_did_you_mean(name, longs)}")


def _scan(
    command: Command | None, args: list[str], interspersed: bool
) -> tuple[list[tuple[str, Opt | None, str | None]], list[str]]:
    """Split ``args`` into ``(flag, option, value)`` in order (option None for -h/-V) and the
    positional arguments; with ``interspersed`` False, stop at the first positional."""
    options = command.options if command else ()
    short = {o.short: o for o in options if o.short}
    long = {o.long: o for o in options}
    builtin = HELP_FLAGS if command else VERSION_FLAGS + HELP_FLAGS
    longs = [*long, *(f for f in builtin if f.startswith("--"))]
    seen: list[tuple[str, Opt | None, str | None]] = []
    positional: list[str] = []
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if arg == "--":
            break
        if not arg.startswith("-") or arg == "-":
            if not interspersed:
                rest.insert(0, arg)
                break
            positional.append(arg)
            continue
        name, eq, inline = arg.partition("=")
        if name in long or (name in builtin and name.startswith("--")):
            opt = long.get(name)
            if opt is None or not opt.takes_value:
                if eq:
                    raise usage_error(command, f"Option {name!r} does not take a value.")
                seen.append((name, opt, None))
                continue
            if eq:
                seen.append((name, opt, inline))
            elif rest:
                seen.append((name, opt, rest.pop(0)))
            else:
                raise usage_error(command, f"Option {name!r} requires an argument.")
            continue
        if arg.startswith("--"):
            raise _no_such_option(command, name, longs)
        for i in range(1, len(arg)):  # a cluster of short flags, maybe ending in one value
            flag = "-" + arg[i]
            opt = short.get(flag)
            if opt is None and flag not in builtin:
                raise _no_such_option(command, flag, [])
            if opt is None or not opt.takes_value:
                seen.append((flag, opt, None))
                continue
            if i + 1 < len(arg):
                seen.append((flag, opt, arg[i + 1 :]))
            elif rest:
                seen.append((flag, opt, rest.pop(0)))
            else:
                raise usage_error(command, f"Option {flag!r} requires an argument.")
            break
    return seen, positional + rest


def _values(command: Command, seen: list[tuple[str, Opt | None, str | None]]) -> dict[str, object]:
    """Convert and check in click's order: given options first (as they came), then the rest."""
    given: dict[str, tuple[Opt, str | None]] = {}
    for _flag, opt, value in seen:
        if opt is not None:
            given[opt.dest] = (opt, value)  # once each (``clap_args`` refuses a repeat)
    values: dict[str, object] = {}
    for dest, (opt, text) in given.items():
        if opt.kind == "flag":
            values[dest] = True
        elif opt.kind == "u64":
            number = parse_u64(text or "")
            if number is None:
                raise usage_error(
                    command,
                    f"Invalid value for {opt.hint}: {text!r} is not an unsigned 64-bit integer",
                )
            values[dest] = number
        elif opt.kind == "port":
            port = parse_port(text or "")
            if port is None:
                raise usage_error(
                    command, f"Invalid value for {opt.hint}: {text!r} is not a port (1-65535)"
                )
            values[dest] = port
        elif opt.kind == "protocol":
            if text not in ("0", "1"):
                raise usage_error(command, f"Invalid value for {opt.hint}: {text!r} is not 0 or 1")
            values[dest] = int(text)
        elif opt.kind in ("seconds", "interval"):
            seconds = parse_seconds(text or "")
            if seconds is None:
                raise usage_error(
                    command,
                    f"Invalid value for {opt.hint}: {text!r} is not a number of seconds"
                    f" above 0 and at most {MAX_SECONDS:g}",
                )
            if opt.kind == "interval" and seconds < MIN_INTERVAL:
                raise usage_error(
                    command,
                    f"Invalid value for {opt.hint}: {text!r} is less than {MIN_INTERVAL:g} second;"
                    " knocking more often only meets the server's per-source rate limit",
                )
            values[dest] = seconds
        else:
            # clap's String arguments: exit 2. Not the key file, a path (any bytes).
            if dest != "key_file" and not _is_utf8(text or ""):
                raise usage_error(command, f"Invalid value for {opt.hint}: it is not valid UTF-8")
            values[dest] = text
    if "knock_port" in values and "address" in values:
        raise usage_error(
            command,
            f"{KNOCK_PORT_OPTION.hint} is the port on HOST: with {CONNECT_OPTIONS[0].hint}"
            " give the port there",
        )
    for opt in command.options:
        if opt.dest not in values:
            if opt.required:
                raise usage_error(command, f"Missing option {opt.hint}.")
            values[opt.dest] = opt.default
    return {opt.dest: values[opt.dest] for opt in command.options}


def _is_utf8(text: str) -> bool:
    """Whether an argument was valid UTF-8 (Python keeps other bytes as lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _arguments(command: Command, positional: list[str]) -> dict[str, object]:
    """The positional arguments by name; a missing one or a bad PORT is a usage error."""
    if len(positional) < len(command.args):
        raise usage_error(command, f"Missing argument '{command.args[len(positional)]}'.")
    values: dict[str, object] = {}
    for name, text in zip(command.args, positional, strict=False):
        if name == "PORT":
            port = parse_port(text)
            if port is None:
                raise usage_error(
                    command, f"Invalid value for 'PORT': {text!r} is not a port (1-65535)"
                )
            values["port"] = port
        elif not _is_utf8(text):
            raise usage_error(command, f"Invalid value for '{name}': it is not valid UTF-8")
        else:
            values[name.lower()] = text
    return values


def _extra(command: Command | None, extra: list[str]) -> CliExit:
    noun = "argument" if len(extra) == 1 else "arguments"
    return usage_error(command, f"Got unexpected extra {noun} ({' '.join(extra)})")


def version_text() -> str:
    from ruroco import __version__
    from ruroco.protocol import PROTOCOL_VERSION

    return f"{PROG} {__version__} (ruroco 0.14 wire protocol {PROTOCOL_VERSION})\n"


def _program_options(argv: list[str]) -> list[str]:
    """Handle ``-h``/``-V`` before the command (the first given wins); the rest of argv."""
    seen, rest = _scan(None, argv, interspersed=False)
    for flag, _opt, _value in seen:
        if flag in HELP_FLAGS:
            raise CliExit(0, out=help_text(None))
        raise CliExit(0, out=version_text())
    return rest


def _help_command(args: list[str]) -> CliExit:
    """``help`` prints the program's help, ``help COMMAND`` that command's, and exit 0;
    anything else is a usage error (exit 2), as in clap: no options, one known name."""
    if len(args) > 1:
        return _extra(None, args[1:])
    if not args:
        return CliExit(0, out=help_text(None))
    name = args[0]
    command = HELP_COMMAND if name == HELP_COMMAND.name else COMMANDS.get(name)
    if command is None:
        known = sorted([*COMMANDS, HELP_COMMAND.name])
        return usage_error(None, f"No such command {name!r}.{_did_you_mean(name, known)}")
    return CliExit(0, out=help_text(command))


def parse(argv: list[str]) -> tuple[str, dict[str, object]]:
    """``(command, option and argument values)`` of a command line that runs a command
    (``connect``, ``gen``, ``reseed`` or ``send``); raises ``CliExit`` for help, version,
    usage errors and the commands not carried over."""
    if not argv:
        raise CliExit(2, err=help_text(None))
    rest = _program_options(argv)
    if not rest:
        raise usage_error(None, "Missing command.")
    name, args = rest[0], rest[1:]
    if name == HELP_COMMAND.name:
        raise _help_command(args)
    command = COMMANDS.get(name)
    if command is None:
        if name.startswith("-") and name != "-":  # after "--": parsed as options (as click)
            _program_options(rest)
        known = sorted([*COMMANDS, HELP_COMMAND.name])
        raise usage_error(None, f"No such command {name!r}.{_did_you_mean(name, known)}")
    if command.unavailable:
        raise CliExit(2, err=f"Error: {command.unavailable}\n")
    table: dict[str, tuple[object, bool]] = {
        f: (o, o.takes_value) for o in command.options for f in (o.short, o.long) if f
    }
    try:
        args = clap_args(args, table, HELP_FLAGS)  # clap's -a=VALUE; no option twice
    except Repeated as exc:
        hint = exc.key.hint if isinstance(exc.key, Opt) else str(exc.key)
        raise usage_error(command, repeated_message(hint)) from None
    seen, extra = _scan(command, args, interspersed=True)
    if any(opt is None for _flag, opt, _value in seen):  # -h/--help
        raise CliExit(0, out=help_text(command))
    values = _values(command, seen)
    if command.args:
        values.update(_arguments(command, extra))
        extra = extra[len(command.args) :]
    if extra:
        raise _extra(command, extra)
    return command.name, values


def _width() -> int:
    from shutil import get_terminal_size

    return max(min(get_terminal_size().columns, 80) - 2, 50)


def _rows(rows: list[tuple[str, str]], width: int) -> list[str]:
    """Two indented columns, the second wrapped (click's definition list)."""
    from textwrap import wrap

    first = min(max(len(left) for left, _ in rows), 30) + 2
    out: list[str] = []
    for left, right in rows:
        lines = wrap(right, max(width - first - 2, 10), replace_whitespace=False)
        if len(left) <= first - 2:
            out.append(f"  {left}{' ' * (first - len(left))}{lines[0]}")
        else:
            out += [f"  {left}", f"{' ' * (first + 2)}{lines[0]}"]
        out += [f"{' ' * (first + 2)}{line}" for line in lines[1:]]
    return out


def _short_help(text: str, limit: int) -> str:
    """The first sentence, shortened to ``limit`` (click's short help of a command)."""
    first, sep, _rest = text.partition(". ")
    text = first + "." if sep else text
    if len(text) <= limit:
        return text
    from textwrap import shorten

    return shorten(text, limit, placeholder="...", break_on_hyphens=False)


def help_text(command: Command | None, width: int | None = None) -> str:
    """``--help`` of the program (``command`` None) or of one command."""
    from textwrap import wrap

    width = _width() if width is None else width
    about = command.help if command else ABOUT
    lines = [_usage(command), ""]
    lines += wrap(about, width, initial_indent="  ", subsequent_indent="  ")
    rows: list[tuple[str, str]] = []
    for opt in command.options if command else ():
        left = f"{opt.short}, {opt.long}" if opt.short else opt.long
        if opt.takes_value:
            left += {
                "u64": " U64",
                "seconds": " SECONDS",
                "interval": " SECONDS",
                "protocol": " [0|1]",
                "port": " PORT",
            }.get(opt.kind, " TEXT")
        shown = f"{opt.default:g}" if opt.kind in ("seconds", "interval") else opt.default
        extra = [f"default: {shown}"] if opt.takes_value and opt.default is not None else []
        extra += ["required"] if opt.required else []
        rows.append((left, f"{opt.help}  [{'; '.join(extra)}]" if extra else opt.help))
    if not command:
        rows.append(("-V, --version", "Show the version and exit."))
    if command is not HELP_COMMAND:
        rows.append(("-h, --help", "Show this message and exit."))
        lines += ["", "Options:", *_rows(rows, width)]
    if not command:
        listed = sorted([*COMMANDS.values(), HELP_COMMAND], key=lambda c: c.name)
        limit = width - 6 - max(len(c.name) for c in listed)
        commands = [(c.name, _short_help(c.help, limit)) for c in listed]
        lines += ["", "Commands:", *_rows(commands, width)]
    return "\n".join(lines) + "\n"
