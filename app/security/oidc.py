"""Single sign-on: access tokens of the organisation's identity provider (OpenID Connect), told
apart from the service's own and verified against the provider's published keys. Which account
a verified token names is the accounts domain's business (app.accounts.sso).
"""

import time
import unicodedata
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal, TypeGuard

from jose import jwt
from jose.exceptions import JOSEError

from app.core.config import Settings
from app.security.jwks import MAX_KID_LENGTH, HttpKeySource, JwksCache, SigningKey
from app.security.tokens import InvalidTokenError

# Asymmetric only: the provider's tokens are checked with public keys, never with a shared secret.
SSO_ALGORITHMS = frozenset({"RS256", "ES256"})
# Providers' tokens grow with roles and groups; far below the request-head limit.
MAX_SSO_TOKEN_LENGTH = 16_384
MAX_SUBJECT_LENGTH = 255  # OpenID Connect Core 2: at most 255 ASCII characters
MAX_USERNAME_CLAIM = 255
# `typ` of access tokens: RFC 9068's at+jwt, or the plain JWT most providers write.
ACCESS_TOKEN_TYPES = frozenset({"jwt", "at+jwt", "application/at+jwt"})
VERIFIED_TOKEN_CACHE_SIZE = 4096
_JOSE_ERRORS = (
    JOSEError,
    ValueError,
    TypeError,
    KeyError,
    AttributeError,
    OverflowError,
    RecursionError,
)


@dataclass(frozen=True)
class SsoIdentity:
    """Who the provider says the caller is, once its token is verified."""

    issuer: str
    subject: str
    preferred_username: str | None
    role_values: tuple[str, ...]  # the role claim's strings, unmapped
    expires_at: float

    @property
    def key(self) -> uuid.UUID:
        """A stable id of the identity (its request limits are counted under it)."""
        return uuid.uuid5(uuid.NAMESPACE_URL, f"{self.issuer}#{self.subject}")


def unverified_header(token: str) -> dict[str, Any] | None:
    """The token's JOSE header, parsed but not trusted (it only picks the verifier and the key
    to look up); None if it is not a compact JWS."""
    if not token or len(token) > MAX_SSO_TOKEN_LENGTH or not token.isascii():
        return None
    if token.count(".") != 2:
        return None
    try:
        header = jwt.get_unverified_header(token)
    except _JOSE_ERRORS:
        return None
    return header if isinstance(header, dict) else None


class OidcVerifier:
    """The provider's access tokens: RS256 or ES256, signed by a key of its JWKS, with its `iss`,
    our `aud`, and `exp`/`nbf`/`iat` within OIDC_LEEWAY_SECONDS."""

    def __init__(self, settings: Settings) -> None:
        if settings.oidc_issuer is None or settings.oidc_audience is None:
            raise ValueError("single sign-on needs OIDC_ISSUER and OIDC_AUDIENCE")
        self.issuer = settings.oidc_issuer
        self.audience = settings.oidc_audience
        self.leeway = settings.oidc_leeway_seconds
        self.role_claim = settings.oidc_role_claim
        self.source = HttpKeySource(self.issuer, settings.oidc_jwks_url)
        self.keys = JwksCache(self.source)

    @classmethod
    def from_settings(cls, settings: Settings) -> "OidcVerifier | None":
        return cls(settings) if settings.oidc_issuer is not None else None

    def issued(self, token: str) -> bool:
        """Whether the token is for this verifier: its header names RS256 or ES256 (the
        service's own tokens are HMAC-signed). Nothing is trusted yet: a token sent the wrong
        way fails the verification it was sent to."""
        header = unverified_header(token)
        return header is not None and header.get("alg") in SSO_ALGORITHMS

    async def verify(self, token: str) -> SsoIdentity:
        """The caller's identity, or InvalidTokenError; may wait for a fetch of the keys."""
        kid, algorithm = _key_reference(token)
        return self._check(token, await self.keys.key(kid), algorithm)

    def verify_cached(self, token: str) -> SsoIdentity | None:
        """The same with the keys in hand only (never a fetch); None for any invalid token."""
        try:
            kid, algorithm = _key_reference(token)
            return self._check(token, self.keys.cached(kid), algorithm)
        except InvalidTokenError:
            return None

    def _check(self, token: str, key: SigningKey | None, algorithm: str) -> SsoIdentity:
        if key is None or key.algorithm != algorithm:
            raise InvalidTokenError("unknown signing key")
        identity = _verify(token, key, self.issuer, self.audience, self.leeway, self.role_claim)
        if identity.expires_at + self.leeway < time.time():
            raise InvalidTokenError("expired token")
        return identity

    @property
    def state(self) -> Literal["ok", "degraded"]:
        """degraded: the last fetch of the keys failed, or none has succeeded yet."""
        return "ok" if self.keys.healthy else "degraded"

    def start(self) -> None:
        """Fetch the keys in the background, so the first requests need not wait for them."""
        self.keys.refresh()

    async def aclose(self) -> None:
        await self.keys.aclose()
        await self.source.aclose()


