"""Fixtures: one suite, two backends (in-memory SQLite always, PostgreSQL when given a URL)."""

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from httpx import ASGITransport, AsyncClient
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.pool import StaticPool

from app.accounts.access import Role
from app.accounts.models import SignIn, User
from app.core.config import Settings
from app.db.engine import Database, create_engine
from app.employees.models import Employee
from app.main import create_app
from app.models import metadata
from app.security.passwords import password_context
from app.security.tokens import create_access_token
from tests.pg import PostgresServer
from tests.pgbouncer import (
    INSTALL_HINT,
    KEPT_STATEMENTS,
    PgBouncer,
    find_pgbouncer,
    pgbouncer_version,
    start_pgbouncer,
)

SECRET = "test-only-secret-key-that-is-long-enough-0123456789"
USER_PASSWORD = "regular-user-password"
ADMIN_PASSWORD = "admin-user-password"


# What `make test-fast` (-m "not slow and not ops") leaves out, decided here in one place.
# ops: tests that start processes (servers, PostgreSQL clusters, a browser, code generators).
OPS = (
    "tests/test_bench.py",
    "tests/test_browser.py",
    "tests/test_cli.py::test_python_m_app_is_the_entry_point",
    "tests/test_deployment.py",
    "tests/test_faults.py",
    "tests/test_generated_client.py",
    "tests/test_kubernetes.py",
    "tests/test_login_limits.py::TestAcrossServerProcesses",
    "tests/test_metrics.py::test_two_workers_report_the_sum_of_both",
    "tests/test_migrations.py::TestReplicasMigratingAtOnce",
    "tests/test_quickstart.py",
    "tests/test_read_replica.py::TestStreamingReplica",
    "tests/test_request_heads.py",
    "tests/test_shutdown.py",
    "tests/test_startup.py::TestServerProcess",
    "tests/test_streams_servers.py::TestServerProcesses",
    "tests/test_streams_servers.py::TestShutdown",
    "tests/test_streams_servers.py::TestLongStreams",
    "tests/test_tracing.py::test_a_server_with_the_console_exporter",
)
# slow: concurrency trials, property runs and schema migrations, each taking seconds.
SLOW = (
    "tests/test_fuzz.py",
    "tests/test_login_storm.py",
    "tests/test_login_timing.py",
    "tests/test_migrations.py",
    "tests/test_races.py",
    "tests/test_read_replica.py::TestStreamingReplica",
    "tests/test_session_races.py",
)

# timing: tests that assert latencies, run alone by `make test` (a neighbour would take the CPU).
TIMING = (
    "tests/test_login_storm.py",
    "tests/test_login_timing.py",
    "tests/test_login_limits.py::TestLimiterStorageDown",
)


