"""Standard Webhooks signing against the specification's own example, secrets as it writes them,
and the retry schedule the defaults make."""

import base64
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

from app.core.webhook_config import WebhookSettings
from app.webhooks.delivery import BACKOFF_FACTOR, JITTER, retry_delay
from app.webhooks.signing import new_secret, signature, signed_headers


def test_the_specifications_example_signature():
    # The example of the Standard Webhooks reference libraries' tests.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    signed = signature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
    assert signed == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_secrets_are_whsec_and_base64_of_random_bytes():
    secrets = {new_secret() for _ in range(20)}
    assert len(secrets) == 20
    for secret in secrets:
        assert secret.startswith("whsec_")
        assert 24 <= len(base64.b64decode(secret.removeprefix("whsec_"))) <= 64


def test_every_secret_in_use_signs():
    headers = signed_headers([new_secret(), new_secret()], "msg_1", 1700000000, b"{}")
    assert headers["webhook-id"] == "msg_1" and headers["webhook-timestamp"] == "1700000000"
    assert [s[:3] for s in headers["webhook-signature"].split(" ")] == ["v1,", "v1,"]


def test_the_default_retry_schedule_spans_about_a_day():
    defaults = WebhookSettings()
    waits = [
        retry_delay(attempt, defaults.webhook_retry_base_seconds)
        for attempt in range(1, defaults.webhook_max_attempts)
    ]
    for attempt, wait in enumerate(waits, start=1):
        nominal = defaults.webhook_retry_base_seconds * BACKOFF_FACTOR ** (attempt - 1)
        low, high = nominal * (1 - JITTER), nominal * (1 + JITTER)
        assert low <= wait.total_seconds() <= high
    assert timedelta(hours=16) < sum(waits, timedelta()) < timedelta(hours=30)


def documented_verify() -> Callable[..., bool]:
    """The `verify` of docs/sync.md, as a receiver would paste it."""
    page = (Path(__file__).parents[1] / "docs" / "sync.md").read_text()
    section = page.split("### Verifying a webhook signature", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(code, namespace)  # noqa: S102 (the project's own documentation)
    return cast(Callable[..., bool], namespace["verify"])


def test_the_documented_receiver_check_accepts_what_the_service_signs():
    verify = documented_verify()
    old, new, body = new_secret(), new_secret(), b'{"type":"employee.created"}'
    headers = signed_headers([new, old], "msg_7", int(time.time()), body)

    assert verify(new, headers, body) and verify(old, headers, body)
    assert not verify(new_secret(), headers, body)
    assert not verify(new, headers, body + b" ")
    stale = signed_headers([new], "msg_7", int(time.time()) - 600, body)
    assert not verify(new, stale, body)
