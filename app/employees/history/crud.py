"""Audit rows: written in the caller's transaction, so a rolled-back change leaves none behind."""

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Generic, TypeVar, cast

from pydantic_core import to_jsonable_python
from sqlalchemy import Insert, Select, Table, Update, bindparam, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.types import utc_now
from app.db.change_log import note_changes
from app.db.statements import Query
from app.employees.history.models import Actor, AuditAction, EmployeeAudit, SystemActor
from app.employees.models import Employee

audit_table = cast(Table, EmployeeAudit.__table__)  # type: ignore[attr-defined]
employee_table = cast(Table, Employee.__table__)  # type: ignore[attr-defined]

# The fields a change is recorded for: everything a client can write.
AUDITED_FIELDS = ("emp_id", "emp_name", "city", "country", "emp_dob")


def snapshot(employee: Any) -> dict[str, Any]:
    """The audited fields of a record (a row or an instance) as JSON values."""
    return {field: to_jsonable_python(getattr(employee, field)) for field in AUDITED_FIELDS}


def diff(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, Any]:
    """Field-by-field before and after values; unchanged fields are left out."""
    old, new = before or {}, after or {}
    return {
        field: {"before": old.get(field), "after": new.get(field)}
        for field in AUDITED_FIELDS
        if old.get(field) != new.get(field)
    }


# Who made a change, when, and what it changed; the record's id, emp_id and version come from
# the record itself (or, in one statement, from the row the write returns).
_WHO = ("action", "actor_id", "actor_username", "request_id", "changed_at", "changes")
_CHANGE_COLUMNS = ("employee_id", "emp_id", "version", *_WHO)
_INSERT_CHANGE = Query(
    # inline(): the new row's id is not needed back (no RETURNING).
    insert(audit_table).values({name: bindparam(name) for name in _CHANGE_COLUMNS}).inline(),
    tuple,
)


R = TypeVar("R")


def who(
    actor: Actor | SystemActor,
    action: AuditAction,
    changes: dict[str, Any],
    changed_at: datetime | None = None,
) -> dict[str, Any]:
    """The `_WHO` values of an audit row."""
    return {
        "action": action.value,
        "actor_id": actor.user_id,
        "actor_username": actor.username,
        "request_id": actor.request_id,
        "changed_at": changed_at or utc_now(),
        "changes": changes,
    }


def _logged(write: Insert | Update) -> Select[Any]:
    """A write returning the record plus its audit row as one statement (PostgreSQL): a
    data-modifying CTE, so a write that matches no row logs nothing."""
    written = write.cte("written")
    who = [bindparam(name, type_=audit_table.c[name].type) for name in _WHO]
    change = select(written.c.id, written.c.emp_id, written.c.version, *who)
    log = insert(audit_table).from_select(list(_CHANGE_COLUMNS), change).cte("logged")
    return select(*written.c).add_cte(log)


class LoggedWrite(Generic[R]):
    """A write of one record together with its audit row: one statement on PostgreSQL, the
    write and then `record_change` elsewhere (SQLite has no data-modifying CTEs)."""

    def __init__(
        self, write: Insert | Update, action: AuditAction, row: Callable[[Sequence[Any]], R]
    ) -> None:
        self.action = action
        self.write = Query(write, row)
        self.logged = Query(_logged(write), row)

    async def first(
        self, session: AsyncSession, *, actor: Actor, changes: dict[str, Any], **values: Any
    ) -> R | None:
        """The written record (None when the write matched no row, and nothing is logged)."""
        # The change happens when the record says it was updated: the change feed rebuilds
        # the record at each version from its trail (app.changes).
        changed_at = values.get("updated_at")
        note_changes(session)
        if session.get_bind().dialect.name == "postgresql":
            logged = who(actor, self.action, changes, changed_at)
            return await self.logged.first(session, **values, **logged)
        row = await self.write.first(session, **values)
        if row is not None:
            await record_change(
                session=session,
                actor=actor,
                action=self.action,
                employee=row,
                changes=changes,
                changed_at=changed_at,
            )
        return row


async def record_change(
    *,
    session: AsyncSession,
    actor: Actor,
    action: AuditAction,
    employee: Any,
    changes: dict[str, Any],
    version: int | None = None,
    changed_at: datetime | None = None,
) -> None:
    """Write the audit row of a change in the caller's transaction (the change's commit writes
    both or neither); `version` is the record's after the change (a deletion counts one more)."""
    note_changes(session)
    await _INSERT_CHANGE.execute(
        session,
        employee_id=employee.id,
        emp_id=employee.emp_id,
        version=employee.version if version is None else version,
        **who(actor, action, changes, changed_at),
    )


async def find_employee_id(*, session: AsyncSession, emp_id: int) -> uuid.UUID | None:
    """The record `emp_id` names now, or else the last one that held it (deleted or renumbered)."""
    current = select(employee_table.c.id).where(employee_table.c.emp_id == emp_id)
    found: uuid.UUID | None = (await session.execute(current)).scalar_one_or_none()
    if found is not None:
        return found
    latest = (
        select(audit_table.c.employee_id)
        .where(audit_table.c.emp_id == emp_id)
        .order_by(audit_table.c.id.desc())
        .limit(1)
    )
    return (await session.execute(latest)).scalar_one_or_none()


async def list_history(
    *, session: AsyncSession, employee_id: uuid.UUID, offset: int, limit: int
) -> tuple[list[EmployeeAudit], int]:
    """A record's audit rows, newest first."""
    condition = audit_table.c.employee_id == employee_id
    count = select(func.count()).select_from(audit_table).where(condition)
    total = (await session.execute(count)).scalar_one()
    statement = (
        select(EmployeeAudit)
        .where(condition)
        .order_by(audit_table.c.id.desc())
        .offset(offset)
        .limit(limit)
    )
    return list((await session.execute(statement)).scalars()), total