# API tests that run a third time, through PgBouncer in transaction pooling with two server
# connections (backend "pgbouncer"): together they call every route, concurrent ones included;
# tests/test_pgbouncer.py adds the health probe, the command line and a trial of many requests.
# Left out, to keep the run short: input validation (422: refused before the route's own
# statements) and tests that hold more transactions open at once than there are server
# connections by design (TestConcurrentDemotions' gate holds nine).
THROUGH_PGBOUNCER = (
    "tests/test_auth.py::TestLogin::",
    "tests/test_auth.py::TestRegister::test_new_account_can_log_in",
    "tests/test_auth.py::TestRegister::test_taken_username_gets_409_in_any_case",
    "tests/test_token_lifecycle.py::TestRefresh::",
    "tests/test_token_lifecycle.py::TestLogout",  # and TestLogoutAll
    "tests/test_token_lifecycle.py::TestChangePassword::test_success_ends_every_session",
    "tests/test_users.py::",
    "tests/test_user_admin.py::TestReadUser::",
    "tests/test_user_admin.py::TestUpdateUser::",
    "tests/test_user_admin.py::TestDeleteUser::",
    "tests/test_employees_read.py::",
    "tests/test_employees_write.py::",
    "tests/test_conditional_requests.py::TestIfMatch::",
    "tests/test_conditional_requests.py::TestConcurrentConditionalWrites::",
    "tests/test_idempotency.py::",
    "tests/test_history.py::",
    "tests/test_csv.py::TestImportCsv::",
    "tests/test_csv.py::TestExportCsv::",
    "tests/test_metrics.py::TestRequestMetrics::",
    "tests/test_api_keys.py::TestListKeys::",
    "tests/test_api_keys.py::TestRevokeKey::",
    "tests/test_api_keys.py::TestAdminManagesKeys::",
    "tests/test_api_key_access.py::TestScopes::test_every_scope",
    "tests/test_api_key_access.py::TestLastUsed::test_written_once_within_a_minute",
)
BACKENDS = ("sqlite", "postgres")


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # A parametrize mark on the test wins over the fixture's own params (and it must be there
    # before pytest's own hook reads the marks, hence tryfirst).
    nodeid = metafunc.definition.nodeid
    through = nodeid.startswith(THROUGH_PGBOUNCER) and "422" not in metafunc.function.__name__
    if "backend" in metafunc.fixturenames and through:
        three = pytest.mark.parametrize("backend", [*BACKENDS, "pgbouncer"], indirect=True)
        metafunc.definition.add_marker(three)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("backend") == "pgbouncer":
            item.add_marker(pytest.mark.ops)  # a PgBouncer process of the test run's
        if item.nodeid.startswith(TIMING):
            item.add_marker(pytest.mark.timing)
        if item.nodeid.startswith(OPS):
            item.add_marker(pytest.mark.ops)
        if item.nodeid.startswith(SLOW):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def postgres_server(request: pytest.FixtureRequest) -> PostgresServer | None:
    url = request.config.getoption("--postgres-url")
    if not url:
        return None
    server = PostgresServer(url)
    if not server.is_reachable():
        pytest.exit(f"TEST_DATABASE_URL is set but PostgreSQL does not answer at {url}", 2)
    return server


@pytest.fixture(scope="session")
def postgres_template(postgres_server: PostgresServer | None) -> Iterator[str | None]:
    if postgres_server is None:
        yield None
        return
    name = postgres_server.create_migrated_template()
    yield name
    asyncio.run(postgres_server.drop_database(name))


@pytest.fixture(scope="session")
def shared_postgres_url(
    postgres_server: PostgresServer | None, postgres_template: str | None
) -> Iterator[str | None]:
    """One migrated database for this test process (each xdist worker has its own); every test
    leaves it empty."""
    if postgres_server is None or postgres_template is None:
        yield None
        return
    name = asyncio.run(postgres_server.create_database(template=postgres_template))
    yield postgres_server.url_for(name)
    asyncio.run(postgres_server.drop_database(name))


def require_postgres(server: PostgresServer | None) -> PostgresServer:
    if server is None:
        pytest.skip("PostgreSQL tests need TEST_DATABASE_URL (or --postgres-url); .ci/run sets it")
    return server


@pytest.fixture(scope="session")
def pgbouncer(postgres_server: PostgresServer | None) -> Iterator[PgBouncer]:
    """PgBouncer in transaction pooling in front of the suite's PostgreSQL, one per test
    process, with fewer server connections than the app's pool has clients; keeping prepared
    statements where the build can (1.21+), as one would run it."""
    server = require_postgres(postgres_server)
    binary = find_pgbouncer()
    if binary is None:
        pytest.skip(f"PgBouncer not found (install it: {INSTALL_HINT}; or set PGBOUNCER)")
    kept = KEPT_STATEMENTS if pgbouncer_version(binary) >= (1, 21) else None
    try:
        url = server.url.render_as_string(hide_password=False)
        bouncer = start_pgbouncer(binary, url, max_prepared_statements=kept)
    except RuntimeError as error:
        pytest.skip(f"cannot start PgBouncer: {error}")
    yield bouncer
    bouncer.stop()


