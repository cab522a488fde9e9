"""The indexes do the work: EXPLAIN (ANALYZE) of the statements the API really sends (PostgreSQL).

30,000 rows are enough for the planner to prefer an index over reading the table, if the index
fits the query; each test captures the SQL a crud call sends and asks PostgreSQL how it ran it.
"""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, contextmanager
from typing import Any

import asyncpg
import pytest
from sqlalchemy import event, insert, make_url, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlmodel import col

from app.accounts import crud as accounts_crud
from app.accounts.models import SignIn, User
from app.db.engine import create_engine
from app.employees import counting, crud, listing
from app.employees.models import SortField, SortOrder
from tests.conftest import make_settings, require_postgres
from tests.pg import asyncpg_dsn

ROWS = 30_000
FILL = """
INSERT INTO employee (id, emp_id, emp_name, city, country, emp_dob, created_at, updated_at)
SELECT gen_random_uuid(), g, 'Name ' || (g * 7919 % :rows),
       (ARRAY['London', 'Paris', 'Berlin', 'Madrid', 'Rome', 'Lisbon', 'Vienna', 'Oslo'])[g % 8 + 1]
         || ' ' || (g % 500),
       'Country ' || (g % 40), DATE '1960-01-01' + (g % 15000), now(), now()
FROM generate_series(1, :rows) AS g
"""


ACCOUNTS = 1_000
SIGN_INS_PER_ACCOUNT = 20
# Every account's sign-ins, every other one revoked: what the account check joins by `sid`.
FILL_SIGN_INS = """
INSERT INTO sign_in (id, user_id, created_at, expires_at, revoked_at)
SELECT gen_random_uuid(), app_user.id, now(), now() + interval '7 days',
       CASE WHEN g % 2 = 0 THEN now() END
FROM app_user, generate_series(1, :per_account) AS g
"""


async def _fill(url: str) -> None:
    # Filling takes longer than the service's statement timeout allows a request.
    connection = await asyncpg.connect(asyncpg_dsn(make_url(url)), command_timeout=120)
    try:
        await connection.execute(FILL.replace(":rows", "$1"), ROWS)
        # Statistics, and the visibility map that lets an index alone answer which rows to skip.
        await connection.execute("VACUUM ANALYZE employee")
    finally:
        await connection.close()
    # The accounts as the model makes them (every column's default), then their sign-ins.
    engine = create_engine(make_settings(url))
    try:
        async with engine.begin() as transaction:
            users = [User(username=f"user.{n}", hashed_password="-") for n in range(ACCOUNTS)]
            await transaction.execute(insert(User), [user.model_dump() for user in users])
            per_account = str(SIGN_INS_PER_ACCOUNT)
            await transaction.exec_driver_sql(FILL_SIGN_INS.replace(":per_account", per_account))
        async with engine.connect() as connection:
            autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
            await autocommit.exec_driver_sql("VACUUM ANALYZE app_user, sign_in")
    finally:
        await engine.dispose()


async def a_live_sign_in(engine: AsyncEngine) -> tuple[uuid.UUID, uuid.UUID]:
    """(account id, id of one of its live sign-ins) from the filled database."""
    async with engine.connect() as connection:
        result = await connection.execute(
            select(SignIn.user_id, SignIn.id).where(col(SignIn.revoked_at).is_(None)).limit(1)
        )
        user_id, sign_in_id = result.one()
    return user_id, sign_in_id


def assert_key_lookups(plan: dict[str, Any]) -> None:
    """The account and its sign-in are each read through their primary key, one row each."""
    for relation, index in (("app_user", "pk_app_user"), ("sign_in", "pk_sign_in")):
        (node,) = [n for n in nodes(plan) if n.get("Relation Name") == relation]
        assert node["Node Type"] == "Index Scan", node
        assert node["Index Name"] == index
        assert node["Actual Rows"] == 1


@pytest.fixture(scope="module")
def filled_url(postgres_server: Any, postgres_template: Any) -> Iterator[str]:
    """One filled database for the module: the tests only read it."""
    server = require_postgres(postgres_server)
    name = asyncio.run(server.create_database(template=postgres_template))
    url = server.url_for(name)
    asyncio.run(_fill(url))
    yield url
    asyncio.run(server.drop_database(name))


