"""All SQL that touches employee records."""

from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, Table, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from app.core.errors import ConflictError, NotFoundError
from app.core.types import utc_now
from app.employees.models import Employee, EmployeeCreate, SortField, SortOrder

# The Core table: its typed columns build filters and orderings.
employee_table = cast(Table, Employee.__table__)  # type: ignore[attr-defined]


async def get_employee_by_emp_id(*, session: AsyncSession, emp_id: int) -> Employee | None:
    statement = select(Employee).where(employee_table.c.emp_id == emp_id)
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
    offset: int,
    limit: int,
    city: str | None = None,
    country: str | None = None,
    sort_by: SortField = SortField.emp_id,
    order: SortOrder = SortOrder.asc,
) -> tuple[list[Employee], int]:
    conditions = _filters(city, country)
    total = (
        await session.execute(select(func.count()).select_from(Employee).where(*conditions))
    ).scalar_one()
    columns = employee_table.c
    keys = [columns[sort_by.value]] + ([] if sort_by is SortField.emp_id else [columns.emp_id])
    ordering = [key.desc() if order is SortOrder.desc else key.asc() for key in keys]
    statement = select(Employee).where(*conditions).order_by(*ordering).offset(offset).limit(limit)
    return list((await session.execute(statement)).scalars()), total


async def create_employee(*, session: AsyncSession, data: EmployeeCreate) -> Employee:
    now = utc_now()
    employee = Employee.model_validate(data, update={"created_at": now, "updated_at": now})
    session.add(employee)
    await _commit(session, emp_id=employee.emp_id)
    return employee


async def update_employee(
    *, session: AsyncSession, employee: Employee, changes: dict[str, Any]
) -> Employee:
    if not changes:
        return employee
    original_emp_id = employee.emp_id
    for field, value in changes.items():
        setattr(employee, field, value)
    employee.updated_at = utc_now()
    session.add(employee)
    await _commit(session, emp_id=employee.emp_id, original_emp_id=original_emp_id)
    return employee


async def delete_employee(*, session: AsyncSession, employee: Employee) -> None:
    statement = delete(employee_table).where(employee_table.c.id == employee.id)
    result = cast(CursorResult[Any], await session.execute(statement))
    await session.commit()
    if result.rowcount == 0:
        raise NotFoundError(f"Employee {employee.emp_id} not found")


async def _commit(
    session: AsyncSession, *, emp_id: int, original_emp_id: int | None = None
) -> None:
    try:
        await session.commit()
    except IntegrityError:
        # The unique constraint decides duplicates, so two racing requests cannot both win.
        await session.rollback()
        raise ConflictError(f"An employee with emp_id {emp_id} already exists") from None
    except StaleDataError:
        # The row was deleted between our read and our write.
        await session.rollback()
        raise NotFoundError(f"Employee {original_emp_id or emp_id} not found") from None