def through_pgbouncer(bouncer: PgBouncer, direct_url: str, **overrides: Any) -> Settings:
    """Settings of an app on `direct_url`'s database through PgBouncer, in transaction mode,
    keeping asyncpg's statement cache where the PgBouncer keeps prepared statements."""
    database = make_url(direct_url).database or "postgres"
    overrides.setdefault(
        "database_pooler_prepared_statements", bool(bouncer.max_prepared_statements)
    )
    return make_settings(
        bouncer.url_for(database),
        database_pool_mode="transaction",
        database_direct_url=direct_url,
        **overrides,
    )


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    if request.param in ("postgres", "pgbouncer"):
        require_postgres(request.getfixturevalue("postgres_server"))
    if request.param == "pgbouncer":
        request.getfixturevalue("pgbouncer")
    elif request.param == "sqlite" and request.node.get_closest_marker("postgres_only"):
        pytest.skip("needs real PostgreSQL")
    return str(request.param)


@pytest.fixture
async def database_url(
    # A private database: for tests that need real commits seen by other connections
    # (concurrency, start-up, server processes). Others share one through `settings`.
    backend: str,
    postgres_server: PostgresServer | None,
    postgres_template: str | None,
) -> AsyncIterator[str]:
    if backend == "sqlite":
        yield "sqlite+aiosqlite://"
        return
    assert postgres_server is not None and postgres_template is not None
    name = await postgres_server.create_database(template=postgres_template)
    yield postgres_server.url_for(name)
    await postgres_server.drop_database(name)


def make_settings(database_url: str, **overrides: Any) -> Settings:
    # Request limits would refuse the suite's bursts from one address; their tests turn them on.
    # The webhook worker would poll the database beside each test; its tests run it themselves.
    values: dict[str, Any] = {
        "database_url": database_url,
        "jwt_secret_key": SECRET,
        "rate_limit_enabled": False,
        "webhook_worker_enabled": False,
    }
    return Settings(_env_file=None, **(values | overrides))  # type: ignore[call-arg]


@pytest.fixture
def settings(
    request: pytest.FixtureRequest, backend: str, shared_postgres_url: str | None
) -> Settings:
    if backend == "sqlite":
        return make_settings("sqlite+aiosqlite://")
    if request.node.get_closest_marker("postgres_only"):
        # Concurrent requests need connections of their own, hence a database of their own.
        url = request.getfixturevalue("database_url")
    else:
        assert shared_postgres_url is not None
        url = shared_postgres_url
    if backend == "pgbouncer":
        return through_pgbouncer(request.getfixturevalue("pgbouncer"), url)
    return make_settings(url)


@pytest.fixture
async def engine(
    settings: Settings, backend: str, shared_postgres_url: str | None
) -> AsyncIterator[AsyncEngine]:
    if backend == "sqlite":
        # One shared connection keeps the in-memory database alive for the whole test.
        engine = create_engine(settings, poolclass=StaticPool)
        async with engine.begin() as connection:
            await connection.run_sync(metadata.create_all)
        yield engine
    else:
        # The production pool, real commits: the app's read and write paths run as they do when
        # served. The run's shared database is this test process's alone; it is emptied after
        # each test (a private database, for postgres_only tests, is dropped instead).
        engine = create_engine(settings)
        yield engine
        if (settings.database_direct_url or settings.database_url) == shared_postgres_url:
            async with engine.begin() as connection:
                for table in reversed(metadata.sorted_tables):
                    await connection.execute(table.delete())
    await engine.dispose()


@pytest.fixture
def database(engine: AsyncEngine) -> Database:
    return Database.from_engine(engine)


@pytest.fixture
def sessionmaker(database: Database) -> async_sessionmaker[AsyncSession]:
    return database.sessions


