"""Compression headers across the real app: Vary on every answer (errors and refusals included),
the docs assets (HEAD, 304), a malformed Accept-Encoding, and the settings."""

import pytest
from httpx import ASGITransport, AsyncClient

from app.http.docs import REDOC_JS, STATIC_URL
from tests.conftest import employee_payload

ASSET = f"{STATIC_URL}/swagger-ui-bundle.js"


def vary_fields(response) -> list[str]:
    values = response.headers.get_list("vary")
    return [field.strip().lower() for value in values for field in value.split(",")]


class TestVaryEverywhere:
    @pytest.mark.parametrize("accept", ["gzip", "identity", None])
    @pytest.mark.parametrize(
        ("method", "url", "status"),
        [
            ("GET", "/health/live", 200),  # small
            ("GET", "/openapi.json", 200),  # large
            ("GET", "/docs", 200),
            ("GET", "/employees/", 401),
            ("GET", "/employees/4242", 401),
            ("DELETE", "/health/live", 405),
            ("GET", "/nowhere", 404),
            ("GET", ASSET, 200),
        ],
    )
    async def test_every_answer_varies_on_accept_encoding_once(
        self, client, method, url, status, accept
    ):
        headers = {"Accept-Encoding": accept} if accept is not None else {}
        if accept is None:
            client.headers.pop("accept-encoding", None)  # httpx sends one by default
        response = await client.request(method, url, headers=headers)
        assert response.status_code == status
        assert vary_fields(response).count("accept-encoding") == 1
        assert response.headers["x-content-type-options"] == "nosniff"  # the other layers too

    async def test_errors_of_a_signed_in_client_and_refused_bodies(self, admin_user_client):
        missing = await admin_user_client.get(
            "/employees/4242", headers={"Accept-Encoding": "gzip"}
        )
        invalid = await admin_user_client.get("/employees/?limit=abc")
        too_large = await admin_user_client.post(
            "/employees/", content=b"x", headers={"Content-Length": str(10**9)}
        )
        assert [missing.status_code, invalid.status_code, too_large.status_code] == [404, 422, 413]
        for response in (missing, invalid, too_large):
            assert vary_fields(response).count("accept-encoding") == 1

    async def test_a_refused_host_and_a_cors_answer_merge_their_vary(self, app_with):
        app = await app_with(trusted_hosts=["api.example.com"], cors_origins=["https://ui.test"])
        async with AsyncClient(transport=ASGITransport(app=app), base_url="http://wrong") as c:
            refused = await c.get("/health/live")
            assert refused.status_code == 400
            assert vary_fields(refused) == ["accept-encoding"]
        async with AsyncClient(
            transport=ASGITransport(app=app), base_url="http://api.example.com"
        ) as c:
            cors = await c.get("/health/live", headers={"Origin": "https://ui.test"})
            assert cors.status_code == 200
            assert cors.headers["access-control-allow-origin"] == "https://ui.test"
            assert sorted(vary_fields(cors)) == ["accept-encoding", "origin"]


class TestRealAnswers:
    @pytest.mark.parametrize("garbage", ["gzip;q=banana", b"\xe9\xe8;;q", "*;q=9, br;q=-"])
    async def test_a_malformed_accept_encoding_gets_the_plain_answer(self, client, garbage):
        response = await client.get("/openapi.json", headers={"Accept-Encoding": garbage})
        assert response.status_code == 200
        assert "content-encoding" not in response.headers
        assert response.json()["info"]["title"] == "Employee Records API"

    @pytest.mark.parametrize("url", [ASSET, f"{STATIC_URL}/{REDOC_JS}"])
    async def test_a_docs_asset_is_compressed_and_revalidated_with_its_tag(self, client, url):
        headers = {"Accept-Encoding": "br"}
        first = await client.get(url, headers=headers)
        assert first.headers["content-encoding"] == "br"
        assert first.headers["etag"].endswith('-br"')
        again = await client.get(url, headers=headers | {"If-None-Match": first.headers["etag"]})
        assert again.status_code == 304
        assert again.headers["etag"] == first.headers["etag"]

    async def test_head_of_a_docs_asset_says_what_get_says(self, client):
        headers = {"Accept-Encoding": "gzip"}
        get = await client.get(ASSET, headers=headers)
        head = await client.head(ASSET, headers=headers)
        assert head.status_code == get.status_code == 200
        for name in ("content-encoding", "etag", "vary", "content-type"):
            assert head.headers[name] == get.headers[name]
        assert "content-length" not in head.headers
        assert head.content == b""

    async def test_a_small_record_is_not_compressed(self, admin_user_client):
        await admin_user_client.post("/employees/", json=employee_payload(4242))
        response = await admin_user_client.get(
            "/employees/4242", headers={"Accept-Encoding": "gzip"}
        )
        assert "content-encoding" not in response.headers
        assert response.headers["vary"] == "Accept-Encoding"
        assert not response.headers["etag"].endswith('-gzip"')


class TestSettings:
    async def test_compression_can_be_turned_off(self, app_with):
        app = await app_with(compression_enabled=False)
        async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as c:
            response = await c.get("/openapi.json", headers={"Accept-Encoding": "gzip"})
        assert "content-encoding" not in response.headers
        assert "vary" not in response.headers

    async def test_the_minimum_size_is_a_setting(self, app_with):
        app = await app_with(compression_min_bytes=1_000_000)
        async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as c:
            response = await c.get("/openapi.json", headers={"Accept-Encoding": "gzip"})
        assert "content-encoding" not in response.headers
        assert response.headers["vary"] == "Accept-Encoding"
