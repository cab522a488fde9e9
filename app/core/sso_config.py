"""Settings of single sign-on: access tokens of the organisation's identity provider (OpenID
Connect), accepted beside the service's own (`Settings` in app.core.config combines them)."""

import unicodedata
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, ValidationInfo, field_validator
from pydantic_settings import NoDecode

# The service's roles, lowest first: a token that maps to several gets the highest.
ROLES: tuple[str, ...] = ("user", "auditor", "admin")
Role = Literal["user", "auditor", "admin"]
# Plain http only for an identity provider on this machine (the tests run their own).
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
MAX_LEEWAY_SECONDS = 60
MAX_ROLE_NAME = 200


def is_allowed_url(value: str) -> bool:
    """https, or http to this machine only; no credentials, query or fragment."""
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        return False
    if not host or parts.username or parts.password or parts.query or parts.fragment:
        return False
    return parts.scheme == "https" or (parts.scheme == "http" and host in LOOPBACK_HOSTS)


URL_RULE = "must be an https:// URL (http:// only for 127.0.0.1 or localhost), without a query"


class SsoSettings(BaseModel):
    oidc_issuer: str | None = Field(
        default=None,
        max_length=255,
        description="Single sign-on: the identity provider's issuer URL, exactly as the `iss` of "
        "its access tokens (e.g. https://sso.example.com/realms/staff); unset: only the "
        "service's own tokens are accepted.",
    )
    oidc_audience: str | None = Field(
        default=None,
        max_length=255,
        # Checked even when unset: it is required once OIDC_ISSUER is set.
        validate_default=True,
        description="The `aud` the identity provider's access tokens must carry for this API; "
        "required with OIDC_ISSUER.",
    )
    oidc_jwks_url: str | None = Field(
        default=None,
        max_length=2000,
        description="Where the identity provider publishes its signing keys (JWKS); unset: "
        "read from the issuer's /.well-known/openid-configuration.",
    )
    oidc_role_claim: str = Field(
        default="roles",
        min_length=1,
        max_length=200,
        description="The claim holding the caller's roles or groups (a list or a string); a "
        "dotted name such as realm_access.roles reaches into an object when no claim has that "
        "very name.",
    )
    oidc_role_map: Annotated[dict[str, Role], NoDecode] = Field(
        default={},
        description="Comma-separated IDP_ROLE=ROLE pairs mapping the identity provider's roles "
        "to admin, auditor or user (e.g. HR.Admin=admin,HR.Audit=auditor); a token with no "
        "mapped role is a user, one with several gets the highest.",
    )
    oidc_leeway_seconds: int = Field(
        default=60,
        ge=0,
        le=MAX_LEEWAY_SECONDS,
        description="Clock skew allowed when checking the exp, nbf and iat of the identity "
        "provider's tokens.",
    )

    # Named apart: Settings' own `_blank_is_unset` would hide one of this name.
    @field_validator("oidc_issuer", "oidc_audience", "oidc_jwks_url", mode="before")
    @classmethod
    def _blank_oidc_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("oidc_issuer", "oidc_jwks_url")
    @classmethod
    def _https_url(cls, value: str | None) -> str | None:
        if value is not None and not is_allowed_url(value.strip()):
            raise ValueError(URL_RULE)
        return None if value is None else value.strip()

    @field_validator("oidc_audience")
    @classmethod
    def _audience_with_issuer(cls, value: str | None, info: ValidationInfo) -> str | None:
        issuer = info.data.get("oidc_issuer")
        if value is None and issuer is not None:
            raise ValueError("is required with OIDC_ISSUER (the API's identifier at the provider)")
        if value is not None and issuer is None and "oidc_issuer" in info.data:
            raise ValueError("needs OIDC_ISSUER")
        return value

    @field_validator("oidc_jwks_url")
    @classmethod
    def _jwks_with_issuer(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and "oidc_issuer" in info.data and info.data["oidc_issuer"] is None:
            raise ValueError("needs OIDC_ISSUER")
        return value

    @field_validator("oidc_role_map", mode="before")
    @classmethod
    def _role_pairs(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        pairs: dict[str, str] = {}
        for number, entry in enumerate(value.split(","), start=1):
            if not entry.strip():
                continue
            name, equals, role = entry.strip().rpartition("=")
            name, role = name.strip(), role.strip().lower()
            if not equals or not name:
                raise ValueError(f"entry {number} is not IDP_ROLE=ROLE")
            if role not in ROLES:
                raise ValueError(f"entry {number} maps to an unknown role (admin, auditor, user)")
            if len(name) > MAX_ROLE_NAME or _has_control_characters(name):
                raise ValueError(f"entry {number}: the role name is too long or unprintable")
            if name in pairs:
                raise ValueError(f"entry {number} maps a role already mapped")
            pairs[name] = role
        return pairs

    @field_validator("oidc_role_map")
    @classmethod
    def _map_with_issuer(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        if value and "oidc_issuer" in info.data and info.data["oidc_issuer"] is None:
            raise ValueError("needs OIDC_ISSUER")
        return value


def _has_control_characters(value: str) -> bool:
    return any(unicodedata.category(char) in ("Cc", "Cs") for char in value)
