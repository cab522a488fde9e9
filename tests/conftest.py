"""Fixtures: one suite, two backends (in-memory SQLite always, PostgreSQL when given a URL)."""

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import date
from typing import Any

import pytest
from httpx import ASGITransport, AsyncClient
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.pool import StaticPool

from app.core.config import Settings, get_settings
from app.core.db import create_engine, create_sessionmaker
from app.core.security import password_context
from app.core.tokens import create_access_token
from app.employees.models import Employee
from app.main import create_app
from app.models import metadata
from app.users.models import User
from tests.pg import PostgresServer

SECRET = "test-only-secret-key-that-is-long-enough-0123456789"
USER_PASSWORD = "regular-user-password"
ADMIN_PASSWORD = "admin-user-password"


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
    """One migrated database for the run; each test works inside a transaction rolled back after."""
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


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgres":
        require_postgres(request.getfixturevalue("postgres_server"))
    elif request.node.get_closest_marker("postgres_only"):
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
    values: dict[str, Any] = {"database_url": database_url, "jwt_secret_key": SECRET}
    return Settings(_env_file=None, **(values | overrides))  # type: ignore[call-arg]


@pytest.fixture
def settings(
    request: pytest.FixtureRequest, backend: str, shared_postgres_url: str | None
) -> Settings:
    if backend == "sqlite":
        return make_settings("sqlite+aiosqlite://")
    if request.node.get_closest_marker("postgres_only"):
        # Concurrent requests need connections of their own, hence a database of their own.
        return make_settings(request.getfixturevalue("database_url"))
    assert shared_postgres_url is not None
    return make_settings(shared_postgres_url)


@pytest.fixture
async def engine(settings: Settings, backend: str) -> AsyncIterator[AsyncEngine]:
    if backend == "sqlite":
        # One shared connection keeps the in-memory database alive for the whole test.
        engine = create_engine(settings, poolclass=StaticPool)
        async with engine.begin() as connection:
            await connection.run_sync(metadata.create_all)
    else:
        engine = create_engine(settings)  # the schema comes from the migrated template
    yield engine
    await engine.dispose()


@pytest.fixture
async def sessionmaker(
    engine: AsyncEngine, settings: Settings, shared_postgres_url: str | None
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    if settings.database_url != shared_postgres_url:
        yield create_sessionmaker(engine)
        return
    # Every session of the test (the app's and the test's own) joins one outer transaction on one
    # connection; their commits become savepoints, and the rollback below leaves nothing behind.
    async with engine.connect() as connection:
        transaction = await connection.begin()
        yield async_sessionmaker(
            bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint"
        )
        await transaction.rollback()


@pytest.fixture
async def session(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session for arranging data and checking what the database holds afterwards."""
    async with sessionmaker() as session:
        yield session


@pytest.fixture
def app(settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]) -> Any:
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: settings
    app.state.sessionmaker = sessionmaker
    return app


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


@pytest.fixture
def make_user(
    sessionmaker: async_sessionmaker[AsyncSession], password_hashes: dict[str, str]
) -> Callable[..., Any]:
    async def make(username: str, *, is_admin: bool = False, is_active: bool = True) -> User:
        password = ADMIN_PASSWORD if is_admin else USER_PASSWORD
        user = User(
            username=username,
            hashed_password=password_hashes[password],
            is_admin=is_admin,
            is_active=is_active,
        )
        async with sessionmaker() as session:
            session.add(user)
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
def token_for(settings: Settings) -> Callable[[User], str]:
    return lambda user: create_access_token(user.id, settings, version=user.token_version).token


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
