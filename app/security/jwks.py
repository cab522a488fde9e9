"""The identity provider's signing keys (its JWKS), fetched asynchronously and cached per process.

Every fetch, whatever asks for it, is at most one a minute: a key id nobody has seen asks for one
(a flood of random ids costs the provider one request a minute), and a key set older than an
hour is refreshed in the background while its keys keep working. Concurrent requests share one
fetch, and a failed fetch leaves the cached keys in place.
"""

import asyncio
import base64
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from jose import jwk
from jose.backends.base import Key

from app.core.sso_config import is_allowed_url
from app.core.tasks import stop_tasks

logger = logging.getLogger(__name__)

REFETCH_INTERVAL = 60.0  # seconds between two fetches, at most
MAX_AGE = 3600.0  # a key set older than this is fetched again (in the background)
FETCH_TIMEOUT = 5.0  # seconds for one HTTP exchange; a whole fetch gets twice that
MAX_DOCUMENT_BYTES = 256 * 1024
MAX_KEYS = 100
MAX_KID_LENGTH = 256
MIN_RSA_BITS = 2048
# Only the public members are read: a published private member is never turned into a key.
PUBLIC_MEMBERS = {"RSA": ("kty", "n", "e"), "EC": ("kty", "crv", "x", "y")}
DISCOVERY_PATH = "/.well-known/openid-configuration"


class KeySourceError(Exception):
    """The provider's discovery document or key set could not be fetched or read."""


@dataclass(frozen=True)
class SigningKey:
    """One verification key, bound to the one algorithm its type allows."""

    kid: str
    algorithm: str  # RS256 for an RSA key, ES256 for a P-256 one
    thumbprint: str  # RFC 7638: tells a key from another published under the same kid
    key: Key = field(compare=False, repr=False)


def _b64_bits(value: object) -> int:
    if not isinstance(value, str):
        return 0
    raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    return int.from_bytes(raw, "big").bit_length()


def signing_key(entry: object) -> SigningKey | None:
    """The JWK as a verification key, or None for anything else: symmetric keys, other curves,
    encryption keys, keys whose `alg` contradicts their type, weak RSA keys."""
    if not isinstance(entry, Mapping):
        return None
    kid, kty = entry.get("kid"), entry.get("kty")
    if not isinstance(kid, str) or not 0 < len(kid) <= MAX_KID_LENGTH:
        return None
    if kty == "RSA":
        algorithm = "RS256"
    elif kty == "EC" and entry.get("crv") == "P-256":
        algorithm = "ES256"
    else:
        return None
    if entry.get("use", "sig") != "sig" or entry.get("alg", algorithm) != algorithm:
        return None
    public = {name: entry.get(name) for name in PUBLIC_MEMBERS[kty]}
    if not all(isinstance(value, str) for value in public.values()):
        return None
    try:
        if kty == "RSA" and _b64_bits(public["n"]) < MIN_RSA_BITS:
            return None
        key = jwk.construct(public, algorithm)
    except Exception:  # any malformed member: this key is skipped, not the whole set
        return None
    canonical = json.dumps(public, sort_keys=True, separators=(",", ":")).encode()
    thumbprint = base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).decode()
    return SigningKey(kid=kid, algorithm=algorithm, thumbprint=thumbprint.rstrip("="), key=key)


def parse_key_set(document: object) -> dict[str, SigningKey]:
    if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
        raise KeySourceError("not a JWK set")
    keys: dict[str, SigningKey] = {}
    for entry in document["keys"][:MAX_KEYS]:
        key = signing_key(entry)
        if key is not None:
            keys.setdefault(key.kid, key)
    if not keys:
        raise KeySourceError("the JWK set holds no usable signing key")
    return keys


