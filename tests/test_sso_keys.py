"""Single sign-on: the identity provider's keys are fetched asynchronously and cached, fetched
again at most once a minute (one fetch shared by concurrent requests), picked up when rotated,
and an unreachable provider costs only the tokens whose keys are not in hand (401, never 500).
The provider is a real HTTP server; its hits are counted."""

import asyncio
import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from httpx import ASGITransport, AsyncClient, Response

from app.core.config import Settings
from app.security.jwks import MAX_AGE, REFETCH_INTERVAL
from tests.sso_provider import (
    DISCOVERY,
    JWKS,
    FakeClock,
    Provider,
    SigningKey,
    b64url,
    keys_loaded,
    running_provider,
    signing_keys,
    with_sso,
)

Keys = dict[str, SigningKey]
A_MINUTE = REFETCH_INTERVAL + 1


@pytest.fixture
def provider() -> Iterator[Provider]:
    with running_provider() as idp:
        yield idp


@pytest.fixture
def sso_keys() -> Keys:
    return signing_keys()


@pytest.fixture
def settings(settings: Settings, provider: Provider) -> Settings:
    return with_sso(settings, provider)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def me(app: Any, token: str) -> Response:
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as client:
        return await client.get("/users/me", headers=bearer(token))


async def loaded(app: Any) -> FakeClock:
    """The app once its start-up fetch is done, its key cache on a clock moved by hand."""
    await keys_loaded(app)
    cache = app.state.oidc.keys
    # Set to when that fetch started: what the once-a-minute rule counts from.
    clock = cache.clock = FakeClock(cache.attempted_at)
    return clock


def with_unknown_kid(provider: Provider, kid: str) -> str:
    header = b64url(json.dumps({"alg": "RS256", "kid": kid, "typ": "JWT"}).encode())
    payload = b64url(json.dumps(provider.claims()).encode())
    return f"{header}.{payload}.{b64url(secrets.token_bytes(256))}"


class TestFetching:
    async def test_start_up_fetches_once_and_concurrent_requests_share_it(
        self, app_with, provider: Provider
    ):
        provider.delay = 0.3  # the first requests arrive while the fetch is under way
        app = await app_with()
        responses = await asyncio.gather(*(me(app, provider.token()) for _ in range(20)))
        assert [r.status_code for r in responses] == [200] * 20
        assert provider.hits[DISCOVERY] == 1
        assert provider.jwks_hits() == 1

    async def test_a_configured_jwks_url_skips_discovery(self, app_with, provider: Provider):
        app = await app_with(oidc_jwks_url=provider.base + JWKS)
        assert (await me(app, provider.token())).status_code == 200
        assert provider.hits[DISCOVERY] == 0
        assert provider.jwks_hits() == 1

    async def test_readiness_reports_the_keys(self, app, client: AsyncClient):
        await loaded(app)
        # (In-memory SQLite is never migrated, so not ready; the check is reported all the same.)
        response = await client.get("/health/ready")
        assert response.json()["checks"]["sso"] == "ok"


class TestUnknownKeyIds:
    async def test_an_unknown_kid_costs_one_refetch_then_401(self, app, provider: Provider):
        clock = await loaded(app)
        clock.advance(A_MINUTE)
        before = provider.jwks_hits()
        assert (await me(app, with_unknown_kid(provider, "nope"))).status_code == 401
        assert provider.jwks_hits() == before + 1
        for kid in ("nope", "another"):
            assert (await me(app, with_unknown_kid(provider, kid))).status_code == 401
        assert provider.jwks_hits() == before + 1

    async def test_no_refetch_within_a_minute_of_the_last_fetch(self, app, provider: Provider):
        clock = await loaded(app)
        clock.advance(REFETCH_INTERVAL - 1)
        before = provider.jwks_hits()
        assert (await me(app, with_unknown_kid(provider, "nope"))).status_code == 401
        assert provider.jwks_hits() == before

    async def test_a_flood_of_random_kids_costs_one_fetch_a_minute(self, app, provider: Provider):
        clock = await loaded(app)
        before = provider.jwks_hits()
        for minute in (1, 2):
            clock.advance(A_MINUTE)
            for _ in range(3):
                tokens = [with_unknown_kid(provider, secrets.token_hex(8)) for _ in range(100)]
                responses = await asyncio.gather(*(me(app, token) for token in tokens))
                assert {r.status_code for r in responses} == {401}
            assert provider.jwks_hits() == before + minute
        # Valid tokens went on working through the flood.
        assert (await me(app, provider.token())).status_code == 200