@pytest.fixture
async def filled(filled_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(make_settings(filled_url))
    yield engine
    await engine.dispose()


@contextmanager
def captured(engine: AsyncEngine) -> Iterator[list[tuple[str, Any]]]:
    statements: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        statements.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


async def explain(
    engine: AsyncEngine | AsyncConnection, statement: str, parameters: Any
) -> dict[str, Any]:
    async with AsyncExitStack() as stack:
        connection = engine
        if isinstance(engine, AsyncEngine):
            connection = await stack.enter_async_context(engine.connect())
        assert isinstance(connection, AsyncConnection)
        result = await connection.exec_driver_sql(
            f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", parameters
        )
        plan = result.scalar_one()
    plan = json.loads(plan) if isinstance(plan, str) else plan
    return plan[0]["Plan"]


def nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan]
    for child in plan.get("Plans", []):
        found += nodes(child)
    return found


async def page_plan(engine: AsyncEngine, **kwargs: Any) -> dict[str, Any]:
    with captured(engine) as statements:
        async with AsyncSession(engine) as session:
            await listing.list_employees(session=session, **kwargs)
    (statement,) = [s for s in statements if s[0].lstrip().startswith("SELECT employee")]
    return await explain(engine, *statement)


@pytest.mark.parametrize("sort_by", list(SortField))
@pytest.mark.parametrize("order", list(SortOrder))
async def test_a_deep_keyset_page_is_an_index_range_scan(filled, sort_by, order):
    # A position two thirds of the way down the order, as a cursor would name it.
    values = {
        SortField.emp_id: 20_000,
        SortField.emp_name: "Name 2",
        SortField.emp_dob: "2000-01-01",
        SortField.city: "Paris 4",
        SortField.country: "Country 3",
    }
    value: Any = values[sort_by]
    if sort_by is SortField.emp_dob:
        from datetime import date

        value = date.fromisoformat(value)
    plan = await page_plan(filled, limit=100, after=(value, 20_000), sort_by=sort_by, order=order)
    kinds = {node["Node Type"] for node in nodes(plan)}
    assert "Seq Scan" not in kinds and "Sort" not in kinds, kinds
    scans = [node for node in nodes(plan) if node["Node Type"].startswith("Index")]
    assert scans and scans[0]["Index Name"].endswith("emp_id")
    # Only the page (and the one row that says another page follows) is read.
    assert scans[0]["Actual Rows"] <= 101


async def test_a_rare_city_substring_uses_the_trigram_index(filled):
    plan = await page_plan(filled, limit=20, city="nna 49", sort_by=SortField.emp_name)
    used = {node.get("Index Name") for node in nodes(plan)}
    assert "ix_employee_city_trgm" in used, used
    assert "Seq Scan" not in {node["Node Type"] for node in nodes(plan)}


async def test_a_common_city_substring_reads_no_more_than_it_needs(filled):
    # Most rows match: walking the name index backwards and stopping after 20 beats any filter.
    plan = await page_plan(
        filled, limit=20, city="o", sort_by=SortField.emp_name, order=SortOrder.desc
    )
    assert "Seq Scan" not in {node["Node Type"] for node in nodes(plan)}


async def test_the_count_of_a_big_list_is_not_a_full_count(filled):
    with captured(filled) as statements:
        async with AsyncSession(filled) as session:
            total, exact = await counting.count_employees(
                session=session, city=None, country=None, exact_up_to=10_000
            )
    assert not exact and abs(total - ROWS) < ROWS * 0.1
    assert len(statements) == 1 and "reltuples" in statements[0][0]


async def test_a_filter_with_many_matches_is_estimated_without_counting(filled):
    # "on" is in London, Lisbon: a quarter of the rows, well above the limit.
    with captured(filled) as statements:
        async with AsyncSession(filled) as session:
            total, exact = await counting.count_employees(
                session=session, city="on", country=None, exact_up_to=1_000
            )
    assert not exact and abs(total - ROWS / 4) < ROWS / 4 * 0.5
    assert len(statements) == 1 and statements[0][0].startswith("EXPLAIN")


async def test_an_estimate_is_reused_for_a_few_seconds(filled):
    estimates = counting.estimate_cache()

    async def count(city: str) -> tuple[int, bool]:
        async with AsyncSession(filled) as session:
            return await counting.count_employees(
                session=session, city=city, country=None, exact_up_to=1_000, estimates=estimates
            )

    with captured(filled) as statements:
        first = await count("on")
        again = await count("on")
        other = await count("ar")
    assert first == again and not first[1]
    # The second page of the same filter asks nothing; another filter is planned.
    assert [s.split()[0] for s, _ in statements] == ["EXPLAIN", "EXPLAIN"]
    assert "ar" in statements[1][1] and other[0] > 1_000


async def test_a_filter_with_few_matches_is_counted_exactly(filled):
    with captured(filled) as statements:
        async with AsyncSession(filled) as session:
            total, exact = await counting.count_employees(
                session=session, city="Paris 17", country=None, exact_up_to=1_000
            )
    # g % 8 == 1 and g % 500 in (17, 170..179): 8 of every 4000 rows.
    assert exact and total == sum(
        1 for g in range(1, ROWS + 1) if g % 8 == 1 and str(g % 500).startswith("17")
    )
    assert [s.split()[0] for s, _ in statements] == ["EXPLAIN", "SELECT"]


