"""The service through a real PgBouncer in transaction pooling (tests/pgbouncer.py starts it, in
front of the suite's PostgreSQL, with two server connections for the app's twenty).

The API test modules in tests/conftest.py's THROUGH_PGBOUNCER run through it too; here: what
breaks without DATABASE_POOL_MODE=transaction, many concurrent requests over the two server
connections, the health probe, the command line, and that no session state is left behind.
"""

import asyncio
import random
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from httpx import AsyncClient
from sqlalchemy import Integer, String, bindparam, func, literal_column, select, text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from app.cli import cli
from app.core.config import Settings
from app.db.engine import Database, create_engine
from app.db.statements import Query, prepared_statements
from tests.conftest import employee_payload, make_settings
from tests.pg import PostgresServer, asyncpg_dsn
from tests.pgbouncer import (
    INSTALL_HINT,
    PgBouncer,
    find_pgbouncer,
    pgbouncer_version,
    start_pgbouncer,
)

# Each test on the test process's shared database, through its PgBouncer (backend "pgbouncer").
pytestmark = pytest.mark.parametrize("backend", ["pgbouncer"], indirect=True)

# The fast path's statements (app/db/statements.py) take named values only: constants are SQL.
PLUS_ONE = Query(select((bindparam("x", type_=Integer) + literal_column("1")).label("y")), tuple)
SUFFIXED = Query(select(func.concat(bindparam("s", type_=String), literal_column("'-b'"))), tuple)


async def trial(database: Database, *, requests: int = 300) -> list[str]:
    """Statements of four kinds at once, each checked against its own answer: the reader
    (asyncpg, no transaction), a read session (autocommit), a write session (a transaction)
    and the fast path inside it. What went wrong, one line each."""

    async def one(i: int) -> str | None:
        try:
            kind = i % 4
            if kind == 0:
                got: Any = await database.reader.first(PLUS_ONE, x=i)
                expected: Any = (i + 1,)
            elif kind == 1:
                async with database.read_sessions() as session:
                    query = text("SELECT CAST(:v AS text) || 'a'")
                    got = (await session.execute(query, {"v": str(i)})).scalar_one()
                expected = f"{i}a"
            elif kind == 2:
                async with database.sessions() as session:
                    query = text("SELECT CAST(:v AS bigint) * 2, CAST(:w AS text)")
                    got = tuple((await session.execute(query, {"v": i, "w": "z"})).one())
                    await session.commit()
                expected = (i * 2, "z")
            else:
                async with database.sessions() as session:
                    got = await SUFFIXED.first(session, s=str(i))
                    await session.commit()
                expected = (f"{i}-b",)
        except Exception as error:  # what the trial counts, whatever it is
            return f"{i}: {type(error).__name__}: {str(error).splitlines()[0]}"
        return None if got == expected else f"{i}: got {got!r}, expected {expected!r}"

    problems = await asyncio.gather(*(one(i) for i in range(requests)))
    return [problem for problem in problems if problem is not None]


@pytest.fixture(scope="class")
def plain_pgbouncer(postgres_server: PostgresServer | None) -> Iterator[PgBouncer]:
    """A PgBouncer that keeps no prepared statement, as Debian's 1.18, whatever the build."""
    binary = find_pgbouncer()
    if postgres_server is None or binary is None:
        pytest.skip(f"needs TEST_DATABASE_URL and PgBouncer ({INSTALL_HINT})")
    bouncer = start_pgbouncer(binary, postgres_server.url.render_as_string(hide_password=False))
    yield bouncer
    bouncer.stop()