class TestRotation:
    async def test_a_new_kid_is_picked_up_by_one_refetch(
        self, app, provider: Provider, sso_keys: Keys
    ):
        clock = await loaded(app)
        provider.published = [sso_keys["rsa"], sso_keys["next"]]
        clock.advance(A_MINUTE)
        before = provider.jwks_hits()
        assert (await me(app, provider.token(sso_keys["next"]))).status_code == 200
        assert (await me(app, provider.token(sso_keys["rsa"]))).status_code == 200
        assert provider.jwks_hits() == before + 1

    async def test_a_key_the_provider_dropped_stops_working_after_a_refetch(
        self, app, provider: Provider, sso_keys: Keys
    ):
        clock = await loaded(app)
        provider.published = [sso_keys["next"]]
        clock.advance(A_MINUTE)
        assert (await me(app, provider.token(sso_keys["next"]))).status_code == 200
        assert (await me(app, provider.token(sso_keys["rsa"]))).status_code == 401

    async def test_an_old_key_set_is_refreshed_in_the_background(
        self, app, provider: Provider, sso_keys: Keys
    ):
        clock = await loaded(app)
        provider.published = [sso_keys["next"]]
        clock.advance(MAX_AGE + A_MINUTE)
        before = provider.jwks_hits()
        # Served with the key in hand while the set is fetched again; then it is gone.
        assert (await me(app, provider.token(sso_keys["rsa"]))).status_code == 200
        await keys_loaded(app)
        assert provider.jwks_hits() == before + 1
        assert (await me(app, provider.token(sso_keys["rsa"]))).status_code == 401
        assert (await me(app, provider.token(sso_keys["next"]))).status_code == 200


class TestUnreachableProvider:
    async def test_cached_keys_keep_working_and_others_get_401(
        self, app, client: AsyncClient, provider: Provider, sso_keys: Keys
    ):
        clock = await loaded(app)
        provider.stop()
        clock.advance(MAX_AGE + A_MINUTE)  # a refresh is due, and fails
        assert (await me(app, provider.token())).status_code == 200
        await keys_loaded(app)
        clock.advance(A_MINUTE)
        assert (await me(app, provider.token(sso_keys["next"]))).status_code == 401
        assert (await me(app, provider.token())).status_code == 200
        ready = await client.get("/health/ready")
        assert ready.json()["checks"]["sso"] == "degraded"

    async def test_down_from_the_start_only_its_tokens_get_401(
        self, app_with, provider: Provider, normal_user, token_for
    ):
        provider.stop()
        app = await app_with()
        await keys_loaded(app)
        assert (await me(app, provider.token())).status_code == 401
        assert (await me(app, token_for(normal_user))).status_code == 200

    @pytest.mark.parametrize(
        "document",
        [
            b"not json",
            b"[]",
            b'{"keys": "none"}',
            b'{"keys": []}',
            b'{"keys": [{"kty": "oct", "kid": "rsa-1", "k": "c2VjcmV0"}]}',
            b'{"keys": [{"kty": "RSA", "kid": "rsa-1", "n": "AQAB", "e": "AQAB"}]}',
            b'{"keys": [' + b'{"kty": "RSA"},' * 5 + b"1]}",
            b'{"keys": [{"kty": "EC", "kid": "rsa-1", "crv": "P-256", "x": "!", "y": "?"}]}',
            b"{" + b" " * 300_000 + b"}",
        ],
        ids=[
            "not-json",
            "a-list",
            "keys-not-a-list",
            "no-keys",
            "a-symmetric-key",
            "a-weak-rsa-key",
            "junk-entries",
            "a-broken-ec-key",
            "too-large",
        ],
    )
    async def test_a_bad_key_set_gets_401_not_500(
        self, app_with, provider: Provider, document: bytes
    ):
        provider.jwks_document = document
        app = await app_with()
        await keys_loaded(app)
        assert (await me(app, provider.token())).status_code == 401

    async def test_an_error_answer_gets_401(self, app_with, provider: Provider):
        provider.status = 500
        app = await app_with()
        await keys_loaded(app)
        assert (await me(app, provider.token())).status_code == 401

    async def test_a_discovery_document_of_another_issuer_is_not_believed(
        self, app_with, provider: Provider
    ):
        provider.discovery_issuer = "https://evil.example.com/realms/staff"
        app = await app_with()
        await keys_loaded(app)
        assert (await me(app, provider.token())).status_code == 401
        assert provider.jwks_hits() == 0


class TestRequestLimits:
    async def test_provider_tokens_are_counted_per_identity(self, app_with, provider: Provider):
        app = await app_with(
            rate_limit_enabled=True,
            rate_limit_authenticated="3/minute",
            rate_limit_anonymous="100/minute",
        )
        await keys_loaded(app)
        codes = [(await me(app, provider.token())).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        other = provider.token(sub="another-subject", preferred_username="other.sso")
        assert (await me(app, other)).status_code == 200
