"""The one table of ``send`` options, shared by the click command and the fast argv parser.

``ruroco-client send`` must start in a few tens of milliseconds and click alone costs about
forty, so ``main`` parses a well-formed ``send`` command line itself. Both parsers are driven
by ``SEND_OPTIONS`` and share ``parse_u64``, so they cannot disagree on names, defaults or
value syntax; anything the fast parser is not sure about goes to click, which then owns help
and usage errors.
No ``typing`` import on this path: it alone costs the cold start about ten milliseconds.
"""

from __future__ import annotations

from ruroco.client.request import DEFAULT_COMMAND, DEFAULT_SEND_DELAY_MS

U64_MAX = (1 << 64) - 1


class Opt:
    """One option of ``send``: flags, destination field, value kind, default, help text."""

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
        self.kind = kind  # "str", "path", "flag" or "u64"
        self.default = default
        self.help = help
        self.required = required

    @property
    def takes_value(self) -> bool:
        return self.kind != "flag"


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
    Opt("-k", "--key-file", "key_file", "path", None, "File holding the key", required=True),
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
)

_BY_FLAG = {name: opt for opt in SEND_OPTIONS for name in (opt.short, opt.long)}


def parse_u64(text: str) -> int | None:
    """Rust ``u64::from_str``: optional ``+``, ASCII digits, in range; None otherwise."""
    digits = text[1:] if text.startswith("+") else text
    if not (digits.isascii() and digits.isdigit()):
        return None
    value = int(digits)
    return value if value <= U64_MAX else None


def _convert(opt: Opt, text: str) -> object:
    return parse_u64(text) if opt.kind == "u64" else text


def parse_send_argv(argv: list[str]) -> dict[str, object] | None:
    """Options of a plain ``send ...`` command line, or None to let click handle it.

    Accepts only ``-x VALUE``, ``--long VALUE``, ``--long=VALUE`` and bare flags, each at
    most once; values that look like options, help, unknown tokens, bad numbers and missing
    required options all return None.
    """
    if not argv or argv[0] != "send":
        return None
    values: dict[str, object] = {}
    i = 1
    while i < len(argv):
        token = argv[i]
        i += 1
        name, eq, inline = token.partition("=") if token.startswith("--") else (token, "", "")
        opt = _BY_FLAG.get(name)
        if opt is None or opt.dest in values:
            return None
        if not opt.takes_value:
            if eq:
                return None
            values[opt.dest] = True
            continue
        if eq:
            text = inline
        elif i < len(argv) and not argv[i].startswith("-"):
            text = argv[i]
            i += 1
        else:
            return None
        value = _convert(opt, text)
        if value is None:
            return None
        values[opt.dest] = value
    for opt in SEND_OPTIONS:
        if opt.dest not in values:
            if opt.required:
                return None
            values[opt.dest] = opt.default
    return values