class TestStatements:
    """What a PgBouncer that keeps no prepared statement does to asyncpg's, and what the
    service does about it."""

    @pytest.fixture
    def pgbouncer(self, plain_pgbouncer: PgBouncer) -> PgBouncer:
        return plain_pgbouncer

    async def test_with_asyncpg_statement_cache_on_clients_clash(self, settings: Settings) -> None:
        # The control: session mode (the default) pointed at the same PgBouncer. Statements
        # named per client connection meet other clients' statements of the same name.
        database = Database.from_engine(create_engine(make_settings(settings.database_url)))
        try:
            problems = await trial(database)
        finally:
            await database.engine.dispose()
        assert problems, "the trial did not expose the clash it exists to catch"

    async def test_in_transaction_mode_each_statement_gets_its_own_answer(
        self, settings: Settings
    ) -> None:
        database = Database.from_engine(create_engine(settings))
        try:
            assert await trial(database) == []
        finally:
            await database.engine.dispose()

    async def test_asyncpg_prepares_unnamed_statements_with_its_cache_off(
        self, settings: Settings
    ) -> None:
        # What makes SQLAlchemy's statement cache safe here: it holds unnamed statements, which
        # asyncpg parses again in the same message batch as each execution.
        engine = create_engine(settings)
        try:
            async with engine.connect() as connection:
                driver = (await connection.get_raw_connection()).driver_connection
                assert driver is not None
                statement = await driver.prepare("SELECT 1")
                assert statement.get_name() == ""
        finally:
            await engine.dispose()

    async def test_the_fast_path_keeps_unnamed_statements_in_transaction_mode_only(
        self, settings: Settings
    ) -> None:
        # Its statements then cost one round trip, not a Parse and Describe round trip first.
        assert settings.database_direct_url is not None
        for mode, url, kept in (
            ("transaction", settings.database_url, {}),
            ("session", settings.database_direct_url, None),
        ):
            engine = create_engine(make_settings(url, database_pool_mode=mode))
            try:
                async with engine.connect() as connection:
                    driver = (await connection.get_raw_connection()).driver_connection
                    assert prepared_statements(driver, {}) == kept, mode
            finally:
                await engine.dispose()


# What PgBouncer itself sets per client on its server connections (and sets again for the next).
PGBOUNCER_TRACKED = (
    "client_encoding",
    "datestyle",
    "timezone",
    "standard_conforming_strings",
    "application_name",
)


async def names_on_every_server_connection(bouncer_dsn: str, pool: int, names: str) -> set[str]:
    """What the SQL expression `names` (an array, taken with the backend's pid) lists on any of
    the pool's server connections: `pool` transactions at once, each on a server connection of
    its own."""
    clients = [await asyncpg.connect(bouncer_dsn, statement_cache_size=0) for _ in range(pool)]
    query = f"SELECT pg_backend_pid(), {names}"
    try:
        rows = await asyncio.gather(*(client.fetchrow(query) for client in clients))
    finally:
        for client in clients:
            await client.close()
    assert len({row[0] for row in rows}) == pool, "not every server connection was seen"
    return {name for row in rows for name in row[1] or ()}


async def session_settings_on_every_server_connection(bouncer_dsn: str, pool: int) -> set[str]:
    """Settings changed for the session (SET) on any of the pool's server connections."""
    names = """array_agg(lower(name)) FILTER (WHERE source = 'session')
               FROM pg_settings, pg_sleep(0.2)"""
    found = await names_on_every_server_connection(bouncer_dsn, pool, names)
    return found - set(PGBOUNCER_TRACKED)


async def statements_on_every_server_connection(bouncer_dsn: str, pool: int) -> set[str]:
    """Prepared statements left on any of the pool's server connections."""
    names = """array_agg(name) FILTER (WHERE name IS NOT NULL)
               FROM pg_sleep(0.2) LEFT JOIN pg_prepared_statements ON true"""
    return await names_on_every_server_connection(bouncer_dsn, pool, names)


