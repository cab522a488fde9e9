"""Request limits for every caller: per account when the bearer token is valid (or is an API key
this worker admitted lately), per client address otherwise, and writes per account as well.
Every counted answer carries the IETF `RateLimit-Policy` and `RateLimit` fields; a spent quota
answers 429 before any route runs.
"""

import json
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.config import Settings
from app.core.types import utc_now
from app.http.rate_limits import LimitStoreUnavailable, Policy, RequestLimiter, Usage
from app.http.versioning import route_path
from app.observability.metrics import REQUESTS_LIMITED
from app.security.api_keys import KeyMemory, api_key_credential, looks_like_api_key
from app.security.oidc import OidcVerifier
from app.security.tokens import InvalidTokenError, decode_access_token

TOO_MANY = json.dumps({"detail": "Too many requests"}).encode()
UNAVAILABLE = json.dumps({"detail": "Request limits are unavailable; retry shortly"}).encode()
UNAVAILABLE_RETRY_AFTER = 5
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Probes, metrics scrapes and the documentation pages with their assets are never counted.
EXEMPT_PATHS = frozenset({"/", "/metrics", "/docs", "/redoc", "/openapi.json"})
EXEMPT_PREFIXES = ("/health/", "/docs/")


def is_exempt(path: str) -> bool:
    return path in EXEMPT_PATHS or path.startswith(EXEMPT_PREFIXES)


class RateLimitMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        settings: Settings,
        limiter: RequestLimiter,
        oidc: OidcVerifier | None = None,
        keys: KeyMemory | None = None,
    ) -> None:
        self.app = app
        self.keys = keys
        self.settings = settings
        self.limiter = limiter
        self.oidc = oidc
        self.authenticated = Policy.parse("authenticated", settings.rate_limit_authenticated)
        self.anonymous = Policy.parse("anonymous", settings.rate_limit_anonymous)
        self.writes = Policy.parse("writes", settings.rate_limit_writes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_exempt(route_path(scope)):
            await self.app(scope, receive, send)
            return
        try:
            usages = await self._count(scope)
        except LimitStoreUnavailable:
            await answer(send, 503, UNAVAILABLE, UNAVAILABLE_RETRY_AFTER, ())
            return
        fields = rate_limit_fields(usages)
        spent = [usage for usage in usages if not usage.allowed]
        if spent:
            REQUESTS_LIMITED.labels(spent[0].policy.name).inc()
            await answer(send, 429, TOO_MANY, max(usage.reset for usage in spent), fields)
            return

        async def send_with_fields(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *fields]
            await send(message)

        await self.app(scope, receive, send_with_fields)

    async def _count(self, scope: Scope) -> list[Usage]:
        account = self._account(scope)
        if account is None:
            client = scope.get("client")
            return [await self.limiter.hit(self.anonymous, client[0] if client else "unknown")]
        usages = [await self.limiter.hit(self.authenticated, account)]
        if scope["method"] in WRITE_METHODS:
            usages.append(await self.limiter.hit(self.writes, account))
        return usages

    def _account(self, scope: Scope) -> uuid.UUID | None:
        """The account a valid bearer token names (verified, so nobody spends another's quota);
        None for anonymous callers and bad tokens alike. An identity provider's token counts
        for its identity when its key is in hand (never fetched here), else as anonymous. An
        API key is known only once this worker has admitted it (app.accounts.keys.usage); until
        then it counts as anonymous, so made-up keys cannot escape the address's limit."""
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.decode("latin-1").partition(" ")
                if scheme.lower() != "bearer":
                    return None
                token = token.strip()
                if looks_like_api_key(token):
                    return self._key_owner(token)
                if self.oidc is not None and self.oidc.issued(token):
                    identity = self.oidc.verify_cached(token)
                    return None if identity is None else identity.key
                try:
                    return decode_access_token(token, self.settings).user_id
                except InvalidTokenError:
                    return None
        return None

    def _key_owner(self, token: str) -> uuid.UUID | None:
        if self.keys is None:
            return None
        try:
            return self.keys.owner(api_key_credential(token).key_hash, utc_now())
        except InvalidTokenError:
            return None


def rate_limit_fields(usages: list[Usage]) -> tuple[tuple[bytes, bytes], ...]:
    """The policy closest to running out: the fewest requests left, then the soonest reset."""
    closest = usages[0]
    for usage in usages[1:]:
        if (usage.remaining, usage.reset) < (closest.remaining, closest.reset):
            closest = usage
    return (
        (b"ratelimit-policy", closest.policy.header_item().encode()),
        (b"ratelimit", closest.header_item().encode()),
    )


async def answer(
    send: Send,
    status: int,
    body: bytes,
    retry_after: int,
    fields: tuple[tuple[bytes, bytes], ...],
) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(retry_after).encode()),
        *fields,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
