"""One delivery attempt over HTTP: the target checked again (DNS can change since registration)
and connected to at the checked address, the body signed, redirects not followed, the answer's
body never read."""

import asyncio
import random
import ssl
import time
from datetime import timedelta

import httpx

from app.core.config import Settings
from app.webhooks.outbox import Claimed, Outcome
from app.webhooks.schemas import webhook_message_id
from app.webhooks.signing import signed_headers
from app.webhooks.targets import TargetRefusedError, check_target

USER_AGENT = "employee-records-webhooks/1"
BACKOFF_FACTOR = 4
JITTER = 0.2


def new_client(verify: ssl.SSLContext | bool = True) -> httpx.AsyncClient:
    # No proxies from the environment: the request must go to the address that was checked.
    return httpx.AsyncClient(follow_redirects=False, trust_env=False, verify=verify)


def retry_delay(attempts: int, base_seconds: float) -> timedelta:
    """The wait after `attempts` failed attempts: exponential, with jitter so that the retries
    of many deliveries that failed together do not arrive together."""
    delay = base_seconds * BACKOFF_FACTOR ** (attempts - 1)
    return timedelta(seconds=delay * random.uniform(1 - JITTER, 1 + JITTER))  # noqa: S311 (not a secret)


async def attempt(client: httpx.AsyncClient, claimed: Claimed, settings: Settings) -> Outcome:
    """Send the delivery once; whether a 2xx came back within WEBHOOK_TIMEOUT_SECONDS."""
    timeout = settings.webhook_timeout_seconds
    try:
        target = await check_target(
            claimed.url,
            allow_http=settings.webhook_allow_http,
            allow_private=settings.webhook_allow_private_targets,
            resolve_seconds=timeout,
        )
    except TargetRefusedError as error:
        return Outcome(ok=False, error=f"refused: the URL {error}")
    body = claimed.payload.encode()
    headers = signed_headers(
        claimed.secrets, webhook_message_id(claimed.id), int(time.time()), body
    )
    headers |= {"host": target.host_header, "user-agent": USER_AGENT}
    # Connected to the checked address; TLS still names, and verifies, the URL's host.
    extensions = {} if target.server_name is None else {"sni_hostname": target.server_name}
    request = client.build_request(
        "POST", target.url, content=body, headers=headers, extensions=extensions, timeout=timeout
    )
    try:
        async with asyncio.timeout(timeout):
            response = await client.send(request, stream=True)
            await response.aclose()  # the status is the answer; the body is not read
    except (TimeoutError, httpx.TimeoutException):
        return Outcome(ok=False, error="timed out")
    except httpx.HTTPError as error:
        return Outcome(ok=False, error=f"could not connect or send ({type(error).__name__})")
    if 200 <= response.status_code < 300:
        return Outcome(ok=True, status=response.status_code)
    return Outcome(ok=False, status=response.status_code, error=f"HTTP {response.status_code}")