class TestApi:
    """Named statements and session settings are what a PgBouncer keeping no prepared
    statement (Debian's 1.18) cannot carry: none may be left on its server connections."""

    @pytest.fixture
    def pgbouncer(self, plain_pgbouncer: PgBouncer) -> PgBouncer:
        return plain_pgbouncer

    async def test_a_filtered_export_leaves_no_prepared_statement_behind(
        self, admin_user_client: AsyncClient, settings: Settings, pgbouncer: PgBouncer
    ) -> None:
        # A named statement left on a shared server connection clashes with the same name
        # prepared by another process (asyncpg numbers them per process): "already exists".
        dsn = asyncpg_dsn(make_url(settings.database_url))
        # Other tests share these server connections (one shows the clash with asyncpg's cache
        # on, leaving its statements): what counts is that the exports add none.
        left_before = await statements_on_every_server_connection(dsn, pgbouncer.pool_size)
        for emp_id, city in ((1001, "London"), (1002, "Lyon")):
            payload = employee_payload(emp_id) | {"city": city}
            assert (await admin_user_client.post("/employees/", json=payload)).status_code == 201
        for _ in range(2 * pgbouncer.pool_size):
            response = await admin_user_client.get(
                "/employees/export.csv", params={"city": "Lon", "country": "United"}
            )
            assert response.status_code == 200
            assert [line.split(",")[0] for line in response.text.splitlines()[1:]] == ["1001"]
        left_after = await statements_on_every_server_connection(dsn, pgbouncer.pool_size)
        assert left_after <= left_before

    async def test_no_session_setting_is_left_on_the_server_connections(
        self,
        admin_user_client: AsyncClient,
        normal_user_client: AsyncClient,
        settings: Settings,
        pgbouncer: PgBouncer,
    ) -> None:
        created = await admin_user_client.post("/employees/", json=employee_payload(1001))
        assert created.status_code == 201
        for client in (admin_user_client, normal_user_client):
            assert (await client.get("/employees/1001")).status_code == 200
            assert (await client.get("/employees/?city=Lon")).status_code == 200
        assert (await admin_user_client.get("/employees/export.csv")).status_code == 200
        dsn = asyncpg_dsn(make_url(settings.database_url))
        assert await session_settings_on_every_server_connection(dsn, pgbouncer.pool_size) == set()

    async def test_health_ready_answers_through_pgbouncer(self, client: AsyncClient) -> None:
        response = await client.get("/health/ready")
        assert response.status_code == 200
        assert response.json()["checks"] == {"database": "ok", "migrations": "ok"}


@pytest.fixture(scope="class", params=[None, 100], ids=["plain", "max_prepared_statements"])
def pgbouncer_variant(
    request: pytest.FixtureRequest, postgres_server: PostgresServer | None
) -> Iterator[PgBouncer]:
    """PgBouncer as Debian's 1.18 runs (no prepared statements kept), and with
    max_prepared_statements on where the build has it (1.21+)."""
    binary = find_pgbouncer()
    if postgres_server is None or binary is None:
        pytest.skip(f"needs TEST_DATABASE_URL and PgBouncer ({INSTALL_HINT})")
    version = pgbouncer_version(binary)
    if request.param is not None and version < (1, 21):
        pytest.skip(
            f"PgBouncer {'.'.join(map(str, version))} has no max_prepared_statements (1.21+); "
            "set PGBOUNCER to a newer build to run this"
        )
    bouncer = start_pgbouncer(
        binary,
        postgres_server.url.render_as_string(hide_password=False),
        max_prepared_statements=request.param,
    )
    yield bouncer
    bouncer.stop()


