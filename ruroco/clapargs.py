"""Where the command lines of all three programs read options as clap (the original's parser)
does rather than as click: one pass over a command's arguments before the parser sees them.

* A short option that takes a value, alone or ending a cluster of flags, with ``=`` after it
  (``-a=VALUE``, ``-ec=VALUE``) means ``VALUE``, not ``=VALUE``: the token becomes ``-a``
  and ``VALUE`` (so ``-a=`` is the empty value and the next token stays an option).
* An option given a second time, a flag too, is refused ("cannot be used multiple times",
  exit 2), whichever of its names is used. The eager ``-h``/``--help`` and ``-V``/``--version``
  may repeat; at the first of them the pass ends and the parser acts on it (as clap does at
  that point: what comes after it is not looked at).

Everything else is left as it is, for the parser to read and refuse as before: the syntax is
click's (``ruroco-server``, ``ruroco-commander``) and the client's own parser copies it, so one
pass serves both (``ruroco.clapcommand`` for the daemons, ``ruroco.client.options``). At the
first unknown option the pass ends too, leaving the error to the parser. No imports: the
client's start stays lean.
"""

from __future__ import annotations


class Repeated(Exception):
    """An option was given twice; ``key`` is the caller's object for it."""

    def __init__(self, key: object) -> None:
        super().__init__(key)
        self.key = key


def repeated_message(hint: str) -> str:
    """The usage error for an option given twice; ``hint`` names it (``'-a' / '--address'``)."""
    return f"Option {hint} cannot be used multiple times."


def clap_args(
    args: list[str], options: dict[str, tuple[object, bool]], eager: tuple[str, ...]
) -> list[str]:
    """``args`` with clap's short ``-x=VALUE`` split into ``-x VALUE``; raises ``Repeated``.

    ``options`` maps every spelling of every option (``-a``, ``--address``) to a key that is
    the same for all spellings of one option and whether it takes a value; ``eager`` names
    the flags that end the pass (help, version)."""
    out: list[str] = []
    seen: set[int] = set()
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":  # the rest are positional arguments
            return out + args[i - 1 :]
        if not arg.startswith("-") or arg == "-":
            out.append(arg)
            continue
        if arg.startswith("--"):
            name, eq, _value = arg.partition("=")
            if name in eager or name not in options:
                return out + args[i - 1 :]
            key, takes_value = options[name]
            _once(key, seen)
            out.append(arg)
            if takes_value and not eq and i < len(args):
                out.append(args[i])  # the value, whatever it looks like
                i += 1
            continue
        for j in range(1, len(arg)):  # a cluster of short flags, maybe ending in one value
            flag = "-" + arg[j]
            if flag in eager or flag not in options:
                return out + args[i - 1 :]
            key, takes_value = options[flag]
            _once(key, seen)
            if takes_value:
                attached = arg[j + 1 :]
                if attached.startswith("="):
                    out += [arg[: j + 1], attached[1:]]
                else:
                    out.append(arg)
                    if not attached and i < len(args):
                        out.append(args[i])
                        i += 1
                break
        else:
            out.append(arg)
    return out


def _once(key: object, seen: set[int]) -> None:
    if id(key) in seen:
        raise Repeated(key)
    seen.add(id(key))
