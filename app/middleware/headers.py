"""Response headers written straight into the ASGI message: names encoded once, one pass
(Starlette's `MutableHeaders` scans the list for every header it sets).
"""

from collections.abc import Iterable

from starlette.types import Message

Pair = tuple[bytes, bytes]


def encoded(headers: Iterable[tuple[str, str]]) -> tuple[Pair, ...]:
    # ASGI response header names are lowercase.
    return tuple(
        (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers
    )


class HeaderSet:
    """Headers to set on a response: `replace` wins over the app's, `default` only fills in."""

    def __init__(self, replace: tuple[Pair, ...], default: tuple[Pair, ...] = ()) -> None:
        self.replace = replace
        self.default = default
        self._names = frozenset(name for name, _ in replace)

    def apply(self, message: Message) -> None:
        """Set them on an `http.response.start` message."""
        names = self._names
        headers = [pair for pair in message.get("headers", ()) if pair[0] not in names]
        if self.default:
            present = {name for name, _ in headers}
            headers += [pair for pair in self.default if pair[0] not in present]
        headers += self.replace
        message["headers"] = headers


def set_header(message: Message, name: bytes, value: bytes) -> None:
    """Set one header on an `http.response.start` message, replacing any the app set."""
    headers = [pair for pair in message.get("headers", ()) if pair[0] != name]
    headers.append((name, value))
    message["headers"] = headers
