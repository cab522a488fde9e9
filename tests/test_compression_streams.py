"""The compression layer over small test apps: HEAD, entity tags, and streams flushed part by
part."""

from typing import Any

import pytest
from starlette.responses import Response, StreamingResponse

from app.middleware.compression import CompressionMiddleware
from tests.asgi import Answer, call
from tests.test_compression import MIN, TEXT, encoding, serve


class TestHead:
    async def test_head_says_what_get_would_without_a_length_or_body(self):
        app = serve(etag_response(TEXT))
        get = await call(app, headers=encoding("gzip"))
        head = await call(app, method="HEAD", headers=encoding("gzip"))
        assert head.status == get.status == 200
        for name in ("content-encoding", "etag", "vary", "content-type"):
            assert head.header(name) == get.header(name)
        assert head.header("content-encoding") == "gzip"
        assert head.header("content-length") is None
        assert head.body == b""

    async def test_head_of_a_small_body_keeps_its_length(self):
        head = await call(serve(etag_response(b"small")), method="HEAD", headers=encoding("gzip"))
        assert head.header("content-encoding") is None
        assert head.header("content-length") == "5"
        assert head.header("vary") == "Accept-Encoding"


def etag_response(body: bytes) -> Response:
    return Response(body, media_type="text/plain", headers={"ETag": '"v1"'})


class TestEntityTags:
    @pytest.mark.parametrize(("coding", "tag"), [("gzip", '"v1-gzip"'), ("zstd", '"v1-zstd"')])
    async def test_a_compressed_body_gets_a_strong_tag_of_its_own(self, coding, tag):
        answer = await call(serve(etag_response(TEXT)), headers=encoding(coding))
        assert answer.header("etag") == tag

    async def test_a_weak_tag_and_an_uncompressed_body_keep_theirs(self):
        weak = Response(TEXT, media_type="text/plain", headers={"ETag": 'W/"v1"'})
        assert (await call(serve(weak), headers=encoding("gzip"))).header("etag") == 'W/"v1"'
        small = await call(serve(etag_response(b"small")), headers=encoding("gzip"))
        assert small.header("etag") == '"v1"'

    async def test_the_app_sees_its_own_tags_in_preconditions(self):
        seen = {}

        async def app(scope: Any, receive: Any, send: Any) -> None:
            seen.update({k.decode(): v.decode() for k, v in scope["headers"]})
            await Response(status_code=304, headers={"ETag": '"v1"'})(scope, receive, send)

        headers = [
            ("Accept-Encoding", "gzip"),
            ("If-None-Match", '"v0-gzip", "v1-gzip"'),
            ("If-Match", '"v1-br"'),
        ]
        answer = await call(CompressionMiddleware(app, min_bytes=MIN), headers=headers)
        assert seen["if-none-match"] == '"v0", "v1"'
        assert seen["if-match"] == '"v1"'
        # The 304 names the tag the client holds, the compressed answer's.
        assert answer.header("etag") == '"v1-gzip"'

    async def test_if_none_match_keeps_another_codings_tag(self):
        seen = {}

        async def app(scope: Any, receive: Any, send: Any) -> None:
            seen.update({k.decode(): v.decode() for k, v in scope["headers"]})
            await etag_response(TEXT)(scope, receive, send)

        headers = [("Accept-Encoding", "br"), ("If-None-Match", '"v1-gzip"')]
        answer = await call(CompressionMiddleware(app, min_bytes=MIN), headers=headers)
        assert seen["if-none-match"] == '"v1-gzip"'  # those bytes are not the ones chosen now
        assert answer.header("etag") == '"v1-br"'


class TestStreams:
    @pytest.mark.parametrize("coding", ["gzip", "br", "zstd"])
    @pytest.mark.parametrize("media_type", ["text/csv", "text/plain"])
    async def test_each_part_is_readable_before_the_next_is_made(self, coding, media_type):
        parts = [f"event {n}: {'x' * n}\n\n".encode() for n in range(1, 40)]
        answer = Answer()
        read_before: list[bytes] = []

        async def produce():
            for part in parts:
                # What the client had decoded when the app made this part.
                read_before.append(b"".join(answer.decoded))
                yield part

        app = serve(StreamingResponse(produce(), media_type=media_type))
        await call(app, headers=encoding(coding), answer=answer)
        assert answer.header("content-encoding") == coding
        assert answer.header("content-length") is None
        assert answer.text.encode() == b"".join(parts)
        for n in range(len(parts)):
            assert read_before[n] == b"".join(parts[:n])
        # One body message per part the app sent, and the end of the stream.
        assert len(answer.parts) == len(parts) + 1

    @pytest.mark.parametrize("coding", ["gzip", "br", "zstd"])
    async def test_an_event_stream_goes_out_plain_part_by_part(self, coding):
        # A compressor per open live stream would cost more memory than it saves.
        parts = [f"data: {n}\n\n".encode() for n in range(5)]

        async def produce():
            for part in parts:
                yield part

        app = serve(StreamingResponse(produce(), media_type="text/event-stream"))
        answer = await call(app, headers=encoding(coding))
        assert answer.header("content-encoding") is None
        assert answer.header("vary") == "Accept-Encoding"
        assert answer.parts[: len(parts)] == parts
