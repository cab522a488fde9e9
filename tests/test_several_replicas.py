"""Three API processes on one PostgreSQL and one Redis behind nginx, round robin, proxied with the
shipped `deploy/nginx/nginx.conf`: what one process guarantees holds across them (sign-in and
request limits, idempotency keys, entity tags and If-Match).

Every test's anonymous calls come from a loopback address of its own (127.0.0.x), which nginx
hands on in X-Forwarded-For: each has its own per-address quota, as separate clients would.
"""

import asyncio
import re
import shutil
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.conftest import SECRET, employee_payload, require_postgres
from tests.pg import ROOT, PostgresServer
from tests.test_login_limits import REDIS_TEST_URL
from tests.test_rate_limits import redis_available
from tests.test_startup import free_port, server_env, wait_until_up

pytestmark = [pytest.mark.ops, pytest.mark.slow, pytest.mark.postgres_only]

REPLICAS = 3
ADMIN = ("replica-admin", "replica-admin-password-1")
NGINX_CONF = ROOT / "deploy" / "nginx" / "nginx.conf"
SIGN_IN_PER_USERNAME = 4
ANONYMOUS_PER_MINUTE = 6


def find_nginx() -> str | None:
    """On PATH, or where Debian puts it (/usr/sbin is not on every user's PATH)."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")


def proxy_config(shipped: str, *, port: int, upstreams: list[int], scratch: Path) -> str:
    """The shipped configuration with this test's addresses: its upstream servers replaced by the
    three processes, round robin (the shipped one balances by least connections), and its
    pid, logs and temporary files in `scratch`, so nginx runs as this user in the foreground."""
    servers = "".join(
        f"        server 127.0.0.1:{p} max_fails=3 fail_timeout=10s;\n" for p in upstreams
    )
    config, count = re.subn(
        r"(upstream employees_api \{\n)(.*?)(        keepalive)",
        lambda m: m[1] + servers + m[3],
        shipped,
        flags=re.S,
    )
    assert count == 1, "the shipped nginx.conf has no `upstream employees_api` block"
    replacements = {
        "pid /tmp/nginx.pid;": f"pid {scratch / 'nginx.pid'};\ndaemon off;\nmaster_process off;",
        "worker_processes auto;": "worker_processes 1;",
        "listen 8080;": f"listen 127.0.0.1:{port};",
        "access_log /dev/stdout;": f"access_log {scratch / 'access.log'};",
        "error_log /dev/stderr warn;": f"error_log {scratch / 'error.log'} warn;",
        # Which process answered, for the tests to see the requests spread (test-only).
        "proxy_pass http://employees_api;": (
            "proxy_pass http://employees_api;\n"
            "            add_header X-Upstream $upstream_addr always;"
        ),
    }
    for old, new in replacements.items():
        assert old in config, f"the shipped nginx.conf no longer has {old!r}"
        config = config.replace(old, new)
    temp = "".join(
        f"    {kind}_temp_path {scratch / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return config.replace("http {\n", "http {\n" + temp, 1)


@contextmanager
def uvicorn_process(scratch: Path, env: dict[str, str], name: str) -> Iterator[int]:
    port = free_port()
    log = scratch / f"{name}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "uvicorn", "app.main:app"),
                *("--host", "127.0.0.1", "--port", str(port), "--no-access-log"),
            ],
            cwd=scratch,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until_up(f"http://127.0.0.1:{port}", process, log)
            yield port
        finally:
            process.terminate()
            process.wait(timeout=15)


@contextmanager
def nginx_process(nginx: str, scratch: Path, config: str, port: int) -> Iterator[str]:
    (scratch / "nginx.conf").write_text(config)
    test = subprocess.run(
        [nginx, "-t", "-q", "-p", str(scratch), "-c", str(scratch / "nginx.conf")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert test.returncode == 0, test.stderr
    process = subprocess.Popen(
        [nginx, "-p", str(scratch), "-c", str(scratch / "nginx.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base, process, scratch / "error.log")
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def proxy(
    tmp_path_factory: pytest.TempPathFactory,
    postgres_server: PostgresServer | None,
    postgres_template: str | None,
) -> Iterator[str]:
    """nginx's address in front of three processes sharing one database and one Redis."""
    nginx = find_nginx()
    if nginx is None:
        pytest.skip("several replicas need nginx: apt-get install -y nginx")
    if not redis_available():
        pytest.skip(
            f"several replicas share Redis: none at {REDIS_TEST_URL} (apt-get install redis-server)"
        )
    server = require_postgres(postgres_server)
    assert postgres_template is not None
    scratch = tmp_path_factory.mktemp("replicas")
    database = asyncio.run(server.create_database(template=postgres_template))
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    env = server_env(
        DATABASE_URL=server.url_for(database),
        JWT_SECRET_KEY=SECRET,
        FIRST_ADMIN_USERNAME=ADMIN[0],
        FIRST_ADMIN_PASSWORD=ADMIN[1],
        REDIS_URL=REDIS_TEST_URL,
        REDIS_KEY_PREFIX=prefix,
        LOGIN_LIMIT_PER_USERNAME=f"{SIGN_IN_PER_USERNAME}/minute",
        LOGIN_LIMIT_PER_CLIENT="1000/minute",
        RATE_LIMIT_ENABLED="true",
        RATE_LIMIT_ANONYMOUS=f"{ANONYMOUS_PER_MINUTE}/minute",
        MIGRATE_ON_START="false",
        DB_POOL_SIZE="5",
        # nginx is the peer: its X-Forwarded-For names the client (as FORWARDED_ALLOW_IPS in
        # the compose file believes nginx's address only).
        FORWARDED_ALLOW_IPS="127.0.0.1",
    )
    try:
        with ExitStack() as stack:
            ports = [
                stack.enter_context(uvicorn_process(scratch, env, f"api-{number}"))
                for number in range(REPLICAS)
            ]
            port = free_port()
            config = proxy_config(
                NGINX_CONF.read_text(), port=port, upstreams=ports, scratch=scratch
            )
            yield stack.enter_context(nginx_process(nginx, scratch, config, port))
    finally:
        asyncio.run(server.drop_database(database))
        connection = redis.Redis.from_url(REDIS_TEST_URL)
        keys = list(connection.scan_iter(match=f"{prefix}:*"))
        if keys:
            connection.delete(*keys)
        connection.close()