@pytest.mark.parametrize("plan_cache_mode", ["force_custom_plan", "force_generic_plan"])
async def test_one_employee_by_emp_id_is_a_unique_index_lookup(filled, plan_cache_mode):
    # The statement GET /employees/{emp_id} sends: the caller's account and the token's sign-in,
    # the record joined to them. It runs on the driver (app.db.statements), past SQLAlchemy's
    # execution events: its SQL is the statement compiled for this dialect, as app.db.statements
    # sends it, prepared (after five runs PostgreSQL may reuse a plan made without the values).
    compiled = crud._EMPLOYEE_AS.compiled(filled.dialect)
    assert compiled.names == ("emp_id", "sign_in_id", "user_id")
    user_id, sign_in_id = await a_live_sign_in(filled)
    async with filled.connect() as connection:
        await connection.exec_driver_sql(f"SET plan_cache_mode = {plan_cache_mode}")
        await connection.exec_driver_sql(f"PREPARE one AS {compiled.sql}")
        # Our own integer and UUIDs, written out: EXECUTE plans the statement as prepared.
        values = f"12345, '{sign_in_id}', '{user_id}'"
        plan = await explain(connection, f"EXECUTE one({values})", ())
        await connection.rollback()
    (employee,) = [n for n in nodes(plan) if n.get("Relation Name") == "employee"]
    assert employee["Node Type"] == "Index Scan"
    assert employee["Index Name"] == "uq_employee_emp_id"
    assert_key_lookups(plan)


async def test_the_account_check_reads_the_sign_in_by_its_primary_key(filled):
    # The statement behind CurrentPrincipal and AdminUser (every other route's caller).
    compiled = accounts_crud._ACCESS.compiled(filled.dialect)
    assert compiled.names == ("sign_in_id", "user_id")
    user_id, sign_in_id = await a_live_sign_in(filled)
    async with filled.connect() as connection:
        plan = await explain(connection, compiled.sql, (sign_in_id, user_id))
    assert_key_lookups(plan)


async def test_a_write_locks_its_record_through_the_unique_index(filled):
    # The statement PUT, PATCH and DELETE send: the account, and the record locked (LATERAL).
    compiled = crud._LOCK_AS.compiled(filled.dialect)
    assert "FOR UPDATE" in compiled.sql
    assert compiled.names == ("emp_id", "sign_in_id", "user_id")
    user_id, sign_in_id = await a_live_sign_in(filled)
    async with filled.connect() as connection:  # EXPLAIN ANALYZE locks too: in a transaction
        plan = await explain(connection, compiled.sql, (12_345, sign_in_id, user_id))
        await connection.rollback()
    (employee,) = [n for n in nodes(plan) if n.get("Relation Name") == "employee"]
    assert employee["Node Type"] == "Index Scan"
    assert employee["Index Name"] == "uq_employee_emp_id"
    assert_key_lookups(plan)


async def test_a_deep_offset_page_skips_rows_in_the_index_only(filled):
    plan = await page_plan(filled, limit=100, offset=20_000)
    skipping = [n for n in nodes(plan) if n["Node Type"] == "Index Only Scan"]
    assert skipping and skipping[0]["Heap Fetches"] == 0
    fetched = [n for n in nodes(plan) if n["Node Type"] == "Index Scan"]
    # Only the page's rows come from the table.
    assert sum(n["Actual Rows"] * n.get("Actual Loops", 1) for n in fetched) <= 101


async def test_a_deep_offset_page_stays_cheap_under_a_generic_plan(filled):
    # asyncpg prepares statements; after five runs PostgreSQL may reuse a plan made without the
    # bound values. That plan must still look up only the page's rows, not merge-join the table.
    with captured(filled) as statements:
        async with AsyncSession(filled) as session:
            await listing.list_employees(session=session, limit=100, offset=20_000)
    ((statement, parameters),) = statements
    values = ", ".join(str(value) for value in parameters)
    async with filled.connect() as connection:
        await connection.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
        await connection.exec_driver_sql(f"PREPARE page AS {statement}")
        result = await connection.exec_driver_sql(
            f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE page({values})"
        )
        plan = result.scalar_one()
        await connection.rollback()
    plan = (json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]
    fetched = [n for n in nodes(plan) if n["Node Type"] == "Index Scan"]
    assert sum(n["Actual Rows"] * n.get("Actual Loops", 1) for n in fetched) <= 101, plan
