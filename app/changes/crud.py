"""The feed's SQL: audit rows in commit-safe order, and the records as each event left them.

Rows are read in (tx_id, id) order. On PostgreSQL only rows of transactions numbered below the
snapshot's horizon are served (app.db.transaction_id): every transaction that could still
commit rows before them has ended, so a reader that keeps the last position it was given never
misses a row that commits late and never sees one twice.
"""

import uuid
from collections.abc import Iterable, Sequence
from typing import Any, cast

from pydantic_core import to_jsonable_python
from sqlalchemy import Row, Select, Table, exists, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from app.changes.events import TYPES, Change, EventPosition
from app.db.transaction_id import OLDEST_RUNNING_TRANSACTION_ID
from app.employees.history.models import AuditAction, EmployeeAudit
from app.employees.models import Employee, EmployeeRead

audit = cast(Table, EmployeeAudit.__table__)  # type: ignore[attr-defined]
employee_table = cast(Table, Employee.__table__)  # type: ignore[attr-defined]
_EVENT_COLUMNS = (
    audit.c.tx_id,
    audit.c.id,
    audit.c.employee_id,
    audit.c.emp_id,
    audit.c.action,
    audit.c.version,
    audit.c.changed_at,
    audit.c.changes,
)
_RECORD_FIELDS = tuple(EmployeeRead.model_fields)


def _settled(statement: Select[Any], session: AsyncSession) -> Select[Any]:
    """Only rows no transaction still running could be ordered before (PostgreSQL)."""
    if session.get_bind().dialect.name == "postgresql":
        return statement.where(audit.c.tx_id < OLDEST_RUNNING_TRANSACTION_ID)
    return statement


def _after(statement: Select[Any], after: EventPosition | None) -> Select[Any]:
    if after is None:
        return statement
    return statement.where(tuple_(audit.c.tx_id, audit.c.id) > tuple_(after.tx, after.id))


async def read_changes(
    *, session: AsyncSession, after: EventPosition | None, limit: int
) -> list[Change]:
    """Up to `limit` events strictly after `after` (None: from the first), oldest first."""
    statement = select(*_EVENT_COLUMNS).order_by(audit.c.tx_id, audit.c.id).limit(limit)
    rows = (await session.execute(_settled(_after(statement, after), session))).all()
    if not rows:
        return []
    records = await _records_at(session, rows)
    return [_change(row, records.get((row.employee_id, row.version))) for row in rows]


async def current_position(*, session: AsyncSession) -> EventPosition | None:
    """The last position `read_changes` could serve now (None: no event yet): a reader that
    starts here gets every event committed from now on."""
    statement = select(audit.c.tx_id, audit.c.id).order_by(audit.c.tx_id.desc(), audit.c.id.desc())
    row = (await session.execute(_settled(statement.limit(1), session))).first()
    return None if row is None else EventPosition(row.tx_id, row.id)


async def event_exists(*, session: AsyncSession, position: EventPosition) -> bool:
    found = exists().where(audit.c.id == position.id, audit.c.tx_id == position.tx)
    return bool((await session.execute(select(found))).scalar())


def _change(row: Row[Any], record: dict[str, Any] | None) -> Change:
    return Change(
        position=EventPosition(row.tx_id, row.id),
        employee_id=row.employee_id,
        type=TYPES[row.action],
        emp_id=row.emp_id,
        version=row.version,
        occurred_at=row.changed_at,
        changed_fields=list(row.changes),
        employee=record,
    )


async def _records_at(
    session: AsyncSession, events: Sequence[Row[Any]]
) -> dict[tuple[uuid.UUID, int], dict[str, Any]]:
    """The record as each create or update left it, keyed by (record, version): the fields'
    `after` values folded over the record's trail up to that version, which ends with it."""
    wanted = {(row.employee_id, row.version) for row in events if row.action != AuditAction.delete}
    if not wanted:
        return {}
    ids = {employee_id for employee_id, _ in wanted}
    trail = (
        select(audit.c.employee_id, audit.c.action, audit.c.version)
        .add_columns(audit.c.changed_at, audit.c.changes)
        .where(audit.c.employee_id.in_(ids), audit.c.id <= max(row.id for row in events))
        .order_by(audit.c.employee_id, audit.c.id)
    )
    records: dict[tuple[uuid.UUID, int], dict[str, Any]] = {}
    state: dict[str, Any] = {}
    current: uuid.UUID | None = None
    for row in (await session.execute(trail)).all():
        if row.employee_id != current:
            current, state = row.employee_id, {"id": to_jsonable_python(row.employee_id)}
        at = to_jsonable_python(row.changed_at)
        if row.action == AuditAction.create:
            state["created_at"] = at
        state.update({name: change["after"] for name, change in row.changes.items()})
        state |= {"updated_at": at, "version": row.version}
        if (row.employee_id, row.version) in wanted:
            records[(row.employee_id, row.version)] = _in_order(state)
    await _complete_untracked(session, records)
    return records


async def _complete_untracked(
    session: AsyncSession, records: dict[tuple[uuid.UUID, int], dict[str, Any]]
) -> None:
    """Records whose trail has no create row (created before the audit trail existed): the
    fields no event names are taken from the record as it is now."""
    partial = {key for key, record in records.items() if len(record) < len(_RECORD_FIELDS)}
    if not partial:
        return
    now = await _current_records(session, {employee_id for employee_id, _ in partial})
    for key in partial:
        records[key] = _in_order({**now.get(key[0], {}), **records[key]})


def _in_order(fields: dict[str, Any]) -> dict[str, Any]:
    """The fields in `EmployeeRead`'s order, as GET answers them."""
    return {name: fields[name] for name in _RECORD_FIELDS if name in fields}


async def _current_records(
    session: AsyncSession, ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, dict[str, Any]]:
    statement = select(*(employee_table.c[name] for name in _RECORD_FIELDS)).where(
        employee_table.c.id.in_(list(ids))
    )
    rows = (await session.execute(statement)).all()
    return {row.id: to_jsonable_python(row._asdict()) for row in rows}