def _key_reference(token: str) -> tuple[str, str]:
    """The header's key id and algorithm, if the header is one of an access token of ours."""
    header = unverified_header(token)
    if header is None:
        raise InvalidTokenError("malformed token")
    algorithm, kid, typ = header.get("alg"), header.get("kid"), header.get("typ")
    if algorithm not in SSO_ALGORITHMS or "crit" in header:
        raise InvalidTokenError("unexpected token header")
    if not isinstance(kid, str) or not 0 < len(kid) <= MAX_KID_LENGTH:
        raise InvalidTokenError("no key id")
    if typ is not None and (not isinstance(typ, str) or typ.lower() not in ACCESS_TOKEN_TYPES):
        raise InvalidTokenError("not an access token")
    return kid, str(algorithm)


@lru_cache(maxsize=VERIFIED_TOKEN_CACHE_SIZE)
def _verify(
    token: str, key: SigningKey, issuer: str, audience: str, leeway: int, role_claim: str
) -> SsoIdentity:
    """The identity in a token signed by `key` (cached: errors are raised again on every call,
    successes are remembered; the caller checks the expiry each time)."""
    try:
        claims = jwt.decode(
            token,
            key.key,
            algorithms=[key.algorithm],
            audience=audience,
            issuer=issuer,
            options={
                "require_exp": True,
                "require_sub": True,
                "require_aud": True,
                "require_iss": True,
                "leeway": leeway,
            },
        )
    except _JOSE_ERRORS as error:
        raise InvalidTokenError("invalid token") from error
    return _identity(claims, issuer, leeway, role_claim)


def _identity(claims: dict[str, Any], issuer: str, leeway: int, role_claim: str) -> SsoIdentity:
    subject = claims.get("sub")
    if not isinstance(subject, str) or not 0 < len(subject) <= MAX_SUBJECT_LENGTH:
        raise InvalidTokenError("invalid subject")
    if not subject.isprintable():
        raise InvalidTokenError("invalid subject")
    expires_at, issued_at = claims.get("exp"), claims.get("iat", 0)
    if not _is_number(expires_at) or not _is_number(issued_at):
        raise InvalidTokenError("invalid exp or iat")
    if issued_at > time.time() + leeway:
        raise InvalidTokenError("token issued in the future")
    if claims.get("typ") == "ID" or claims.get("token_use") == "id":
        raise InvalidTokenError("an ID token, not an access token")  # Keycloak's, Cognito's
    username = claims.get("preferred_username")
    if not isinstance(username, str) or len(username) > MAX_USERNAME_CLAIM:
        username = None
    return SsoIdentity(
        issuer=issuer,
        subject=subject,
        preferred_username=username,
        role_values=role_values(claims, role_claim),
        expires_at=float(expires_at),
    )


def _is_number(value: object) -> TypeGuard[float]:
    """A JSON number, not a boolean nor NaN."""
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def role_values(claims: Mapping[str, Any], name: str) -> tuple[str, ...]:
    """The role claim's strings: the claim of that name, else the dotted path into objects
    (realm_access.roles); one string or a list of them (other items are ignored)."""
    value: Any = claims.get(name)
    if name not in claims and "." in name:
        value = claims
        for part in name.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        return tuple(item for item in value if isinstance(item, str) and _printable(item))
    return ()


def _printable(value: str) -> bool:
    return not any(unicodedata.category(char) in ("Cc", "Cs") for char in value)
