"""Access tokens: `app.security.tokens` itself, and what `GET /users/me` does with forged ones."""

import base64
import hashlib
import hmac
import json
import random
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from httpx import AsyncClient
from jose import jwt
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.accounts.models import User
from app.core.config import Settings
from app.employees.models import Employee
from app.security import tokens
from app.security.tokens import (
    CLOCK_SKEW,
    AccessClaims,
    InvalidTokenError,
    create_access_token,
    decode_access_token,
)
from tests.conftest import SECRET, employee_payload, make_settings

BAD_CREDENTIALS = {"detail": "Could not validate credentials"}
OTHER_SECRET = "another-secret-key-that-is-long-enough-9876543210"
DROP = object()
HS256_HEADER = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=").decode()

TokenBuilder = Callable[[uuid.UUID], str]
SIGN_IN = uuid.UUID("5f0c3a52-8d1e-4b7a-9c2f-1e6d4b8a0f37")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(user_id: uuid.UUID, **changes: Any) -> dict[str, Any]:
    """Claims exactly like the service's own, with some changed or dropped (`DROP`)."""
    now = int(time.time())
    values = {
        "iss": "employee-records-api",
        "aud": "employee-records-api",
        "sub": str(user_id),
        "iat": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
        "type": "access",
        "ver": 0,
        "sid": str(user_id),  # the account's standing sign-in (tests.conftest.standing_sign_in)
    }
    for name, value in changes.items():
        if value is DROP:
            del values[name]
        else:
            values[name] = value
    return values


def sign(user_id: uuid.UUID, **changes: Any) -> str:
    return jwt.encode(claims(user_id, **changes), SECRET, algorithm="HS256")


