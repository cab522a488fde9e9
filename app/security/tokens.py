"""Tokens: every JWT encode and decode in the service (pinned algorithm, required claims), and
the opaque refresh tokens, of which only a SHA-256 digest is stored.
"""

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from jose import jwt
from jose.exceptions import JOSEError

from app.core.config import Settings

TOKEN_TYPE = "access"  # noqa: S105 (a claim value, not a secret)
MAX_TOKEN_LENGTH = 4096
CLOCK_SKEW = timedelta(seconds=30)
REFRESH_TOKEN_BYTES = 32
# Verified access tokens remembered per worker (about 1 KB each).
VERIFIED_TOKEN_CACHE_SIZE = 4096


class InvalidTokenError(Exception):
    """The token is missing, malformed, forged, expired or of the wrong kind."""


@dataclass(frozen=True)
class AccessToken:
    token: str
    expires_in: int
    accepted_until: datetime  # `exp` and the clock skew allowed past it


@dataclass(frozen=True)
class AccessClaims:
    user_id: uuid.UUID
    version: int
    # `sid`: the sign-in the token belongs to; None for the identity provider's tokens (single
    # sign-on), which have no sign-in here. The service's own tokens always carry one.
    sign_in_id: uuid.UUID | None


@dataclass(frozen=True)
class RefreshToken:
    token: str
    token_hash: str
    expires_at: datetime
    expires_in: int


def create_access_token(
    user_id: uuid.UUID, settings: Settings, *, sign_in_id: uuid.UUID, version: int = 0
) -> AccessToken:
    """Sign an access token of the sign-in `sign_in_id`; `version` is the account's current
    `token_version`."""
    now = datetime.now(UTC)
    lifetime = timedelta(minutes=settings.access_token_expire_minutes)
    expires_at = int((now + lifetime).timestamp())
    claims = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": str(user_id),
        "iat": int(now.timestamp()),
        "exp": expires_at,
        "jti": uuid.uuid4().hex,
        "type": TOKEN_TYPE,
        "ver": version,
        "sid": str(sign_in_id),
    }
    secret = settings.jwt_secret_key.get_secret_value()
    token = jwt.encode(claims, secret, algorithm=settings.jwt_algorithm)
    accepted_until = datetime.fromtimestamp(expires_at, UTC) + CLOCK_SKEW
    return AccessToken(token, int(lifetime.total_seconds()), accepted_until)


def decode_access_token(token: str, settings: Settings) -> AccessClaims:
    """Whom the token was issued to, at which token version, or raise. Verified tokens are
    cached (verifying costs more than the rest of a small request); expiry is checked each call."""
    if not token or len(token) > MAX_TOKEN_LENGTH or not token.isascii():
        raise InvalidTokenError("malformed token")
    claims, expires_at = _verify(
        token,
        settings.jwt_secret_key.get_secret_value(),
        settings.jwt_algorithm,
        settings.jwt_audience,
        settings.jwt_issuer,
    )
    if expires_at + CLOCK_SKEW.total_seconds() < time.time():
        raise InvalidTokenError("expired token")
    return claims


@lru_cache(maxsize=VERIFIED_TOKEN_CACHE_SIZE)
def _verify(
    token: str, secret: str, algorithm: str, audience: str, issuer: str
) -> tuple[AccessClaims, int]:
    """The token's claims and expiry, once its signature and claims are verified (cached:
    errors are raised again on every call, successes are remembered)."""
    try:
        header = jwt.get_unverified_header(token)
        if header.get("alg") != algorithm or "crit" in header:
            raise InvalidTokenError("unexpected token header")
        claims = jwt.decode(
            token,
            secret,
            algorithms=[algorithm],
            audience=audience,
            issuer=issuer,
            options={
                "require_exp": True,
                "require_iat": True,
                "require_sub": True,
                # jose skips `aud` and `iss` when they are absent unless they are required.
                "require_aud": True,
                "require_iss": True,
                "leeway": int(CLOCK_SKEW.total_seconds()),
            },
        )
    # jose raises its own errors for most defects, but some malformed inputs surface as
    # ValueError/TypeError/KeyError from the base64 and JSON layers; all of them mean "invalid".
    except (
        JOSEError,
        ValueError,
        TypeError,
        KeyError,
        AttributeError,
        OverflowError,
        RecursionError,
    ) as error:
        raise InvalidTokenError("invalid token") from error
    expires_at = claims.get("exp")
    if not isinstance(expires_at, int) or isinstance(expires_at, bool):
        raise InvalidTokenError("invalid exp")
    return _check_claims(claims, issuer), expires_at


def _check_claims(claims: dict[str, object], issuer: str) -> AccessClaims:
    issued_at = claims.get("iat")
    if not isinstance(issued_at, int) or isinstance(issued_at, bool):
        raise InvalidTokenError("invalid iat")
    if issued_at > datetime.now(UTC).timestamp() + CLOCK_SKEW.total_seconds():
        raise InvalidTokenError("token issued in the future")
    if claims.get("iss") != issuer:
        raise InvalidTokenError("wrong issuer")
    if claims.get("type") != TOKEN_TYPE:
        raise InvalidTokenError("not an access token")
    version = claims.get("ver")
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise InvalidTokenError("invalid token version")
    return AccessClaims(
        user_id=_uuid_claim(claims, "sub"),
        version=version,
        # Tokens from before sign-ins had ids have none: refused, so that no token outlives
        # the sign-out of its sign-in (docs/security.md, "Tokens").
        sign_in_id=_uuid_claim(claims, "sid"),
    )


def _uuid_claim(claims: dict[str, object], name: str) -> uuid.UUID:
    value = claims.get(name)
    if not isinstance(value, str):
        raise InvalidTokenError(f"invalid {name}")
    try:
        return uuid.UUID(value)
    except ValueError as error:
        raise InvalidTokenError(f"invalid {name}") from error


def create_refresh_token(settings: Settings) -> RefreshToken:
    """A fresh opaque refresh token and the digest under which it is stored."""
    token = secrets.token_urlsafe(REFRESH_TOKEN_BYTES)
    lifetime = timedelta(days=settings.refresh_token_expire_days)
    return RefreshToken(
        token=token,
        token_hash=hash_refresh_token(token),
        expires_at=datetime.now(UTC) + lifetime,
        expires_in=int(lifetime.total_seconds()),
    )


def hash_refresh_token(token: str) -> str:
    # A plain digest suffices: the token has 256 random bits, so there is nothing to brute-force,
    # and a deterministic digest lets the database find the row by its unique index.
    return hashlib.sha256(token.encode()).hexdigest()
