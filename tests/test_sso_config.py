"""Single sign-on settings: off unless OIDC_ISSUER is set, and a half or wrong configuration
stops the service at start-up with a message naming the variable."""

from typing import Any

import pytest

from app.core.config import ConfigurationError, get_settings
from app.security.jwks import parse_key_set, signing_key
from app.security.oidc import OidcVerifier, role_values
from tests.conftest import make_settings
from tests.sso_provider import ec_key, rsa_key

ISSUER = "https://sso.example.com/realms/staff"


def sso(**values: Any) -> Any:
    return make_settings("sqlite+aiosqlite://", **values)


class TestSettings:
    def test_off_by_default(self):
        settings = sso()
        assert settings.oidc_issuer is None
        assert OidcVerifier.from_settings(settings) is None

    def test_a_full_configuration(self):
        settings = sso(
            oidc_issuer=ISSUER,
            oidc_audience="employee-records-api",
            oidc_role_map=" HR.Admin = admin , HR.Audit=AUDITOR,",
            oidc_leeway_seconds=0,
        )
        assert settings.oidc_role_map == {"HR.Admin": "admin", "HR.Audit": "auditor"}
        assert OidcVerifier.from_settings(settings) is not None

    @pytest.mark.parametrize(
        "issuer",
        [
            "http://127.0.0.1:8080/realms/x",
            "http://localhost/x",
            "https://login.example.com/t/v2.0",
        ],
    )
    def test_https_or_a_local_http_issuer(self, issuer: str):
        assert sso(oidc_issuer=issuer, oidc_audience="api").oidc_issuer == issuer

    @pytest.mark.parametrize(
        ("values", "variable", "rule"),
        [
            ({"oidc_issuer": "http://sso.example.com"}, "OIDC_ISSUER", "https://"),
            ({"oidc_issuer": "ftp://sso.example.com"}, "OIDC_ISSUER", "https://"),
            ({"oidc_issuer": "https://u:p@sso.example.com"}, "OIDC_ISSUER", "https://"),
            ({"oidc_issuer": "https://sso.example.com?x=1"}, "OIDC_ISSUER", "https://"),
            ({"oidc_issuer": "sso.example.com"}, "OIDC_ISSUER", "https://"),
            ({"oidc_issuer": ISSUER}, "OIDC_AUDIENCE", "required"),
            ({"oidc_audience": "api"}, "OIDC_AUDIENCE", "needs OIDC_ISSUER"),
            ({"oidc_jwks_url": ISSUER + "/certs"}, "OIDC_JWKS_URL", "needs OIDC_ISSUER"),
            ({"oidc_role_map": "A=admin"}, "OIDC_ROLE_MAP", "needs OIDC_ISSUER"),
            (
                {"oidc_issuer": ISSUER, "oidc_audience": "a", "oidc_jwks_url": "http://x/certs"},
                "OIDC_JWKS_URL",
                "https://",
            ),
            (
                {"oidc_issuer": ISSUER, "oidc_audience": "a", "oidc_role_map": "A=root"},
                "OIDC_ROLE_MAP",
                "unknown role",
            ),
            (
                {"oidc_issuer": ISSUER, "oidc_audience": "a", "oidc_role_map": "admin"},
                "OIDC_ROLE_MAP",
                "IDP_ROLE=ROLE",
            ),
            (
                {"oidc_issuer": ISSUER, "oidc_audience": "a", "oidc_role_map": "A=admin,A=user"},
                "OIDC_ROLE_MAP",
                "already mapped",
            ),
            ({"oidc_leeway_seconds": 61}, "OIDC_LEEWAY_SECONDS", "60"),
            ({"oidc_leeway_seconds": -1}, "OIDC_LEEWAY_SECONDS", "0"),
        ],
    )
    def test_a_bad_configuration_stops_the_start(
        self, monkeypatch, tmp_path, values: dict[str, Any], variable: str, rule: str
    ):
        monkeypatch.chdir(tmp_path)
        for name, value in values.items():
            monkeypatch.setenv(name.upper(), str(value))
        get_settings.cache_clear()
        try:
            with pytest.raises(ConfigurationError) as caught:
                get_settings()
        finally:
            get_settings.cache_clear()
        line = next(line for line in str(caught.value).splitlines() if variable in line)
        assert rule in line

    def test_the_role_map_error_does_not_echo_the_value(self, monkeypatch, tmp_path):
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("OIDC_ISSUER", ISSUER)
        monkeypatch.setenv("OIDC_AUDIENCE", "api")
        monkeypatch.setenv("OIDC_ROLE_MAP", "Secret.Group=superuser")
        get_settings.cache_clear()
        try:
            with pytest.raises(ConfigurationError) as caught:
                get_settings()
        finally:
            get_settings.cache_clear()
        assert "Secret.Group" not in str(caught.value)
        assert "superuser" not in str(caught.value)


class TestKeySet:
    def test_only_public_signing_keys_of_a_fitting_type_are_kept(self):
        rsa, ec = rsa_key("r"), ec_key("e")
        entries = [
            rsa.jwk,
            ec.jwk,
            {"kty": "oct", "kid": "h", "k": "c2VjcmV0c2VjcmV0"},
            ec.jwk | {"kid": "e384", "crv": "P-384"},
            rsa.jwk | {"kid": "enc", "use": "enc"},
            rsa.jwk | {"kid": "ps", "alg": "PS256"},
            ec.jwk | {"kid": "mislabelled", "alg": "RS256"},
            rsa_key("small", bits=1024).jwk,
            {"kid": "no-type"},
            "not an object",
        ]
        assert sorted(parse_key_set({"keys": entries})) == ["e", "r"]

    def test_a_private_member_is_never_read(self):
        rsa = rsa_key("r")
        key = signing_key(rsa.jwk | {"d": "AAAA", "p": "AAAA"})
        assert key is not None
        assert key.key.is_public()  # whatever the JWK held


class TestRoleClaim:
    @pytest.mark.parametrize(
        ("claims", "name", "values"),
        [
            ({"roles": ["a", "b"]}, "roles", ("a", "b")),
            ({"roles": "a"}, "roles", ("a",)),
            ({"roles": ["a", 1, None, {"x": 1}, ["b"]]}, "roles", ("a",)),
            ({"roles": {"a": True}}, "roles", ()),
            ({}, "roles", ()),
            ({"realm_access": {"roles": ["a"]}}, "realm_access.roles", ("a",)),
            ({"realm_access": ["roles"]}, "realm_access.roles", ()),
            ({"https://example.com/roles": ["a"]}, "https://example.com/roles", ("a",)),
            ({"a.b": ["direct"], "a": {"b": ["nested"]}}, "a.b", ("direct",)),
        ],
    )
    def test_the_claim_or_a_dotted_path(self, claims: dict[str, Any], name: str, values: Any):
        assert role_values(claims, name) == values
