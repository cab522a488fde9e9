"""`X-Total-Count`: counted where that is cheap, the planner's estimate above `exact_up_to`
(PostgreSQL), and the last page of an offset walk counts itself.
"""

import json
from collections.abc import MutableMapping
from typing import Any

from cachetools import TTLCache
from sqlalchemy import Select, func, literal, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.employees.crud import employee_table
from app.employees.listing import list_filters

# The planner's estimates, remembered for a few seconds per filter: a client walking the pages
# of one filter would otherwise have every page planned twice (the page, and EXPLAIN for its
# count). An estimate a few seconds old is as good as a new one.
Estimates = MutableMapping[tuple[str | None, str | None], int]
ESTIMATE_SECONDS = 5.0


def estimate_cache() -> Estimates:
    return TTLCache(maxsize=1024, ttl=ESTIMATE_SECONDS)


async def list_total(
    *,
    session: AsyncSession,
    served: int,
    more: bool,
    offset: int | None,
    city: str | None,
    country: str | None,
    exact_up_to: int,
    estimates: Estimates | None = None,
) -> tuple[int, bool]:
    """`X-Total-Count` of a page of `served` rows (`offset` None: a keyset page), and whether
    it is exact; never below the rows known to exist."""
    if offset is not None and not more and (served or not offset):
        return offset + served, True
    total, exact = await count_employees(
        session=session,
        city=city,
        country=country,
        exact_up_to=exact_up_to,
        estimates=estimates,
    )
    if exact:
        return total, True
    return max(total, (offset or 0) + served + more), False


async def count_employees(
    *,
    session: AsyncSession,
    city: str | None,
    country: str | None,
    exact_up_to: int,
    estimates: Estimates | None = None,
) -> tuple[int, bool]:
    """How many rows match, and whether exactly: above `exact_up_to` on PostgreSQL, the
    planner's estimate (remembered in `estimates` for a few seconds); below, at most
    `exact_up_to` + 1 rows are counted."""
    if (await session.connection()).dialect.name != "postgresql":
        conditions = list_filters(city, country)
        every = select(func.count()).select_from(employee_table).where(*conditions)
        return (await session.execute(every)).scalar_one(), True
    key = (city, country)
    estimate = None if estimates is None else estimates.get(key)
    if estimate is None:
        # No statement is built when the estimate is remembered (most pages of a walk).
        if city is None and country is None:
            estimate = (await session.execute(TABLE_ESTIMATE)).scalar_one()
        else:
            estimate = await _planned_rows(session, _matching(city, country))
        if estimates is not None:
            estimates[key] = estimate
    if estimate > exact_up_to:
        return int(estimate), False
    matching = _matching(city, country).limit(exact_up_to + 1)
    capped = select(func.count()).select_from(matching.subquery())
    count = (await session.execute(capped)).scalar_one()
    # Over the cap the estimate was wrong: the cap is the best lower bound known.
    return count, count <= exact_up_to


def _matching(city: str | None, country: str | None) -> Select[Any]:
    return select(literal(1)).select_from(employee_table).where(*list_filters(city, country))


# -1 before the table's first VACUUM or ANALYZE: then it is counted.
TABLE_ESTIMATE = text("SELECT reltuples::bigint FROM pg_class WHERE oid = 'employee'::regclass")


async def _planned_rows(session: AsyncSession, statement: Select[Any]) -> int:
    """The planner's row estimate for a statement: EXPLAIN, with the values still bound."""
    connection = await session.connection()
    compiled = statement.compile(dialect=connection.dialect)
    values = tuple(compiled.params[name] for name in compiled.positiontup or ())
    result = await connection.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {compiled}", values)
    plan = result.scalar_one()
    # asyncpg hands back the json column decoded; other drivers give the text.
    plan = json.loads(plan) if isinstance(plan, str) else plan
    return int(plan[0]["Plan"]["Plan Rows"])
