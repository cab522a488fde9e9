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
from sqlalchemy import Row, Select, Table, exists, select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from app.changes.events import CHANNEL, TYPES, Change, EventPosition
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


async def held_back(*, session: AsyncSession) -> bool:
    """Whether a committed event waits behind a transaction that started before it and is
    still running (PostgreSQL): it is served once that ends, which need not notify anyone."""
    if session.get_bind().dialect.name != "postgresql":
        return False
    waiting = exists().where(audit.c.tx_id >= OLDEST_RUNNING_TRANSACTION_ID)
    return bool((await session.execute(select(waiting))).scalar())


async def announce(*, session: AsyncSession) -> None:
    """Tell every worker and replica listening (PostgreSQL) that changes committed; commits.
    In a transaction of its own, after the writers' commits: a NOTIFY in the writing
    transaction would queue its commit behind every other notifying one (PostgreSQL holds one
    lock across a notifying transaction's commit, its WAL flush included); this one flushes
    nothing (`synchronous_commit` off: a notification is not worth a disk write)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    await session.execute(text("SET LOCAL synchronous_commit TO off"))
    await session.execute(text(f"NOTIFY {CHANNEL}"))
    await session.commit()


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
    """The record as each create or update left it, keyed by (record, version): the record as
    it is now where it is still at that version (a live reader's usual case), or else rebuilt
    from its trail."""
    wanted = {(row.employee_id, row.version) for row in events if row.action != AuditAction.delete}
    if not wanted:
        return {}
    now = await _current_records(session, {employee_id for employee_id, _ in wanted})
    records = {
        key: now[key[0]] for key in wanted if key[0] in now and now[key[0]]["version"] == key[1]
    }
    earlier = wanted - records.keys()
    if earlier:
        records |= await _rebuilt(session, earlier, now)
    return records


async def _rebuilt(
    session: AsyncSession,
    wanted: set[tuple[uuid.UUID, int]],
    now: dict[uuid.UUID, dict[str, Any]],
) -> dict[tuple[uuid.UUID, int], dict[str, Any]]:
    """The fields' `after` values folded over each record's trail up to the version wanted."""
    trail = (
        select(audit.c.employee_id, audit.c.action, audit.c.version)
        .add_columns(audit.c.changed_at, audit.c.changes)
        .where(audit.c.employee_id.in_({employee_id for employee_id, _ in wanted}))
        .order_by(audit.c.employee_id, audit.c.id)
    )
    trails: dict[uuid.UUID, list[Row[Any]]] = {}
    for row in (await session.execute(trail)).all():
        trails.setdefault(row.employee_id, []).append(row)
    records: dict[tuple[uuid.UUID, int], dict[str, Any]] = {}
    for employee_id, rows in trails.items():
        state = _before_trail(employee_id, rows, now.get(employee_id, {}))
        for row in rows:
            at = to_jsonable_python(row.changed_at)
            if row.action == AuditAction.create:
                state["created_at"] = at
            state.update({name: change["after"] for name, change in row.changes.items()})
            state |= {"updated_at": at, "version": row.version}
            if (employee_id, row.version) in wanted:
                records[(employee_id, row.version)] = _in_order(state)
    return records


def _before_trail(
    employee_id: uuid.UUID, rows: Sequence[Row[Any]], now: dict[str, Any]
) -> dict[str, Any]:
    """The record before its first audit row: nothing for a record created with one; for a
    record written before the trail existed, each field as the first change of it found it,
    or as it is now if no change touched it."""
    state = {**now, "id": to_jsonable_python(employee_id)}
    touched: set[str] = set()
    for row in rows:
        for name, change in row.changes.items():
            if name not in touched:
                touched.add(name)
                state[name] = change["before"]
    return state


async def _current_records(
    session: AsyncSession, ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, dict[str, Any]]:
    statement = select(*(employee_table.c[name] for name in _RECORD_FIELDS)).where(
        employee_table.c.id.in_(list(ids))
    )
    rows = (await session.execute(statement)).all()
    return {row.id: to_jsonable_python(row._asdict()) for row in rows}


def _in_order(fields: dict[str, Any]) -> dict[str, Any]:
    """The fields in `EmployeeRead`'s order, as GET answers them."""
    return {name: fields[name] for name in _RECORD_FIELDS if name in fields}