def sign_raw(payload: bytes, key: str = SECRET) -> str:
    """HS256 over an arbitrary payload, for JSON that `jwt.encode` would never produce."""
    signing_input = f"{HS256_HEADER}.{b64url(payload)}"
    signature = hmac.new(key.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def alg_none(user_id: uuid.UUID) -> str:
    header = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = b64url(json.dumps(claims(user_id)).encode())
    return f"{header}.{payload}."


def now() -> int:
    return int(time.time())


FORGED: dict[str, TokenBuilder] = {
    "alg-none": alg_none,
    "alg-none-with-real-signature": lambda uid: (
        alg_none(uid)[:-1] + "." + sign(uid).rsplit(".", 1)[1]
    ),
    "wrong-key": lambda uid: jwt.encode(claims(uid), OTHER_SECRET, algorithm="HS256"),
    "hs512-when-hs256-configured": lambda uid: jwt.encode(claims(uid), SECRET, algorithm="HS512"),
    "expired": lambda uid: sign(uid, iat=now() - 7200, exp=now() - 3600),
    "missing-exp": lambda uid: sign(uid, exp=DROP),
    "missing-iat": lambda uid: sign(uid, iat=DROP),
    "missing-sub": lambda uid: sign(uid, sub=DROP),
    "iat-far-in-future": lambda uid: sign(uid, iat=now() + 3600, exp=now() + 7200),
    "iat-not-an-integer": lambda uid: sign(uid, iat="yesterday"),
    "sub-not-a-uuid": lambda uid: sign(uid, sub="not-a-uuid"),
    "sub-an-integer": lambda uid: sign(uid, sub=12345),
    "type-refresh": lambda uid: sign(uid, type="refresh"),
    "type-missing": lambda uid: sign(uid, type=DROP),
    "iss-missing": lambda uid: sign(uid, iss=DROP),
    "iss-wrong": lambda uid: sign(uid, iss="someone-else"),
    "iss-a-list": lambda uid: sign(uid, iss=["employee-records-api"]),
    "aud-missing": lambda uid: sign(uid, aud=DROP),
    "aud-wrong": lambda uid: sign(uid, aud="another-api"),
    "aud-list-without-us": lambda uid: sign(uid, aud=["another-api"]),
    "ver-missing": lambda uid: sign(uid, ver=DROP),
    "ver-negative": lambda uid: sign(uid, ver=-1),
    "ver-a-string": lambda uid: sign(uid, ver="0"),
    "ver-a-boolean": lambda uid: sign(uid, ver=False),
    # Before sign-ins had ids, tokens had no `sid`: refused (docs/security.md, "Tokens").
    "sid-missing": lambda uid: sign(uid, sid=DROP),
    "sid-not-a-uuid": lambda uid: sign(uid, sid="not-a-uuid"),
    "sid-an-integer": lambda uid: sign(uid, sid=12345),
    "sid-null": lambda uid: sign(uid, sid=None),
    "crit-header": lambda uid: jwt.encode(
        claims(uid), SECRET, algorithm="HS256", headers={"crit": ["exp"]}
    ),
    "tampered-payload": lambda uid: (
        sign(uid).split(".")[0]
        + "."
        + b64url(json.dumps(claims(uid, sub=str(uuid.uuid4()))).encode())
        + "."
        + sign(uid).split(".")[2]
    ),
    # Signed with the real key but nonsensical; they must still be "invalid", never a crash.
    "exp-infinity": lambda uid: sign_raw(json.dumps(claims(uid, exp=float("inf"))).encode()),
    "iat-infinity": lambda uid: sign_raw(json.dumps(claims(uid, iat=float("inf"))).encode()),
    "nbf-infinity": lambda uid: sign_raw(json.dumps(claims(uid, nbf=float("inf"))).encode()),
    "deeply-nested-payload": lambda uid: sign_raw(b"[" * 2000),
    "payload-not-an-object": lambda uid: sign_raw(b'["sub"]'),
}

GARBAGE = {
    "empty": "",
    "abc": "abc",
    "a.b.c": "a.b.c",
    "dots-only": "..",
    "10kb-of-A": "A" * 10_240,
    "non-ascii": "ünïcødé.tøkén.☃",
    "too-long-but-well-formed": "eyJhbGciOiJIUzI1NiJ9." + "A" * 5000 + ".sig",
}


def bearer(token: str) -> dict[str, bytes]:
    # Bytes, so non-ASCII tokens reach the app as a client would send them.
    return {"Authorization": b"Bearer " + token.encode()}


async def assert_rejected(client: AsyncClient, headers: dict[str, Any]) -> None:
    response = await client.get("/users/me", headers=headers)
    assert response.status_code == 401, response.text
    assert response.json() == BAD_CREDENTIALS
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.fixture
def unit_settings() -> Settings:
    return make_settings("sqlite+aiosqlite://")


class TestCreateAccessToken:
    def test_round_trip_returns_the_user_id(self, unit_settings: Settings) -> None:
        user_id = uuid.uuid4()

        token = create_access_token(user_id, unit_settings, sign_in_id=SIGN_IN)

        assert decode_access_token(token.token, unit_settings) == AccessClaims(user_id, 0, SIGN_IN)

    def test_claims_and_lifetime(self) -> None:
        settings = make_settings("sqlite+aiosqlite://", access_token_expire_minutes=7)
        user_id = uuid.uuid4()

        token = create_access_token(user_id, settings, sign_in_id=SIGN_IN)

        assert token.expires_in == 420
        assert jwt.get_unverified_header(token.token)["alg"] == "HS256"
        decoded = jwt.decode(
            token.token, SECRET, algorithms=["HS256"], audience="employee-records-api"
        )
        assert decoded["sub"] == str(user_id)
        assert decoded["type"] == "access"
        assert decoded["iss"] == decoded["aud"] == "employee-records-api"
        assert decoded["ver"] == 0
        assert decoded["sid"] == str(SIGN_IN)
        assert decoded["exp"] - decoded["iat"] == 420
        assert abs(decoded["iat"] - time.time()) < 5

    def test_each_token_is_unique(self, unit_settings: Settings) -> None:
        user_id = uuid.uuid4()

        first = create_access_token(user_id, unit_settings, sign_in_id=SIGN_IN).token
        second = create_access_token(user_id, unit_settings, sign_in_id=SIGN_IN).token

        assert first != second

    def test_version_is_carried(self, unit_settings: Settings) -> None:
        user_id = uuid.uuid4()

        token = create_access_token(user_id, unit_settings, sign_in_id=SIGN_IN, version=7).token

        assert decode_access_token(token, unit_settings) == AccessClaims(user_id, 7, SIGN_IN)

    @pytest.mark.parametrize("setting", ["jwt_issuer", "jwt_audience"])
    def test_token_for_another_issuer_or_audience_setting_is_refused(self, setting: str) -> None:
        other = make_settings("sqlite+aiosqlite://", **{setting: "some-other-service"})
        ours = make_settings("sqlite+aiosqlite://")
        token = create_access_token(uuid.uuid4(), other, sign_in_id=SIGN_IN).token

        with pytest.raises(InvalidTokenError):
            decode_access_token(token, ours)
        assert decode_access_token(token, other)

    def test_token_signed_for_another_algorithm_setting_is_refused(self) -> None:
        hs512 = make_settings("sqlite+aiosqlite://", jwt_algorithm="HS512")
        hs256 = make_settings("sqlite+aiosqlite://")
        token = create_access_token(uuid.uuid4(), hs512, sign_in_id=SIGN_IN).token

        with pytest.raises(InvalidTokenError):
            decode_access_token(token, hs256)


class TestDecodeAccessToken:
    def test_service_style_claims_are_accepted(self, unit_settings: Settings) -> None:
        user_id = uuid.uuid4()

        expected = AccessClaims(user_id, 0, sign_in_id=user_id)
        assert decode_access_token(sign(user_id), unit_settings) == expected

    def test_small_clock_skew_is_tolerated(self, unit_settings: Settings) -> None:
        user_id = uuid.uuid4()
        token = sign(user_id, iat=now() + 10, exp=now() + 600)

        assert decode_access_token(token, unit_settings).user_id == user_id

    def test_a_remembered_token_still_expires(
        self, unit_settings: Settings, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        user_id = uuid.uuid4()
        expires_at = now() + 60
        token = sign(user_id, exp=expires_at)
        assert decode_access_token(token, unit_settings).user_id == user_id  # now cached

        later = expires_at + CLOCK_SKEW.total_seconds() + 1
        monkeypatch.setattr(tokens.time, "time", lambda: later)

        with pytest.raises(InvalidTokenError):
            decode_access_token(token, unit_settings)

    def test_a_remembered_token_is_verified_again_under_another_secret(
        self, unit_settings: Settings
    ) -> None:
        token = sign(uuid.uuid4())
        assert decode_access_token(token, unit_settings)
        rotated = make_settings("sqlite+aiosqlite://", jwt_secret_key=OTHER_SECRET)

        with pytest.raises(InvalidTokenError):
            decode_access_token(token, rotated)

    def test_a_refused_token_is_refused_every_time(self, unit_settings: Settings) -> None:
        token = FORGED["wrong-key"](uuid.uuid4())
        for _ in range(3):
            with pytest.raises(InvalidTokenError):
                decode_access_token(token, unit_settings)

    @pytest.mark.parametrize("name", list(FORGED))
    def test_forged_token_raises_invalid_token_error(
        self, unit_settings: Settings, name: str
    ) -> None:
        token = FORGED[name](uuid.uuid4())

        with pytest.raises(InvalidTokenError):
            decode_access_token(token, unit_settings)

    @pytest.mark.parametrize("name", list(GARBAGE))
    def test_garbage_raises_invalid_token_error(self, unit_settings: Settings, name: str) -> None:
        with pytest.raises(InvalidTokenError):
            decode_access_token(GARBAGE[name], unit_settings)


class TestForgedTokens:
    async def test_genuine_token_is_accepted(self, client: AsyncClient, normal_user: User) -> None:
        # The control for everything below: the same claims, correctly signed, work.
        response = await client.get("/users/me", headers=bearer(sign(normal_user.id)))

        assert response.status_code == 200
        assert response.json()["id"] == str(normal_user.id)

    @pytest.mark.parametrize("name", list(FORGED))
    async def test_forged_token_gets_401(
        self, client: AsyncClient, normal_user: User, name: str
    ) -> None:
        await assert_rejected(client, bearer(FORGED[name](normal_user.id)))

    @pytest.mark.parametrize("name", list(GARBAGE))
    async def test_garbage_token_gets_401(
        self, client: AsyncClient, normal_user: User, name: str
    ) -> None:
        await assert_rejected(client, bearer(GARBAGE[name]))

    @pytest.mark.parametrize("template", ["{token}", "Token {token}", "Basic {token}"])
    async def test_valid_token_without_bearer_scheme_gets_401(
        self,
        client: AsyncClient,
        normal_user: User,
        token_for: Callable[[User], str],
        template: str,
    ) -> None:
        headers = {"Authorization": template.format(token=token_for(normal_user))}

        response = await client.get("/users/me", headers=headers)

        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json() == {"detail": "Not authenticated"}

    async def test_token_of_a_deleted_user_gets_401(
        self,
        client: AsyncClient,
        make_user: Callable[..., Any],
        token_for: Callable[[User], str],
        session: AsyncSession,
    ) -> None:
        user = await make_user("short.lived")
        headers = bearer(token_for(user))
        assert (await client.get("/users/me", headers=headers)).status_code == 200

        row = await session.get(User, user.id)
        await session.delete(row)
        await session.commit()

        await assert_rejected(client, headers)

    async def test_token_with_a_stale_version_gets_401(
        self, client: AsyncClient, normal_user: User, session: AsyncSession
    ) -> None:
        # Valid in itself (decode accepts it); only the account's version makes it stale.
        row = await session.get(User, normal_user.id)
        assert row is not None
        row.token_version = 3
        await session.commit()
        assert (
            await client.get("/users/me", headers=bearer(sign(normal_user.id, ver=3)))
        ).is_success

        for stale in (0, 2, 4):
            await assert_rejected(client, bearer(sign(normal_user.id, ver=stale)))

    async def test_token_for_an_unknown_uuid_gets_401(
        self, client: AsyncClient, normal_user: User
    ) -> None:
        await assert_rejected(client, bearer(sign(uuid.uuid4())))

    async def test_token_of_an_unknown_sign_in_gets_401(
        self, client: AsyncClient, normal_user: User
    ) -> None:
        await assert_rejected(client, bearer(sign(normal_user.id, sid=str(uuid.uuid4()))))

    async def test_token_naming_another_accounts_sign_in_gets_401(
        self, client: AsyncClient, normal_user: User, admin_user: User
    ) -> None:
        # Signed with the real key: only the account check can tell the sign-in is not theirs.
        await assert_rejected(client, bearer(sign(normal_user.id, sid=str(admin_user.id))))


class TestAccessFollowsTheUserRow:
    async def test_deactivated_user_gets_401_at_once(
        self,
        normal_user_client: AsyncClient,
        normal_user: User,
        session: AsyncSession,
    ) -> None:
        assert (await normal_user_client.get("/users/me")).status_code == 200

        row = await session.get(User, normal_user.id)
        assert row is not None
        row.is_active = False
        await session.commit()

        response = await normal_user_client.get("/users/me")
        assert response.status_code == 401
        assert response.json() == BAD_CREDENTIALS
        assert response.headers["www-authenticate"] == "Bearer"

    async def test_demoted_admin_gets_403_on_admin_endpoint(
        self,
        admin_user_client: AsyncClient,
        admin_user: User,
        session: AsyncSession,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        created = await admin_user_client.post("/employees/", json=employee_payload(1001))
        assert created.status_code == 201

        row = await session.get(User, admin_user.id)
        assert row is not None
        row.role = "user"
        await session.commit()

        response = await admin_user_client.post("/employees/", json=employee_payload(1002))

        assert response.status_code == 403
        assert response.json() == {"detail": "Administrator privileges are required"}
        async with sessionmaker() as fresh:
            emp_ids = (await fresh.execute(select(Employee.emp_id))).scalars().all()
        assert emp_ids == [1001]


class TestTokenFuzz:
    async def test_random_tokens_always_get_401(
        self, client: AsyncClient, normal_user: User
    ) -> None:
        rng = random.Random(1234)
        genuine = sign(normal_user.id)
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
        odd_values: list[Any] = [
            None,
            True,
            0,
            -1,
            1.5,
            2**63,
            10**400,
            "",
            "x",
            [],
            {},
            float("inf"),
            float("nan"),
            str(uuid.uuid4()),
            now(),
            now() + 60,
            now() - 3600,
            now() + 86400,
        ]

        def random_token() -> bytes:
            kind = rng.randrange(5)
            if kind == 0:  # arbitrary bytes, minus the CR, LF and NUL no HTTP header can carry
                raw = bytes(rng.randrange(256) for _ in range(rng.randrange(300)))
                return raw.replace(b"\r", b"").replace(b"\n", b"").replace(b"\x00", b"")
            if kind == 1:  # printable text
                length = rng.randrange(300)
                return "".join(chr(rng.randrange(32, 127)) for _ in range(length)).encode()
            if kind == 2:  # JWT-shaped base64url noise
                parts = [rng.randbytes(rng.randrange(80)) for _ in range(rng.randrange(1, 5))]
                return ".".join(b64url(p) for p in parts).encode()
            if kind == 3:  # the genuine token with one character changed (not the last one,
                # whose low bits are base64 padding that decoders ignore)
                position = rng.randrange(len(genuine) - 1)
                char = rng.choice(alphabet.replace(genuine[position], ""))
                return (genuine[:position] + char + genuine[position + 1 :]).encode()
            # correctly signed, but every claim drawn from odd values and no real subject
            payload = {
                name: rng.choice(odd_values)
                for name in ("sub", "iat", "exp", "nbf", "type", "sid")
                if rng.random() < 0.8
            }
            return sign_raw(json.dumps(payload).encode()).encode()

        statuses = []
        for _ in range(200):
            token = random_token()
            response = await client.get("/users/me", headers={"Authorization": b"Bearer " + token})
            statuses.append((response.status_code, token[:60]))

        assert [s for s in statuses if s[0] != 401] == []
        assert (await client.get("/users/me", headers=bearer(genuine))).status_code == 200
