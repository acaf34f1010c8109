"""The value types of the client API: what to send (``SendRequest``) and what happened.

Plain ``__slots__`` classes rather than dataclasses: importing ``dataclasses`` costs the
CLI's cold start about ten milliseconds. They behave like frozen dataclasses (keyword
construction, equality, hashing, ``replace``), and the key text never appears in a repr.
"""

from __future__ import annotations

DEFAULT_COMMAND = "default"
DEFAULT_SEND_DELAY_MS = 50
#: Protocol 1 (``ruroco.protocol.PROTOCOL_VERSION``; not imported: this module stays free of
#: cryptography); 0 is the released ruroco 0.14.2's format (docs/protocol.md, Protocol 0).
DEFAULT_PROTOCOL = 1

_REQUEST_FIELDS = (
    "address",
    "key_file",
    "key",
    "command",
    "permissive",
    "ip",
    "ipv4",
    "ipv6",
    "send_delay_ms",
    "protocol",
)


class _Frozen:
    """Immutable value object with equality; a stand-in for ``@dataclass(frozen=True)``."""

    __slots__ = ()
    _fields: tuple[str, ...] = ()

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, f) for f in self._fields)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(self._repr_parts())})"

    def _repr_parts(self) -> list[str]:
        return [f"{f}={getattr(self, f)!r}" for f in self._fields]


class SendRequest(_Frozen):
    """What to send where. ``key`` (the key text) is for library callers only and never shown."""

    __slots__ = _REQUEST_FIELDS
    _fields = _REQUEST_FIELDS

    address: str
    key_file: str | None
    key: str | None
    command: str
    permissive: bool
    ip: str | None
    ipv4: bool
    ipv6: bool
    send_delay_ms: int
    protocol: int

    def __init__(
        self,
        address: str,
        key_file: str | None = None,
        key: str | None = None,
        command: str = DEFAULT_COMMAND,
        permissive: bool = False,
        ip: str | None = None,
        ipv4: bool = False,
        ipv6: bool = False,
        send_delay_ms: int = DEFAULT_SEND_DELAY_MS,
        protocol: int = DEFAULT_PROTOCOL,
    ) -> None:
        values = (
            address,
            key_file,
            key,
            command,
            permissive,
            ip,
            ipv4,
            ipv6,
            send_delay_ms,
            protocol,
        )
        for name, value in zip(_REQUEST_FIELDS, values, strict=True):
            object.__setattr__(self, name, value)

    def _repr_parts(self) -> list[str]:
        parts = super()._repr_parts()
        if self.key is not None:
            parts[self._fields.index("key")] = "key=<redacted>"
        return parts

    def replace(self, **changes: object) -> SendRequest:
        """A copy with some fields changed (``dataclasses.replace`` for this class)."""
        values = {f: getattr(self, f) for f in self._fields}
        unknown = set(changes) - set(values)
        if unknown:
            raise TypeError(f"unknown SendRequest fields: {sorted(unknown)}")
        values.update(changes)
        return SendRequest(**values)


class SendResult(_Frozen):
    """Outcome for one destination; ``error`` is None once the kernel accepted the datagram."""

    __slots__ = ("counter", "destination", "error")
    _fields = ("destination", "counter", "error")

    destination: str
    counter: int
    error: str | None

    def __init__(self, destination: str, counter: int, error: str | None) -> None:
        object.__setattr__(self, "destination", destination)
        object.__setattr__(self, "counter", counter)
        object.__setattr__(self, "error", error)