_addresses = iter(range(2, 250))


@pytest.fixture
def client(proxy: str) -> Iterator[httpx.Client]:
    """A client of its own loopback address (127.0.0.x), so its own per-address quotas."""
    address = f"127.0.0.{next(_addresses)}"
    transport = httpx.HTTPTransport(local_address=address)
    with httpx.Client(base_url=proxy, transport=transport, timeout=30) as client:
        yield client


@asynccontextmanager
async def admin_client(proxy: str) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    """An async client of its own loopback address, and the admin's authorization header."""
    transport = httpx.AsyncHTTPTransport(local_address=f"127.0.0.{next(_addresses)}")
    async with httpx.AsyncClient(base_url=proxy, transport=transport, timeout=30) as client:
        token = await client.post("/auth/token", data={"username": ADMIN[0], "password": ADMIN[1]})
        assert token.status_code == 200, token.text
        yield client, {"Authorization": f"Bearer {token.json()['access_token']}"}


def new_emp_id() -> int:
    return uuid.uuid4().int % 2_000_000_000 + 1


def sign_in(client: httpx.Client, username: str, password: str) -> dict[str, str]:
    response = client.post("/auth/token", data={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def new_employee(client: httpx.Client, admin: dict[str, str]) -> dict[str, Any]:
    body = employee_payload(new_emp_id(), city="Lyon", country="France")
    response = client.post("/employees/", json=body, headers=admin)
    assert response.status_code == 201, response.text
    return dict(response.json())


def spread(responses: list[httpx.Response]) -> Counter[str]:
    return Counter(response.headers["X-Upstream"] for response in responses)


def test_nginx_spreads_requests_over_every_replica(client):
    responses = [client.get("/health/ready") for _ in range(3 * REPLICAS)]
    assert [r.status_code for r in responses] == [200] * (3 * REPLICAS)
    assert sorted(spread(responses).values()) == [3] * REPLICAS


def test_sign_in_limits_are_one_count_across_replicas(client):
    username = f"user-{uuid.uuid4().hex[:8]}"
    password = "a-long-enough-password-1"
    assert (
        client.post("/auth/register", json={"username": username, "password": password}).status_code
        == 201
    )
    failures = [
        client.post("/auth/token", data={"username": username, "password": "wrong-password-1"})
        for _ in range(SIGN_IN_PER_USERNAME)
    ]
    assert [r.status_code for r in failures] == [401] * SIGN_IN_PER_USERNAME
    assert len(spread(failures)) == REPLICAS
    # Whichever replica the right password reaches, the username's failures were counted.
    for _ in range(REPLICAS):
        response = client.post("/auth/token", data={"username": username, "password": password})
        assert response.status_code == 429
        assert int(response.headers["Retry-After"]) > 0


def test_request_limits_are_one_count_across_replicas(client):
    responses = [client.get("/employees/") for _ in range(ANONYMOUS_PER_MINUTE + 3)]
    statuses = [r.status_code for r in responses]
    assert statuses == [401] * ANONYMOUS_PER_MINUTE + [429] * 3
    remaining = [int(re.search(r";r=(\d+);", r.headers["RateLimit"])[1]) for r in responses]
    assert remaining[:ANONYMOUS_PER_MINUTE] == list(range(ANONYMOUS_PER_MINUTE - 1, -1, -1))
    assert len(spread(responses)) == REPLICAS


def test_an_idempotency_key_holds_across_replicas(client):
    admin = sign_in(client, *ADMIN)
    key = str(uuid.uuid4())
    body = employee_payload(new_emp_id(), emp_name="Idem Potent")
    headers = admin | {"Idempotency-Key": key}
    first = client.post("/employees/", json=body, headers=headers)
    assert first.status_code == 201
    retries = [client.post("/employees/", json=body, headers=headers) for _ in range(REPLICAS)]
    assert len(spread([first, *retries])) == REPLICAS
    for retry in retries:
        assert retry.status_code == 201
        assert retry.headers["Idempotent-Replayed"] == "true"
        assert retry.json() == first.json()
    one = client.get(f"/employees/{body['emp_id']}", headers=admin)
    assert one.status_code == 200 and one.json()["id"] == first.json()["id"]


async def test_concurrent_retries_of_one_key_create_one_record(proxy):
    async with admin_client(proxy) as (client, admin):
        emp_id = new_emp_id()
        body = employee_payload(emp_id, emp_name="Many Retries")
        headers = admin | {"Idempotency-Key": str(uuid.uuid4())}
        responses = await asyncio.gather(
            *(client.post("/employees/", json=body, headers=headers) for _ in range(12))
        )
        statuses = Counter(r.status_code for r in responses)
        # One creates; the others replay it or are told it is still in progress (409).
        assert set(statuses) <= {201, 409} and statuses[201] >= 1, statuses
        created = {r.json()["id"] for r in responses if r.status_code == 201}
        assert len(created) == 1
        one = await client.get(f"/employees/{emp_id}", headers=admin)
        assert one.status_code == 200 and one.json()["id"] in created


async def test_twenty_writers_with_one_tag_across_replicas_make_one_winner(proxy):
    async with admin_client(proxy) as (client, admin):
        emp_id = new_emp_id()
        created = await client.post(
            "/employees/", json=employee_payload(emp_id, emp_name="Contended"), headers=admin
        )
        tag = created.headers["ETag"]
        responses = await asyncio.gather(
            *(
                client.patch(
                    f"/employees/{emp_id}",
                    json={"city": f"City {number}"},
                    headers=admin | {"If-Match": tag},
                )
                for number in range(20)
            )
        )
        assert sorted(r.status_code for r in responses) == [200] + [412] * 19
        assert len(spread(list(responses))) == REPLICAS
        winner = next(r for r in responses if r.status_code == 200)
        final = await client.get(f"/employees/{emp_id}", headers=admin)
        assert final.json()["version"] == 2
        assert final.json()["city"] == winner.json()["city"]
        assert final.headers["ETag"] == winner.headers["ETag"] != tag


def test_entity_tags_answer_304_from_every_replica(client):
    admin = sign_in(client, *ADMIN)
    employee = new_employee(client, admin)
    url = f"/employees/{employee['emp_id']}"
    tag = client.get(url, headers=admin).headers["ETag"]
    again = [client.get(url, headers=admin | {"If-None-Match": tag}) for _ in range(REPLICAS)]
    assert [r.status_code for r in again] == [304] * REPLICAS
    assert len(spread(again)) == REPLICAS
    page = client.get("/employees/", headers=admin)
    page_tag = page.headers["ETag"]
    pages = [
        client.get("/employees/", headers=admin | {"If-None-Match": page_tag})
        for _ in range(REPLICAS)
    ]
    assert [r.status_code for r in pages] == [304] * REPLICAS
    # A change made through one replica changes the page's tag on every other.
    client.patch(url, json={"city": "Geneva"}, headers=admin)
    after = [
        client.get("/employees/", headers=admin | {"If-None-Match": page_tag})
        for _ in range(REPLICAS)
    ]
    assert [r.status_code for r in after] == [200] * REPLICAS
