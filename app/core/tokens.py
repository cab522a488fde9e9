"""JWT access tokens: every encode and decode in the service goes through this module.

python-jose verifies the signature and `exp` when present; the rest is checked here: the
algorithm is pinned (never `none`, never one the header picks), `exp`, `iat` and `sub` are
required, `iat` may not lie in the future, the token type must be "access", and a token of
absurd size is refused before any parsing.
"""

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from jose import jwt
from jose.exceptions import JOSEError

from app.core.config import Settings

TOKEN_TYPE = "access"  # noqa: S105 (a claim value, not a secret)
MAX_TOKEN_LENGTH = 4096
CLOCK_SKEW = timedelta(seconds=30)


class InvalidTokenError(Exception):
    """The token is missing, malformed, forged, expired or of the wrong kind."""


@dataclass(frozen=True)
class AccessToken:
    token: str
    expires_in: int


def create_access_token(user_id: uuid.UUID, settings: Settings) -> AccessToken:
    now = datetime.now(UTC)
    lifetime = timedelta(minutes=settings.access_token_expire_minutes)
    claims = {
        "sub": str(user_id),
        "iat": int(now.timestamp()),
        "exp": int((now + lifetime).timestamp()),
        "jti": uuid.uuid4().hex,
        "type": TOKEN_TYPE,
    }
    secret = settings.jwt_secret_key.get_secret_value()
    token = jwt.encode(claims, secret, algorithm=settings.jwt_algorithm)
    return AccessToken(token=token, expires_in=int(lifetime.total_seconds()))


def decode_access_token(token: str, settings: Settings) -> uuid.UUID:
    """Return the user id the token was issued to, or raise InvalidTokenError."""
    if not token or len(token) > MAX_TOKEN_LENGTH or not token.isascii():
        raise InvalidTokenError("malformed token")
    try:
        header = jwt.get_unverified_header(token)
        if header.get("alg") != settings.jwt_algorithm or "crit" in header:
            raise InvalidTokenError("unexpected token header")
        claims = jwt.decode(
            token,
            settings.jwt_secret_key.get_secret_value(),
            algorithms=[settings.jwt_algorithm],
            options={
                "require_exp": True,
                "require_iat": True,
                "require_sub": True,
                "verify_aud": False,
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
    return _check_claims(claims)


def _check_claims(claims: dict[str, object]) -> uuid.UUID:
    issued_at = claims.get("iat")
    if not isinstance(issued_at, int) or isinstance(issued_at, bool):
        raise InvalidTokenError("invalid iat")
    if issued_at > datetime.now(UTC).timestamp() + CLOCK_SKEW.total_seconds():
        raise InvalidTokenError("token issued in the future")
    if claims.get("type") != TOKEN_TYPE:
        raise InvalidTokenError("not an access token")
    subject = claims.get("sub")
    if not isinstance(subject, str):
        raise InvalidTokenError("invalid subject")
    try:
        return uuid.UUID(subject)
    except ValueError as error:
        raise InvalidTokenError("invalid subject") from error
