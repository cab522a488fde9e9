"""Where webhooks may go (SSRF rules): https only unless WEBHOOK_ALLOW_HTTP; loopback, private,
link-local, reserved and cloud metadata addresses refused unless WEBHOOK_ALLOW_PRIVATE_TARGETS
(metadata always); no credentials in the URL. Registration is refused with a 422 on `url`."""

import ipaddress
from collections.abc import Callable
from typing import Any

import pytest
from httpx import ASGITransport, AsyncClient

from app.accounts.models import User
from app.webhooks.targets import TargetRefusedError, check_target, refusal

TYPES = ["employee.created"]


async def register(app: Any, token: str, url: str) -> Any:
    headers = {"Authorization": f"Bearer {token}"}
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as client:
        return await client.post(
            "/v1/webhooks/", json={"url": url, "event_types": TYPES}, headers=headers
        )


@pytest.mark.parametrize(
    "url",
    [
        "http://93.184.215.14/hook",  # http by default
        "https://127.0.0.1/hook",
        "https://localhost/hook",
        "https://10.1.2.3/hook",
        "https://192.168.0.10/hook",
        "https://172.16.5.4/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://100.64.0.1/hook",  # carrier-grade NAT
        "https://0.0.0.0/hook",
        "https://224.0.0.1/hook",
        "https://[::1]/hook",
        "https://[fd00:ec2::254]/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://[64:ff9b::a00:1]/hook",  # NAT64 of 10.0.0.1
        "https://2130706433/hook",  # 127.0.0.1 as one number
        "https://no-such-host.invalid/hook",
    ],
)
async def test_refused_by_default(
    app_with: Callable[..., Any], admin_user: User, token_for: Callable[[User], str], url: str
):
    app = await app_with()
    response = await register(app, token_for(admin_user), url)
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "url"]


async def test_a_public_https_address_is_accepted(
    app_with: Callable[..., Any], admin_user: User, token_for: Callable[[User], str]
):
    app = await app_with()
    response = await register(app, token_for(admin_user), "https://93.184.215.14:8443/h?x=1")
    assert response.status_code == 201


@pytest.mark.parametrize(
    ("url", "status"),
    [
        ("http://127.0.0.1:9/hook", 201),
        ("https://localhost/hook", 201),
        ("https://10.1.2.3/hook", 201),
        ("http://169.254.169.254/latest/meta-data", 422),  # metadata: refused even so
        ("http://[fd00:ec2::254]/", 422),
    ],
)
async def test_with_the_flags_private_targets_are_allowed(
    app_with: Callable[..., Any],
    admin_user: User,
    token_for: Callable[[User], str],
    url: str,
    status: int,
):
    app = await app_with(webhook_allow_http=True, webhook_allow_private_targets=True)
    response = await register(app, token_for(admin_user), url)
    assert response.status_code == status, response.text


async def test_http_alone_does_not_allow_private_targets(
    app_with: Callable[..., Any], admin_user: User, token_for: Callable[[User], str]
):
    app = await app_with(webhook_allow_http=True)
    token = token_for(admin_user)
    assert (await register(app, token, "http://127.0.0.1/hook")).status_code == 422
    assert (await register(app, token, "http://93.184.215.14/hook")).status_code == 201


class TestCheckTarget:
    async def test_connects_to_the_checked_address_under_the_host_name(self):
        target = await check_target(
            "https://localhost:8443/hook?x=1",
            allow_http=False,
            allow_private=True,
            resolve_seconds=5,
        )
        assert target.url.startswith(("https://127.0.0.1:8443/hook?x=1", "https://[::1]:8443/"))
        assert target.host_header == "localhost:8443"
        assert target.server_name == "localhost"

    @pytest.mark.parametrize(
        "url", ["https://u:p@93.184.215.14/", "https://93.184.215.14:99999/", "https:///x"]
    )
    async def test_malformed_urls_are_refused(self, url: str):
        with pytest.raises(TargetRefusedError):
            await check_target(url, allow_http=False, allow_private=False, resolve_seconds=5)

    def test_public_addresses_pass(self):
        for text in ("93.184.215.14", "2606:2800:220:1:248:1893:25c8:1946"):
            assert refusal(ipaddress.ip_address(text), allow_private=False) is None