class HttpKeySource:
    """Fetches the key set over HTTP, from OIDC_JWKS_URL or the URL the issuer's discovery
    document names (remembered until a fetch from it fails)."""

    def __init__(self, issuer: str, jwks_url: str | None) -> None:
        self.issuer = issuer
        self.configured_url = jwks_url
        self.discovered_url: str | None = None
        self.client: httpx.AsyncClient | None = None

    async def __call__(self) -> dict[str, SigningKey]:
        async with asyncio.timeout(2 * FETCH_TIMEOUT):
            url = self.configured_url or self.discovered_url or await self._discover()
            try:
                return parse_key_set(await self._get_json(url))
            except (KeySourceError, httpx.HTTPError):
                self.discovered_url = None
                raise

    async def _discover(self) -> str:
        document = await self._get_json(self.issuer.rstrip("/") + DISCOVERY_PATH)
        if not isinstance(document, Mapping) or document.get("issuer") != self.issuer:
            raise KeySourceError("the discovery document names another issuer")
        url = document.get("jwks_uri")
        if not isinstance(url, str) or not is_allowed_url(url):
            raise KeySourceError("the discovery document has no acceptable jwks_uri")
        self.discovered_url = url
        return url

    async def _get_json(self, url: str) -> Any:
        if self.client is None:
            self.client = httpx.AsyncClient(
                timeout=FETCH_TIMEOUT,
                follow_redirects=False,
                headers={"Accept": "application/json", "User-Agent": "employee-records-api"},
            )
        async with self.client.stream("GET", url) as response:
            if response.status_code != httpx.codes.OK:
                raise KeySourceError(f"answered {response.status_code}")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_DOCUMENT_BYTES:
                    raise KeySourceError("the document is too large")
        try:
            return json.loads(body)
        except ValueError as error:
            raise KeySourceError("the document is not JSON") from error

    async def aclose(self) -> None:
        if self.client is not None:
            await self.client.aclose()


KeyFetcher = Callable[[], Awaitable[dict[str, SigningKey]]]


class JwksCache:
    """The provider's keys by key id; see the module's docstring for when they are fetched."""

    def __init__(self, fetch: KeyFetcher, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.fetch = fetch
        self.clock = clock
        self.keys: dict[str, SigningKey] = {}
        self.fetched_at: float | None = None  # the last successful fetch
        self.attempted_at: float | None = None  # the last fetch started
        self.failed = False  # the last fetch finished without a usable key set
        self.fetches = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def busy(self) -> bool:
        """A fetch is under way."""
        return self._task is not None and not self._task.done()

    @property
    def healthy(self) -> bool:
        """Keys are cached and the last fetch succeeded."""
        return bool(self.keys) and not self.failed

    async def settled(self) -> None:
        """Return once the fetch under way, if any, has ended."""
        if self._task is not None:
            await asyncio.shield(self._task)

    def cached(self, kid: str) -> SigningKey | None:
        return self.keys.get(kid)

    async def key(self, kid: str) -> SigningKey | None:
        """The key with this id, fetching the set again if it is unknown and the last fetch
        was a minute ago or more (or joining the fetch under way); None if it stays unknown."""
        key = self.keys.get(kid)
        if key is not None:
            if self._stale():
                self.refresh()  # in the background: this request goes on with the cached key
            return key
        task = self.refresh()
        if task is None:
            return None
        # Shielded: a caller that gives up (a client gone) does not cancel the others' fetch.
        await asyncio.shield(task)
        return self.keys.get(kid)

    def refresh(self) -> "asyncio.Task[None] | None":
        """The fetch under way, or a new one if none ran in the last minute; else None."""
        if self._task is not None and self.busy:
            return self._task
        now = self.clock()
        if self.attempted_at is not None and now - self.attempted_at < REFETCH_INTERVAL:
            return None
        self.attempted_at = now
        self._task = asyncio.create_task(self._fetch())
        return self._task

    def _stale(self) -> bool:
        return self.fetched_at is None or self.clock() - self.fetched_at >= MAX_AGE

    async def _fetch(self) -> None:
        self.fetches += 1
        try:
            keys = await self.fetch()
        # Whatever went wrong (network, TLS, a malformed document, a bug in a parser), the
        # cached keys stay, the callers get a 401 for an unknown key, never a 500.
        except Exception as error:
            self.failed = True
            logger.warning(
                "cannot fetch the identity provider's signing keys: %s: %s",
                type(error).__name__,
                str(error).splitlines()[0] if str(error) else "",
            )
            return
        self.keys, self.fetched_at, self.failed = keys, self.clock(), False

    async def aclose(self) -> None:
        await stop_tasks(self._task)
