"""Content codings (RFC 9110 8.4, 12.5.3): which one a request accepts, the encoders, and the
header rules a compressed answer follows (`Vary`, entity tags). The layer that applies them is
`app.middleware.compression`.
"""

import re
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

import brotli
import zstandard

# Levels for a small box: most of the size gain of each coding for a small part of its CPU
# (docs/api.md#compression).
GZIP_LEVEL = 5
BROTLI_QUALITY = 4
ZSTD_LEVEL = 3

Pair = tuple[bytes, bytes]

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_QVALUE = re.compile(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")
# Media types worth compressing: text, JSON, XML, JavaScript, SVG; images, archives and other
# already-compressed formats only grow.
_COMPRESSIBLE = frozenset(
    {b"application/json", b"application/javascript", b"application/xml", b"image/svg+xml"}
)
# Live event streams stay plain: a compressor's state per open stream costs hundreds of KB
# (thousands of idle streams), and their small frames hardly shrink.
_NEVER_COMPRESSED = frozenset({b"text/event-stream"})


class StreamEncoder(Protocol):
    def flushed(self, data: bytes) -> bytes:
        """`data` compressed and flushed: a client can decode all of it at once."""

    def finish(self, data: bytes) -> bytes:
        """`data` compressed and the stream's end."""


class _Gzip:
    def __init__(self) -> None:
        self._zlib = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)  # 31: the gzip wrapper

    def flushed(self, data: bytes) -> bytes:
        return self._zlib.compress(data) + self._zlib.flush(zlib.Z_SYNC_FLUSH)

    def finish(self, data: bytes) -> bytes:
        return self._zlib.compress(data) + self._zlib.flush(zlib.Z_FINISH)


class _Brotli:
    def __init__(self) -> None:
        self._brotli = brotli.Compressor(quality=BROTLI_QUALITY)

    def flushed(self, data: bytes) -> bytes:
        processed = self._brotli.process(data)
        flushed: bytes = self._brotli.flush()  # type: ignore[attr-defined]  # not in the stubs
        return processed + flushed

    def finish(self, data: bytes) -> bytes:
        return self._brotli.process(data) + self._brotli.finish()


class _Zstd:
    def __init__(self) -> None:
        # A compressor per stream: one compressor's streams must not interleave.
        self._zstd = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compressobj()

    def flushed(self, data: bytes) -> bytes:
        return self._zstd.compress(data) + self._zstd.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)

    def finish(self, data: bytes) -> bytes:
        return self._zstd.compress(data) + self._zstd.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH)


def _gzip(body: bytes) -> bytes:
    return zlib.compress(body, GZIP_LEVEL, wbits=31)


def _brotli(body: bytes) -> bytes:
    return brotli.compress(body, quality=BROTLI_QUALITY)


def _zstd(body: bytes) -> bytes:
    # A fresh compressor: the call may run in a worker thread, beside another.
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(body)


@dataclass(frozen=True, slots=True)
class Coding:
    name: str
    token: bytes  # as in Content-Encoding
    compress: Callable[[bytes], bytes]  # a whole body
    stream: Callable[[], StreamEncoder]  # a body sent in parts

    def tagged(self, etag: bytes) -> bytes:
        """A strong entity tag made distinct for the encoded bytes (RFC 9110 8.8.3): `"x"`
        becomes `"x-gzip"`. A weak tag stays: it already allows other bytes."""
        if len(etag) >= 2 and etag[:1] == b'"' and etag[-1:] == b'"':
            return etag[:-1] + b"-" + self.token + b'"'
        return etag


# In order of preference when a client accepts several equally: zstd and Brotli compress better
# than gzip at these levels, and zstd costs the least CPU.
CODINGS = (
    Coding("zstd", b"zstd", _zstd, _Zstd),
    Coding("br", b"br", _brotli, _Brotli),
    Coding("gzip", b"gzip", _gzip, _Gzip),
)


@dataclass(frozen=True, slots=True)
class Choice:
    coding: Coding | None  # None: identity
    identity_ok: bool = True  # False: `identity;q=0` or `*;q=0`, so compress even a small body


IDENTITY = Choice(None)


def negotiate(header: str | None) -> Choice:
    """The coding for a request's Accept-Encoding: the acceptable one with the highest q-value,
    ties in the order of CODINGS; identity without the header, for an empty one, or when an
    explicit `identity` weighs more. Malformed items are ignored, never an error."""
    if header is None:
        return IDENTITY
    # Headers vary little between clients; a long one is parsed each time, not kept.
    return _negotiate_cached(header) if len(header) <= 256 else _negotiate(header)


@lru_cache(maxsize=256)
def _negotiate_cached(header: str) -> Choice:
    return _negotiate(header)


def _negotiate(header: str) -> Choice:
    weights = _weights(header)
    star = weights.get("*")
    identity = weights.get("identity", star)
    best, best_q = None, 0.0
    for coding in CODINGS:
        q = weights.get(coding.name, star or 0.0)
        if q > best_q:
            best, best_q = coding, q
    if best is None or (identity is not None and identity > best_q):
        return IDENTITY
    return Choice(best, identity_ok=identity is None or identity > 0)


def _weights(header: str) -> dict[str, float]:
    """Coding -> q-value, the first mention of each counting (RFC 9110 12.4.2's grammar)."""
    weights: dict[str, float] = {}
    for item in header.split(","):
        name, _, parameters = item.partition(";")
        name = name.strip().lower()
        q = _q_value(parameters.split(";")) if parameters else 1.0
        if q is None or not _TOKEN.fullmatch(name):
            continue
        weights.setdefault("gzip" if name == "x-gzip" else name, q)
    return weights


def _q_value(parameters: Iterable[str]) -> float | None:
    for parameter in parameters:
        key, _, value = parameter.partition("=")
        if key.strip().lower() == "q":
            value = value.strip()
            return float(value) if _QVALUE.fullmatch(value) else None
    return 1.0


def compressible(content_type: bytes) -> bool:
    media_type = content_type.split(b";", 1)[0].strip().lower()
    return media_type not in _NEVER_COMPRESSED and (
        media_type.startswith(b"text/")
        or media_type in _COMPRESSIBLE
        or media_type.endswith((b"+json", b"+xml"))
    )


def with_vary(headers: Iterable[Pair]) -> list[Pair]:
    """The headers with `Accept-Encoding` in `Vary`, merged into one already there."""
    result = list(headers)
    first = None
    for index, (name, value) in enumerate(result):
        if name.lower() == b"vary":
            fields = {part.strip().lower() for part in value.split(b",")}
            if b"accept-encoding" in fields or b"*" in fields:
                return result
            first = index if first is None else first
    if first is None:
        result.append((b"vary", b"Accept-Encoding"))
    else:
        name, value = result[first]
        result[first] = (name, value + b", Accept-Encoding")
    return result


def untagged(value: bytes, codings: Iterable[Coding]) -> bytes:
    """A precondition header with the coding suffixes of `Coding.tagged` removed: the record's
    own tag, as the service compares it."""
    for coding in codings:
        value = value.replace(b"-" + coding.token + b'"', b'"')
    return value