@pytest.fixture
async def session(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session for arranging data and checking what the database holds afterwards."""
    async with sessionmaker() as session:
        yield session


@asynccontextmanager
async def running(app: Any) -> AsyncIterator[Any]:
    """The app with its lifespan started, as a server runs it."""
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def app_with(database: Database, settings: Settings) -> AsyncIterator[Callable[..., Any]]:
    """Apps on the test's database whose settings differ from the test's (lifespan running)."""
    async with AsyncExitStack() as stack:

        async def build(**overrides: Any) -> Any:
            changed = settings.model_copy(update=overrides)
            return await stack.enter_async_context(running(create_app(changed, database=database)))

        yield build


@pytest.fixture
async def app(settings: Settings, database: Database) -> AsyncIterator[Any]:
    async with running(create_app(settings, database=database)) as app:
        yield app


def _client(app: Any, token: str | None = None) -> AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return AsyncClient(transport=ASGITransport(app=app), base_url="http://test", headers=headers)


@pytest.fixture
async def client(app: Any) -> AsyncIterator[AsyncClient]:
    async with _client(app) as client:
        yield client


@pytest.fixture(scope="session")
def password_hashes() -> dict[str, str]:
    # Hashed once per run: argon2 at production cost is deliberately slow.
    return {pw: password_context.hash(pw) for pw in (USER_PASSWORD, ADMIN_PASSWORD)}


def standing_sign_in(user: User) -> SignIn:
    """The sign-in of the tokens the suite mints itself (`mint_token`) rather than signing in
    with a password: its id is the account's own, so no look-up is needed to mint one."""
    return SignIn(id=user.id, user_id=user.id, expires_at=datetime.now(UTC) + timedelta(days=1))


def mint_token(user: User, settings: Settings) -> str:
    """An access token of the account's standing sign-in (add `standing_sign_in(user)` too)."""
    return create_access_token(
        user.id, settings, version=user.token_version, sign_in_id=user.id
    ).token


@pytest.fixture
def make_user(
    sessionmaker: async_sessionmaker[AsyncSession], password_hashes: dict[str, str]
) -> Callable[..., Any]:
    async def make(
        username: str, *, is_admin: bool = False, is_active: bool = True, role: Role | None = None
    ) -> User:
        role = role or (Role.admin if is_admin else Role.user)
        password = ADMIN_PASSWORD if role is Role.admin else USER_PASSWORD
        user = User(
            username=username,
            hashed_password=password_hashes[password],
            role=role.value,
            is_active=is_active,
        )
        async with sessionmaker() as session:
            session.add(user)
            await session.flush()  # the account before its sign-in
            session.add(standing_sign_in(user))
            await session.commit()
        return user

    return make


@pytest.fixture
async def normal_user(make_user: Callable[..., Any]) -> User:
    return await make_user("jane.doe")


@pytest.fixture
async def admin_user(make_user: Callable[..., Any]) -> User:
    return await make_user("root.admin", is_admin=True)


@pytest.fixture
async def auditor_user(make_user: Callable[..., Any]) -> User:
    return await make_user("audit.or", role=Role.auditor)


@pytest.fixture
def token_for(settings: Settings) -> Callable[[User], str]:
    return lambda user: mint_token(user, settings)


@pytest.fixture
async def normal_user_client(
    app: Any, normal_user: User, token_for: Callable[[User], str]
) -> AsyncIterator[AsyncClient]:
    async with _client(app, token_for(normal_user)) as client:
        yield client


@pytest.fixture
async def admin_user_client(
    app: Any, admin_user: User, token_for: Callable[[User], str]
) -> AsyncIterator[AsyncClient]:
    async with _client(app, token_for(admin_user)) as client:
        yield client


@pytest.fixture
async def auditor_user_client(
    app: Any, auditor_user: User, token_for: Callable[[User], str]
) -> AsyncIterator[AsyncClient]:
    async with _client(app, token_for(auditor_user)) as client:
        yield client


@pytest.fixture
def client_for(app: Any, token_for: Callable[[User], str]) -> Callable[[User], AsyncClient]:
    """A client signed in as any user (close it with `async with`)."""
    return lambda user: _client(app, token_for(user))


def employee_payload(emp_id: int = 1001, **overrides: Any) -> dict[str, Any]:
    payload = {
        "emp_id": emp_id,
        "emp_name": "Ada Lovelace",
        "city": "London",
        "country": "United Kingdom",
        "emp_dob": "1985-12-10",
    }
    return payload | overrides


@pytest.fixture
def make_employees(sessionmaker: async_sessionmaker[AsyncSession]) -> Callable[..., Any]:
    async def make(*rows: dict[str, Any]) -> list[Employee]:
        employees = []
        for row in rows:
            data = employee_payload() | row
            data["emp_dob"] = date.fromisoformat(str(data["emp_dob"]))
            employees.append(Employee(**data))
        async with sessionmaker() as session:
            session.add_all(employees)
            await session.commit()
        return employees

    return make
