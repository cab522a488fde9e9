"""All SQL that touches employee records; every change writes its audit row in the same commit."""

import json
from typing import Any, NoReturn, cast

from pydantic_core import to_jsonable_python
from sqlalchemy import (
    ColumnElement,
    CursorResult,
    Select,
    Table,
    delete,
    func,
    literal,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import crud as audit
from app.audit.models import Actor, AuditAction
from app.core.errors import ConflictError, NotFoundError, PreconditionFailedError
from app.core.types import utc_now
from app.employees.models import Employee, EmployeeCreate, SortField, SortOrder

# The Core table: its typed columns build filters and orderings.
employee_table = cast(Table, Employee.__table__)  # type: ignore[attr-defined]


async def get_employee_by_emp_id(
    *, session: AsyncSession, emp_id: int, for_update: bool = False
) -> Employee | None:
    """One record; `for_update` locks its row until the commit (PostgreSQL), so that writers
    queue up behind each other instead of failing on each other's new version."""
    statement = select(Employee).where(employee_table.c.emp_id == emp_id)
    if for_update:
        statement = statement.with_for_update()
    return (await session.execute(statement)).scalar_one_or_none()


def _filters(city: str | None, country: str | None) -> list[ColumnElement[bool]]:
    # autoescape: a client's "%" or "_" matches itself, not "anything".
    conditions = []
    if city is not None:
        conditions.append(employee_table.c.city.icontains(city, autoescape=True))
    if country is not None:
        conditions.append(employee_table.c.country.icontains(country, autoescape=True))
    return conditions


async def list_employees(
    *,
    session: AsyncSession,
    limit: int,
    offset: int = 0,
    after: tuple[Any, int] | None = None,
    city: str | None = None,
    country: str | None = None,
    sort_by: SortField = SortField.emp_id,
    order: SortOrder = SortOrder.asc,
) -> tuple[list[Employee], bool]:
    """One page in (sort key, emp_id) order, and whether more rows follow it.

    `after` is a keyset position: the page starts past that row through an index range scan, so
    the thousandth page costs what the first does; `offset` skips rows one by one.
    """
    conditions = _filters(city, country)
    columns = employee_table.c
    keys = [columns[sort_by.value]] + ([] if sort_by is SortField.emp_id else [columns.emp_id])
    descending = order is SortOrder.desc
    if after is not None:
        # A row comparison, (key, emp_id) > (last key, last emp_id): one index range condition.
        row, past = tuple_(*keys), tuple_(*(after[1:] if len(keys) == 1 else after))
        conditions.append(row < past if descending else row > past)
    ordering = [key.desc() if descending else key.asc() for key in keys]
    statement = select(Employee).where(*conditions).order_by(*ordering).limit(limit + 1)
    if offset:
        # Deferred join: the rows to skip are counted in the (sort key, emp_id) index alone
        # (an index-only scan), and only the page's rows are read from the table, instead of
        # fetching every skipped row from the heap.
        page = (
            select(columns.emp_id)
            .where(*conditions)
            .order_by(*ordering)
            .offset(offset)
            .limit(limit + 1)
            .subquery()
        )
        statement = (
            select(Employee)
            .join(page, columns.emp_id == page.c.emp_id)
            .order_by(*ordering)
            .limit(limit + 1)
        )
    rows = list((await session.execute(statement)).scalars())
    return rows[:limit], len(rows) > limit


async def count_employees(
    *, session: AsyncSession, city: str | None, country: str | None, exact_up_to: int
) -> tuple[int, bool]:
    """How many rows match, and whether that number is exact.

    On PostgreSQL, counting a million rows would cost more than the page itself: counts above
    `exact_up_to` are the planner's estimate instead (pg_class.reltuples for the whole table,
    the plan's row estimate for a filter), which ANALYZE keeps close.
    """
    conditions = _filters(city, country)
    if (await session.connection()).dialect.name != "postgresql":
        every = select(func.count()).select_from(employee_table).where(*conditions)
        return (await session.execute(every)).scalar_one(), True
    if not conditions:
        estimate = (await session.execute(text(TABLE_ESTIMATE))).scalar_one()
        if estimate > exact_up_to:
            return int(estimate), False
    capped = select(literal(1)).select_from(employee_table).where(*conditions)
    limited = select(func.count()).select_from(capped.limit(exact_up_to + 1).subquery())
    count = (await session.execute(limited)).scalar_one()
    if count <= exact_up_to:
        return count, True
    planned = await _planned_rows(session, capped)
    return max(count, planned), False


TABLE_ESTIMATE = "SELECT reltuples::bigint FROM pg_class WHERE oid = 'employee'::regclass"


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


def build_employee(data: EmployeeCreate) -> Employee:
    """A new record, complete before it is written: id, timestamps and version 1."""
    now = utc_now()
    return Employee.model_validate(data, update={"created_at": now, "updated_at": now})


async def insert_employee(*, session: AsyncSession, employee: Employee, actor: Actor) -> Employee:
    """Write a built record and its audit row, with whatever else the session holds."""
    emp_id = employee.emp_id
    session.add(employee)
    changes = audit.diff(None, audit.snapshot(employee))
    audit.record_change(
        session=session, actor=actor, action=AuditAction.create, employee=employee, changes=changes
    )
    try:
        await session.commit()
    except IntegrityError:
        # The unique constraint decides duplicates, so two racing requests cannot both win.
        await session.rollback()
        raise ConflictError(f"An employee with emp_id {emp_id} already exists") from None
    return employee


async def create_employee(*, session: AsyncSession, data: EmployeeCreate, actor: Actor) -> Employee:
    return await insert_employee(session=session, employee=build_employee(data), actor=actor)


async def update_employee(
    *,
    session: AsyncSession,
    employee: Employee,
    changes: dict[str, Any],
    actor: Actor,
    conditional: bool = False,
) -> Employee:
    """Apply `changes` to the version of the record that was read, and only to that version.

    A change that alters nothing writes nothing: no new version, no audit row.
    """
    before = audit.snapshot(employee)
    delta = audit.diff(before, before | to_jsonable_python(changes))
    if not delta:
        return employee
    statement = (
        update(employee_table)
        .where(employee_table.c.id == employee.id, employee_table.c.version == employee.version)
        .values(**changes, version=employee.version + 1, updated_at=utc_now())
        .returning(*employee_table.c)
    )
    target_emp_id = changes.get("emp_id", employee.emp_id)
    try:
        row = (await session.execute(statement)).one_or_none()
    except IntegrityError:
        await session.rollback()
        raise ConflictError(f"An employee with emp_id {target_emp_id} already exists") from None
    if row is None:
        await _refuse_stale_write(session, employee, conditional=conditional)
    updated = Employee.model_validate(dict(row._mapping))
    audit.record_change(
        session=session, actor=actor, action=AuditAction.update, employee=updated, changes=delta
    )
    await session.commit()
    return updated


async def delete_employee(
    *, session: AsyncSession, employee: Employee, actor: Actor, conditional: bool = False
) -> None:
    statement = delete(employee_table).where(
        employee_table.c.id == employee.id, employee_table.c.version == employee.version
    )
    result = cast(CursorResult[Any], await session.execute(statement))
    if result.rowcount == 0:
        await _refuse_stale_write(session, employee, conditional=conditional)
    audit.record_change(
        session=session,
        actor=actor,
        action=AuditAction.delete,
        employee=employee,
        changes=audit.diff(audit.snapshot(employee), None),
        version=employee.version + 1,
    )
    await session.commit()


async def _refuse_stale_write(
    session: AsyncSession, employee: Employee, *, conditional: bool
) -> NoReturn:
    """The write matched no row: the record was deleted, or another writer got there first."""
    emp_id = employee.emp_id  # read before the rollback expires the instance
    still_there = (
        await session.execute(select(employee_table.c.id).where(employee_table.c.id == employee.id))
    ).first()
    await session.rollback()
    if still_there is None:
        raise NotFoundError(f"Employee {emp_id} not found")
    if conditional:
        raise PreconditionFailedError(
            "The record changed since you read it; fetch it again for the current ETag"
        )
    # Only without row locks (SQLite): the record changed between our read and our write.
    raise ConflictError(f"Employee {emp_id} was changed by another request; retry")
