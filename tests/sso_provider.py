"""A small identity provider for the single sign-on tests: a real HTTP server on a free port of
127.0.0.1 (a thread of the test process) serving a discovery document and a JWK set, signing
tokens with its own RSA and EC keys, counting what it is asked. Not a mock of the HTTP client:
the app fetches from it over TCP as it would from Keycloak or Entra ID.
"""

import asyncio
import base64
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from unittest.mock import patch

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jose import jwt

from app.core.config import Settings
from app.security import jwks

AUDIENCE = "employee-records-api-sso"
REALM = "/realms/staff"
DISCOVERY = f"{REALM}/.well-known/openid-configuration"
JWKS = f"{REALM}/protocol/openid-connect/certs"
ROLE_MAP = {"HR.Admin": "admin", "HR.Audit": "auditor"}
DROP = object()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_int(value: int, length: int | None = None) -> str:
    return b64url(value.to_bytes(length or (value.bit_length() + 7) // 8, "big"))


@dataclass(frozen=True)
class SigningKey:
    kid: str
    algorithm: str
    private_pem: bytes
    public_pem: bytes
    jwk: dict[str, str]


def rsa_key(kid: str, bits: int = 2048) -> SigningKey:
    private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    numbers = private.public_key().public_numbers()
    jwk = {"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256"}
    jwk |= {"n": b64url_int(numbers.n), "e": b64url_int(numbers.e)}
    return _key(kid, "RS256", private, jwk)


def ec_key(kid: str) -> SigningKey:
    private = ec.generate_private_key(ec.SECP256R1())
    numbers = private.public_key().public_numbers()
    jwk = {"kty": "EC", "kid": kid, "use": "sig", "crv": "P-256"}
    jwk |= {"x": b64url_int(numbers.x, 32), "y": b64url_int(numbers.y, 32)}
    return _key(kid, "ES256", private, jwk)


def _key(kid: str, algorithm: str, private: Any, jwk: dict[str, str]) -> SigningKey:
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return SigningKey(kid, algorithm, private_pem, public_pem, jwk)


class Provider:
    """The identity provider: what it publishes can be changed while it runs."""

    def __init__(self, keys: list[SigningKey]) -> None:
        self.published = list(keys)
        self.hits: Counter[str] = Counter()
        self.delay = 0.0  # seconds before each answer
        self.status = 200
        self.discovery_issuer: str | None = None  # None: its own
        self.jwks_document: bytes | None = None  # None: the published keys
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.running = False

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def issuer(self) -> str:
        return self.base + REALM

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """The settings of an app that trusts this provider."""
        values = {
            "oidc_issuer": self.issuer,
            "oidc_audience": AUDIENCE,
            "oidc_role_map": dict(ROLE_MAP),
        }
        return values | overrides

    def start(self) -> None:
        self.thread.start()
        self.running = True

    def stop(self) -> None:
        """Unreachable from now on: the port refuses connections."""
        if self.running:
            self.server.shutdown()
            self.server.server_close()
            self.running = False

    def jwks_hits(self) -> int:
        with self._lock:
            return self.hits[JWKS]

    def claims(self, **changes: Any) -> dict[str, Any]:
        now = int(time.time())
        values: dict[str, Any] = {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": "f3b0c2d4-0000-4000-8000-000000000001",
            "iat": now,
            "nbf": now,
            "exp": now + 300,
            "jti": uuid.uuid4().hex,
            "preferred_username": "jane.sso",
            "roles": [],
        }
        for name, value in changes.items():
            if value is DROP:
                values.pop(name, None)
            else:
                values[name] = value
        return values

    def token(
        self, key: SigningKey | None = None, headers: dict[str, Any] | None = None, **claims: Any
    ) -> str:
        key = key or self.published[0]
        header = {"kid": key.kid, "typ": "JWT"} | (headers or {})
        return jwt.encode(
            self.claims(**claims), key.private_pem, algorithm=key.algorithm, headers=header
        )

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with provider._lock:
                    provider.hits[self.path] += 1
                if provider.delay:
                    time.sleep(provider.delay)
                body = provider._answer(self.path)
                status = provider.status if body is not None else 404
                payload = body or b"{}"
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *_: Any) -> None:
                pass

        return Handler

    def _answer(self, path: str) -> bytes | None:
        if path == DISCOVERY:
            document = {
                "issuer": self.discovery_issuer or self.issuer,
                "jwks_uri": self.base + JWKS,
                "token_endpoint": self.issuer + "/protocol/openid-connect/token",
            }
            return json.dumps(document).encode()
        if path == JWKS:
            if self.jwks_document is not None:
                return self.jwks_document
            return json.dumps({"keys": [key.jwk for key in self.published]}).encode()
        return None


@lru_cache(maxsize=1)
def signing_keys() -> dict[str, SigningKey]:
    """Generated once per test process: RSA key generation takes a while."""
    return {
        "rsa": rsa_key("rsa-1"),
        "ec": ec_key("ec-1"),
        "next": rsa_key("rsa-2"),
        "foreign": rsa_key("rsa-1"),  # another provider's key that happens to share our kid
    }


# Under the whole parallel suite a test process can wait seconds for a core, and a fetch's 5 s
# (jwks.FETCH_TIMEOUT) then runs out in a test that is not about it: these tests allow more.
PATIENT_FETCH_TIMEOUT = 30.0


@contextmanager
def running_provider() -> Iterator[Provider]:
    """The provider, publishing the RSA and the EC key, for the block's duration."""
    keys = signing_keys()
    idp = Provider([keys["rsa"], keys["ec"]])
    idp.start()
    try:
        with patch.object(jwks, "FETCH_TIMEOUT", PATIENT_FETCH_TIMEOUT):
            yield idp
    finally:
        idp.stop()


def with_sso(settings: Settings, provider: Provider, **overrides: Any) -> Settings:
    return settings.model_copy(update=provider.settings(**overrides))


class FakeClock:
    """The key cache's clock, moved by hand (the once-a-minute rule without waiting)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def keys_loaded(app: Any) -> None:
    """Wait (10 s at most) for the app's fetch of the provider's keys to end, either way."""
    async with asyncio.timeout(10):
        await app.state.oidc.keys.settled()
    assert app.state.oidc.keys.fetches > 0
