"""The compression layer over small test apps: negotiation, sizes, statuses, headers, streams."""

import gzip
from typing import Any

import pytest
from starlette.responses import Response, StreamingResponse

from app.middleware.compression import CompressionMiddleware
from tests.asgi import call

MIN = 1024
TEXT = b"The quick brown fox jumps over the lazy dog. " * 100  # well above MIN


def serve(response: Response | None = None, **kwargs: Any) -> Any:
    """The compression layer over an app answering `response` (default: TEXT as text/plain)."""
    answer = response or Response(TEXT, media_type="text/plain", **kwargs)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await answer(scope, receive, send)

    return CompressionMiddleware(app, min_bytes=MIN)


def encoding(header: str | None) -> list[tuple[str, str]]:
    return [] if header is None else [("Accept-Encoding", header)]


class TestNegotiation:
    @pytest.mark.parametrize(
        ("accept", "chosen"),
        [
            (None, None),
            ("", None),
            ("gzip", "gzip"),
            ("br", "br"),
            ("zstd", "zstd"),
            ("GZip", "gzip"),
            ("x-gzip", "gzip"),
            ("gzip, deflate, br, zstd", "zstd"),  # equal weights: zstd, then br, then gzip
            ("gzip, br", "br"),
            ("gzip;q=1, br;q=0.5", "gzip"),
            ("br;q=0.8, gzip;q=0.9, zstd;q=0.1", "gzip"),
            ("gzip ; q=0.5, br;q=0.4", "gzip"),
            ("gzip;q=0", None),
            ("zstd;q=0, br;q=0.000, gzip", "gzip"),
            ("*", "zstd"),
            ("*;q=0.5, gzip", "gzip"),
            ("*, zstd;q=0", "br"),
            ("*;q=0", None),
            ("identity", None),
            ("gzip;q=0.5, identity", None),
            ("gzip, identity;q=0.5", "gzip"),
            ("identity;q=0", None),  # nothing else acceptable: the body goes out as it is
            ("deflate", None),
            ("compress, deflate;q=1", None),
        ],
    )
    async def test_accept_encoding_picks_the_coding(self, accept, chosen):
        answer = await call(serve(), headers=encoding(accept))
        assert answer.status == 200
        assert answer.header("content-encoding") == chosen
        assert answer.header("vary") == "Accept-Encoding"
        assert answer.text.encode() == TEXT

    @pytest.mark.parametrize(
        "garbage",
        [
            "gzip;q=abc",
            "gzip;q=2",
            "gzip;q=1.5",
            "gzip;q=",
            "gzip;q=-1",
            ";q=1",
            ",,,;;;",
            "g@zip",
            "\u00ff\u00fe;q=\u00e9",
            "gzip;q=0." + "5" * 5000,
        ],
    )
    async def test_a_malformed_header_gets_the_plain_body_never_an_error(self, garbage):
        answer = await call(serve(), headers=encoding(garbage))
        assert answer.status == 200
        assert answer.header("content-encoding") is None
        assert answer.body == TEXT

    async def test_several_accept_encoding_headers_count_together(self):
        headers = [("Accept-Encoding", "gzip;q=0.2"), ("Accept-Encoding", "br")]
        answer = await call(serve(), headers=headers)
        assert answer.header("content-encoding") == "br"

    async def test_refusing_identity_gets_even_a_small_body_compressed(self):
        small = serve(Response(b"tiny", media_type="text/plain"))
        answer = await call(small, headers=encoding("identity;q=0, gzip"))
        assert answer.header("content-encoding") == "gzip"
        assert gzip.decompress(answer.body) == b"tiny"


class TestWhatIsCompressed:
    @pytest.mark.parametrize(("size", "compressed"), [(MIN - 1, False), (MIN, True)])
    async def test_the_minimum_size_boundary(self, size, compressed):
        body = b"a" * size
        answer = await call(
            serve(Response(body, media_type="text/plain")), headers=encoding("gzip")
        )
        assert answer.header("vary") == "Accept-Encoding"
        if compressed:
            assert answer.header("content-encoding") == "gzip"
            assert answer.header("content-length") == str(len(answer.body))
            assert gzip.decompress(answer.body) == body
        else:
            assert answer.header("content-encoding") is None
            assert answer.header("content-length") == str(size)
            assert answer.body == body

    async def test_not_modified_is_passed_through_with_vary(self):
        answer = await call(
            serve(Response(status_code=304, headers={"ETag": '"v1"'})),
            headers=[("Accept-Encoding", "gzip"), ("If-None-Match", '"v1"')],
        )
        assert answer.status == 304
        assert answer.header("content-encoding") is None
        assert answer.header("etag") == '"v1"'
        assert answer.header("vary") == "Accept-Encoding"
        assert answer.body == b""

    @pytest.mark.parametrize(
        ("status", "headers", "media_type"),
        [
            (206, {"Content-Range": f"bytes 0-{len(TEXT) - 1}/9999"}, "text/plain"),
            (200, {}, "image/png"),  # compresses poorly
            (200, {}, None),  # no type: unknown content
        ],
    )
    async def test_answers_that_must_not_be_encoded_pass_through(self, status, headers, media_type):
        app = serve(Response(TEXT, status_code=status, headers=headers, media_type=media_type))
        answer = await call(app, headers=encoding("gzip, br, zstd"))
        assert answer.status == status
        assert answer.header("content-encoding") is None
        assert answer.header("content-length") == str(len(TEXT))
        assert answer.header("vary") == "Accept-Encoding"
        assert answer.body == TEXT

    async def test_an_already_encoded_body_passes_through(self):
        encoded = gzip.compress(TEXT)
        app = serve(
            Response(encoded, media_type="text/plain", headers={"Content-Encoding": "gzip"})
        )
        answer = await call(app, headers=encoding("br, zstd"))
        assert answer.header("content-encoding") == "gzip"
        assert answer.header("content-length") == str(len(encoded))
        assert answer.header("vary") == "Accept-Encoding"
        assert answer.body == encoded

    async def test_an_identity_content_encoding_is_replaced(self):
        app = serve(
            Response(TEXT, media_type="text/plain", headers={"Content-Encoding": "identity"})
        )
        answer = await call(app, headers=encoding("gzip"))
        assert answer.header("content-encoding") == "gzip"  # once: header() checks
        assert gzip.decompress(answer.body) == TEXT

    @pytest.mark.parametrize("streamed", [False, True])
    async def test_bodies_over_256_kib_are_compressed_off_the_event_loop_as_well(self, streamed):
        large = TEXT * 100
        response = (
            StreamingResponse(iter([large, large]), media_type="text/csv")
            if streamed
            else Response(large, media_type="application/json")
        )
        answer = await call(serve(response), headers=encoding("zstd"))
        assert answer.header("content-encoding") == "zstd"
        assert answer.text.encode() == (large * 2 if streamed else large)

    @pytest.mark.parametrize(
        ("apps_vary", "sent"),
        [
            ("Origin", "Origin, Accept-Encoding"),
            ("accept-encoding", "accept-encoding"),
            ("Origin, Accept-Encoding", "Origin, Accept-Encoding"),
            ("*", "*"),
        ],
    )
    @pytest.mark.parametrize("accept", [None, "gzip"])
    async def test_vary_is_merged_never_duplicated(self, apps_vary, sent, accept):
        for body in (b"small", TEXT):
            app = serve(Response(body, media_type="text/plain", headers={"Vary": apps_vary}))
            answer = await call(app, headers=encoding(accept))
            assert answer.header("vary") == sent