class TestManyRequestsOverTwoServerConnections:
    @pytest.fixture
    def pgbouncer(self, pgbouncer_variant: PgBouncer) -> PgBouncer:
        return pgbouncer_variant

    async def test_every_answer_is_its_own(
        self,
        pgbouncer: PgBouncer,  # named here so that its variants parametrize the test
        admin_user_client: AsyncClient,
        normal_user_client: AsyncClient,
        make_employees: Any,
    ) -> None:
        await make_employees(*(employee_payload(emp_id) for emp_id in range(1, 41)))
        rng = random.Random(20)

        async def read_one(emp_id: int) -> None:
            response = await normal_user_client.get(f"/employees/{emp_id}")
            assert (response.status_code, response.json()["emp_id"]) == (200, emp_id)

        async def list_page(offset: int) -> None:
            response = await normal_user_client.get(f"/employees/?offset={offset}&limit=5")
            assert response.status_code == 200
            assert [row["emp_id"] for row in response.json()] == list(
                range(offset + 1, min(offset + 6, 41))
            )

        async def create(emp_id: int) -> None:
            key = {"Idempotency-Key": f"create-{emp_id}"}
            payload = employee_payload(emp_id, emp_name=f"Name {emp_id}")
            for _ in range(2):  # the retry gets the first answer
                response = await admin_user_client.post("/employees/", json=payload, headers=key)
                assert (response.status_code, response.json()["emp_id"]) == (201, emp_id)

        async def patch(emp_id: int) -> None:
            current = await admin_user_client.get(f"/employees/{emp_id}")
            headers = {"If-Match": current.headers["etag"]}
            body = {"city": f"City {emp_id}"}
            response = await admin_user_client.patch(
                f"/employees/{emp_id}", json=body, headers=headers
            )
            assert (response.status_code, response.json()["city"]) == (200, f"City {emp_id}")
            history = await admin_user_client.get(f"/employees/{emp_id}/history")
            assert history.status_code == 200
            assert history.json()[0]["changes"]["city"]["after"] == f"City {emp_id}"

        jobs = [read_one(rng.randint(1, 40)) for _ in range(120)]
        jobs += [list_page(rng.randrange(0, 40, 5)) for _ in range(30)]
        jobs += [create(1000 + n) for n in range(30)]
        jobs += [patch(emp_id) for emp_id in range(1, 21)]
        rng.shuffle(jobs)
        await asyncio.gather(*jobs)
        listed = await normal_user_client.get("/employees/?limit=100")
        assert len(listed.json()) == 70

    async def test_statements_outlive_transactions_only_where_pgbouncer_keeps_them(
        self,
        pgbouncer: PgBouncer,
        settings: Settings,
        normal_user_client: AsyncClient,
        make_employees: Any,
    ) -> None:
        # With max_prepared_statements (and DATABASE_POOLER_PREPARED_STATEMENTS=true), GET one's
        # statement is prepared once per server connection and its plan serves later requests,
        # each its own transaction; without, nothing named is left to serve them.
        await make_employees(*(employee_payload(emp_id) for emp_id in range(1, 6)))
        for n in range(40):
            assert (await normal_user_client.get(f"/employees/{n % 5 + 1}")).status_code == 200
        reused = """array_agg(statement) FILTER (WHERE generic_plans + custom_plans > 1)
                    FROM pg_sleep(0.2) LEFT JOIN pg_prepared_statements ON true"""
        dsn = asyncpg_dsn(make_url(settings.database_url))
        statements = await names_on_every_server_connection(dsn, pgbouncer.pool_size, reused)
        hot = [sql for sql in statements if "app_user" in sql and "employee" in sql]
        assert bool(hot) is (pgbouncer.max_prepared_statements is not None), statements


@pytest.mark.postgres_only  # a database of its own: no app fixture empties the shared one
class TestCommandLine:
    def test_export_and_import_through_pgbouncer(
        self, settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
    ) -> None:
        monkeypatch.chdir(tmp_path)  # no .env here
        monkeypatch.setenv("DATABASE_URL", settings.database_url)
        monkeypatch.setenv("DATABASE_POOL_MODE", "transaction")
        source = tmp_path / "in.csv"
        rows = [f"{n},Name {n},Paris,France,1990-01-0{n}" for n in range(1, 6)]
        source.write_text("emp_id,emp_name,city,country,emp_dob\n" + "\n".join(rows) + "\n")
        runner = CliRunner()
        imported = runner.invoke(cli, ["import-csv", str(source)])
        assert imported.exit_code == 0, imported.output
        exported = runner.invoke(cli, ["export-csv"])
        assert exported.exit_code == 0, exported.output
        assert exported.stdout.count("Paris") == 5
