"""Calling an ASGI app directly, seeing each response message as it is sent (httpx's transport
hands the body over only once the app has finished), and decoding compressed bodies part by part.
"""

import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import anyio
import brotli
import zstandard


def decoder(coding: str | None) -> Callable[[bytes], bytes]:
    """A function decoding a body of this Content-Encoding one part at a time."""
    if coding == "gzip":
        return zlib.decompressobj(31).decompress
    if coding == "br":
        return _brotli_decoder()
    if coding == "zstd":
        return zstandard.ZstdDecompressor().decompressobj().decompress
    assert coding is None, coding
    return bytes


def _brotli_decoder() -> Callable[[bytes], bytes]:
    decompressor = brotli.Decompressor()

    def decode(data: bytes) -> bytes:
        # The decompressor hands its output over in pieces: ask until it has none left.
        parts = [decompressor.process(data)]
        while parts[-1]:
            parts.append(decompressor.process(b""))
        return b"".join(parts)

    return decode


@dataclass
class Answer:
    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    parts: list[bytes] = field(default_factory=list)  # each body message's bytes, as sent
    decoded: list[bytes] = field(default_factory=list)  # what each part decoded to on arrival
    keep: bool = True  # False: count the bytes, keep none (memory tests)
    part_count: int = 0
    raw_bytes: int = 0
    decoded_bytes: int = 0
    _decode: Callable[[bytes], bytes] = bytes

    def header(self, name: str) -> str | None:
        values = [v.decode("latin-1") for k, v in self.headers if k.decode().lower() == name]
        assert len(values) <= 1, f"{name} sent {len(values)} times"
        return values[0] if values else None

    @property
    def body(self) -> bytes:
        return b"".join(self.parts)

    @property
    def text(self) -> str:
        return b"".join(self.decoded).decode()

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = list(message.get("headers", []))
            self._decode = decoder(self.header("content-encoding"))
        elif message["type"] == "http.response.body":
            part = message.get("body", b"")
            decoded = self._decode(part)
            self.part_count += 1
            self.raw_bytes += len(part)
            self.decoded_bytes += len(decoded)
            if self.keep:
                self.parts.append(part)
                self.decoded.append(decoded)


async def call(
    app: Any,
    path: str = "/",
    *,
    method: str = "GET",
    headers: Iterable[tuple[str, str]] = (),
    keep: bool = True,
    answer: Answer | None = None,
) -> Answer:
    """The answer of `app` to a request without a body; `answer` collects it if given."""
    route, _, query = path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": route,
        "raw_path": route.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"test")]
        + [(name.lower().encode(), value.encode("latin-1")) for name, value in headers],
        "server": ("test", 80),
        "client": ("127.0.0.1", 50000),
        "extensions": {},
        "state": {},
    }
    answer = answer or Answer(keep=keep)
    sent_request = False

    async def receive() -> dict[str, Any]:
        nonlocal sent_request
        if not sent_request:
            sent_request = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await anyio.sleep_forever()  # the client stays connected
        raise AssertionError("unreachable")

    await app(scope, receive, answer.send)
    return answer
