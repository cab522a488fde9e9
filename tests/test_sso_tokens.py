"""Single sign-on: the identity provider's access tokens are accepted beside the service's own,
and every forgery of them is a 401 (never a 500), whatever it claims."""

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from httpx import ASGITransport, AsyncClient, Response
from jose import jws
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.accounts.models import User
from app.core.config import Settings
from app.security.oidc import OidcVerifier
from app.security.tokens import InvalidTokenError
from tests.conftest import make_settings
from tests.sso_provider import (
    AUDIENCE,
    DROP,
    Provider,
    SigningKey,
    b64url,
    running_provider,
    signing_keys,
    with_sso,
)

BAD_CREDENTIALS = {"detail": "Could not validate credentials"}
Keys = dict[str, SigningKey]


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


async def me(client: AsyncClient, token: str) -> Response:
    # Bytes: a header of non-ASCII garbage goes out as it is.
    return await client.get("/users/me", headers={"Authorization": f"Bearer {token}".encode()})


async def accounts(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as session:
        return (await session.execute(select(func.count()).select_from(User))).scalar_one()


def now() -> int:
    return int(time.time())


def unsigned(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    parts = [b64url(json.dumps(part).encode()) for part in (header, claims)]
    return ".".join([*parts, b64url(signature)])


def hmac_signed(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    """HS256 with the given bytes as the secret: the algorithm-confusion attack."""
    signing_input = ".".join(b64url(json.dumps(part).encode()) for part in (header, claims))
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def rs256_over(idp: Provider, key: SigningKey, raw_claims: bytes) -> str:
    """A real RS256 signature over a payload `jwt.encode` would never produce."""
    header = {"alg": key.algorithm, "kid": key.kid, "typ": "JWT"}
    return str(jws.sign(raw_claims, key.private_pem, headers=header, algorithm=key.algorithm))


class TestAccepted:
    async def test_an_rs256_token_of_the_provider_signs_in(self, client, provider, sessionmaker):
        response = await me(client, provider.token())
        assert response.status_code == 200, response.text
        assert response.json()["username"] == "jane.sso"
        assert response.json()["is_admin"] is False
        assert await accounts(sessionmaker) == 1

    async def test_an_es256_token_signs_in_too(self, client, provider, sso_keys: Keys):
        response = await me(client, provider.token(sso_keys["ec"]))
        assert response.status_code == 200, response.text

    async def test_an_audience_list_naming_this_api_is_accepted(self, client, provider):
        response = await me(client, provider.token(aud=["another-api", AUDIENCE]))
        assert response.status_code == 200

    async def test_rfc9068_at_jwt_type_is_accepted(self, client, provider):
        response = await me(client, provider.token(headers={"typ": "at+jwt"}))
        assert response.status_code == 200

    async def test_the_service_own_tokens_still_work_beside_sso(
        self, normal_user_client: AsyncClient
    ):
        response = await normal_user_client.get("/users/me")
        assert response.status_code == 200
        assert response.json()["username"] == "jane.doe"

    async def test_within_the_leeway_an_expired_or_early_token_is_accepted(self, client, provider):
        assert (await me(client, provider.token(exp=now() - 30))).status_code == 200
        assert (await me(client, provider.token(nbf=now() + 30))).status_code == 200

    async def test_the_employee_read_fast_path_takes_them(self, client, provider):
        response = await client.get(
            "/employees/1", headers={"Authorization": f"Bearer {provider.token()}"}
        )
        assert response.status_code == 404  # signed in: the record simply does not exist


# Each builds a token from the provider, its keys and the service's settings.
Forgery = Callable[[Provider, Keys], str]
FORGERIES: dict[str, Forgery] = {
    "alg-none": lambda idp, keys: unsigned({"alg": "none", "kid": "rsa-1"}, idp.claims()),
    "alg-none-with-a-real-signature": lambda idp, keys: (
        unsigned({"alg": "none", "kid": "rsa-1"}, idp.claims())[:-1] + idp.token().split(".")[2]
    ),
    "hs256-with-the-public-pem-as-secret": lambda idp, keys: hmac_signed(
        {"alg": "HS256", "kid": "rsa-1", "typ": "JWT"}, idp.claims(), keys["rsa"].public_pem
    ),
    "hs256-with-the-public-jwk-as-secret": lambda idp, keys: hmac_signed(
        {"alg": "HS256", "kid": "rsa-1"}, idp.claims(), json.dumps(keys["rsa"].jwk).encode()
    ),
    "hs256-with-the-modulus-as-secret": lambda idp, keys: hmac_signed(
        {"alg": "HS256", "kid": "rsa-1"}, idp.claims(), keys["rsa"].jwk["n"].encode()
    ),
    "foreign-issuer": lambda idp, keys: idp.token(iss="https://evil.example.com/realms/staff"),
    "issuer-with-trailing-slash": lambda idp, keys: idp.token(iss=idp.issuer + "/"),
    "issuer-missing": lambda idp, keys: idp.token(iss=DROP),
    "wrong-audience": lambda idp, keys: idp.token(aud="another-api"),
    "audience-list-without-us": lambda idp, keys: idp.token(aud=["another-api"]),
    "audience-missing": lambda idp, keys: idp.token(aud=DROP),
    "expired": lambda idp, keys: idp.token(iat=now() - 3600, exp=now() - 61),
    "not-yet-valid": lambda idp, keys: idp.token(nbf=now() + 120),
    "issued-in-the-future": lambda idp, keys: idp.token(iat=now() + 120, exp=now() + 600),
    "exp-missing": lambda idp, keys: idp.token(exp=DROP),
    "sub-missing": lambda idp, keys: idp.token(sub=DROP),
    "sub-empty": lambda idp, keys: idp.token(sub=""),
    "sub-too-long": lambda idp, keys: idp.token(sub="s" * 256),
    "sub-an-integer": lambda idp, keys: idp.token(sub=12345),
    "sub-with-a-control-character": lambda idp, keys: idp.token(sub="a\x00b"),
    "signed-by-a-foreign-key-with-our-kid": lambda idp, keys: idp.token(keys["foreign"]),
    "rs256-header-on-the-ec-key": lambda idp, keys: idp.token(keys["rsa"], headers={"kid": "ec-1"}),
    "es256-header-on-the-rsa-key": lambda idp, keys: unsigned(
        {"alg": "ES256", "kid": "rsa-1"}, idp.claims(), b"x" * 64
    ),
    "kid-missing": lambda idp, keys: unsigned({"alg": "RS256"}, idp.claims(), b"x" * 256),
    "kid-not-a-string": lambda idp, keys: unsigned(
        {"alg": "RS256", "kid": 1}, idp.claims(), b"x" * 256
    ),
    "tampered-payload": lambda idp, keys: ".".join(
        [
            idp.token().split(".")[0],
            b64url(json.dumps(idp.claims(sub="someone-else")).encode()),
            idp.token().split(".")[2],
        ]
    ),
    "crit-header": lambda idp, keys: idp.token(headers={"crit": ["exp"]}),
    "an-id-token-of-keycloak": lambda idp, keys: idp.token(typ="ID"),
    "an-id-token-type-header": lambda idp, keys: idp.token(headers={"typ": "id_token+jwt"}),
    "at-hash-of-an-id-token": lambda idp, keys: idp.token(at_hash="abc"),
    "rs384-not-allowed": lambda idp, keys: unsigned(
        {"alg": "RS384", "kid": "rsa-1"}, idp.claims(), b"x" * 256
    ),
    "ps256-not-allowed": lambda idp, keys: unsigned(
        {"alg": "PS256", "kid": "rsa-1"}, idp.claims(), b"x" * 256
    ),
    # Signed for real but nonsensical: still invalid, never a crash.
    "exp-infinity": lambda idp, keys: rs256_over(
        idp, keys["rsa"], json.dumps(idp.claims(exp=float("inf"))).encode()
    ),
    "exp-nan": lambda idp, keys: rs256_over(
        idp, keys["rsa"], json.dumps(idp.claims(exp=float("nan"))).encode()
    ),
    "exp-a-string": lambda idp, keys: idp.token(exp="tomorrow"),
    "payload-not-an-object": lambda idp, keys: rs256_over(idp, keys["rsa"], b'["sub"]'),
    "payload-not-json": lambda idp, keys: rs256_over(idp, keys["rsa"], b"\xff\xfe"),
    "deeply-nested-payload": lambda idp, keys: rs256_over(idp, keys["rsa"], b"[" * 2000),
}

GARBAGE = {
    "a.b.c": "a.b.c",
    "header-not-an-object": b64url(b"[1]") + ".e30.c2ln",
    "header-not-json": b64url(b"{alg") + ".e30.c2ln",
    "rs256-header-garbage-rest": b64url(b'{"alg":"RS256","kid":"rsa-1"}') + ".!!!.???",
    "rs256-header-16kb": b64url(b'{"alg":"RS256","kid":"rsa-1"}') + "." + "A" * 17_000 + ".x",
    "non-ascii": b64url(b'{"alg":"RS256","kid":"rsa-1"}') + ".ünï.☃",
}


class TestRefused:
    @pytest.mark.parametrize("forgery", FORGERIES.values(), ids=FORGERIES.keys())
    async def test_forged_or_invalid_tokens_get_401_and_create_nothing(
        self, client, provider, sso_keys: Keys, sessionmaker, forgery: Forgery
    ):
        response = await me(client, forgery(provider, sso_keys))
        assert response.status_code == 401, response.text
        assert response.json() == BAD_CREDENTIALS
        assert response.headers["www-authenticate"] == "Bearer"
        assert await accounts(sessionmaker) == 0

    @pytest.mark.parametrize("token", GARBAGE.values(), ids=GARBAGE.keys())
    async def test_garbage_gets_401(self, client, token: str):
        response = await me(client, token)
        assert response.status_code == 401
        assert response.json() == BAD_CREDENTIALS

    async def test_a_provider_token_naming_a_local_account_id_is_not_that_account(
        self, client, provider, admin_user: User
    ):
        response = await me(client, provider.token(sub=str(admin_user.id), preferred_username=None))
        assert response.status_code == 200
        assert response.json()["id"] != str(admin_user.id)
        assert response.json()["is_admin"] is False

    async def test_an_own_format_token_signed_by_the_provider_is_not_ours(
        self, client, provider, settings: Settings, normal_user: User
    ):
        token = provider.token(
            iss=settings.jwt_issuer, aud=settings.jwt_audience, sub=str(normal_user.id)
        )
        assert (await me(client, token)).status_code == 401


class TestWithoutSso:
    async def test_provider_tokens_are_refused_when_sso_is_off(self, app_with, provider):
        app = await app_with(oidc_issuer=None, oidc_audience=None, oidc_role_map={})
        async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as plain:
            response = await me(plain, provider.token())
        assert response.status_code == 401
        assert provider.jwks_hits() == 0


class TestVerifier:
    """The verifier alone: what never reaches an account."""

    def verifier(self, provider: Provider) -> OidcVerifier:
        settings = make_settings("sqlite+aiosqlite://", **provider.settings())
        return OidcVerifier(settings)

    async def test_hs256_is_never_the_provider_s_even_with_its_issuer(self, provider, sso_keys):
        verifier = self.verifier(provider)
        header = {"alg": "HS256", "kid": "rsa-1"}
        token = hmac_signed(header, provider.claims(), sso_keys["rsa"].public_pem)
        assert not verifier.issued(token)
        with pytest.raises(InvalidTokenError):
            await verifier.verify(token)
        await verifier.aclose()

    async def test_cached_verification_never_fetches(self, provider):
        verifier = self.verifier(provider)
        assert verifier.verify_cached(provider.token()) is None
        assert provider.jwks_hits() == 0
        assert (await verifier.verify(provider.token())).subject.startswith("f3b0")
        assert verifier.verify_cached(provider.token()) is not None
        await verifier.aclose()
