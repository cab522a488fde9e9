"""What may happen to employee records: who may read or write (401/403), what exists (404), what
conflicts (409/412), and the audit row that goes with every change. The SQL is `crud`'s.
"""

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NoReturn

from fastapi import status
from pydantic_core import to_jsonable_python
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import crud as accounts
from app.accounts.access import AccountAccess, Principal, admit, require
from app.accounts.keys.crud import KeyAccess
from app.core.context import current_request_id
from app.core.errors import ConflictError, NotFoundError, PreconditionFailedError
from app.core.types import utc_now
from app.db.driver import transaction
from app.db.reader import Reader
from app.db.replica import Replica, alongside
from app.employees import counting, crud, key_crud, listing
from app.employees.history import crud as history
from app.employees.history.models import Actor
from app.employees.models import EmployeeCreate, EmployeeRow, ListFilters, etag
from app.http.pagination import InvalidCursorError, Page
from app.http.preconditions import IfMatch
from app.idempotency import crud as idempotency
from app.idempotency.models import StoredResponse
from app.security.api_keys import Credential, KeyCredential

STALE = "The record changed since you read it; fetch it again for the current ETag"


def location(emp_id: int) -> str:
    """The record's path without a version prefix (the router adds the request's)."""
    return f"/employees/{emp_id}"


def writer(claims: Credential, account: AccountAccess | KeyAccess | None) -> Actor:
    """The account as the writer of a change, if it may still act and may write (401/403)."""
    admin = require(admit(claims, account), "employees:write")
    return Actor(user_id=admin.id, username=admin.username, request_id=current_request_id())


def not_found(emp_id: int) -> NotFoundError:
    return NotFoundError(f"Employee {emp_id} not found")


async def read_employee(
    *, reader: Reader, claims: Credential, emp_id: int, replica: Replica | None = None
) -> tuple[Principal, EmployeeRow]:
    """One record for any account or key that may read, and the account (its role decides which
    fields it sees): both in one round trip, and nothing said about the record before the
    account is admitted. With a read replica the primary checks the account (a revoked token is
    refused at once) while the record is read, from the replica unless it lacks the account's
    last write; a key's account is only known from the key: one statement on the primary."""
    account: AccountAccess | KeyAccess | None
    if isinstance(claims, KeyCredential):
        account, employee = await key_crud.get_employee_as_key(
            reader=reader, emp_id=emp_id, key_hash=claims.key_hash
        )
    elif replica is not None and replica.available():
        account, employee = await alongside(
            accounts.get_user_access(
                reader=reader, user_id=claims.user_id, sign_in_id=claims.sign_in_id
            ),
            _record(replica, reader, user_id=claims.user_id, emp_id=emp_id),
        )
    else:
        account, employee = await crud.get_employee_as(
            reader=reader, emp_id=emp_id, user_id=claims.user_id, sign_in_id=claims.sign_in_id
        )
    principal = require(admit(claims, account), "employees:read")
    if employee is None:
        raise not_found(emp_id)
    return principal, employee


async def _record(
    replica: Replica, primary: Reader, *, user_id: uuid.UUID, emp_id: int
) -> EmployeeRow | None:
    if await replica.has_replayed_writes_of(user_id):
        return await replica.read(lambda records: crud.get_employee(reader=records, emp_id=emp_id))
    return await crud.get_employee(reader=primary, emp_id=emp_id)


@dataclass(frozen=True, slots=True)
class ListPage:
    rows: list[Row[Any]]
    total: int
    exact: bool
    next_cursor: str | None


async def list_employees(
    *,
    session: AsyncSession,
    filters: ListFilters,
    page: Page,
    cursor: str | None,
    exact_up_to: int,
    estimates: counting.Estimates | None,
) -> ListPage:
    """One page of the list, its total (exact, or the planner's estimate above `exact_up_to`)
    and the cursor of the page after it."""
    after = None
    if cursor is not None:
        if page.offset:
            raise InvalidCursorError("cannot be combined with offset")
        after = listing.parse_cursor(cursor, filters.sort_by, filters.order)
    rows, more = await listing.list_employees(
        session=session,
        limit=page.limit,
        offset=page.offset,
        after=after,
        city=filters.city,
        country=filters.country,
        sort_by=filters.sort_by,
        order=filters.order,
    )
    total, exact = await counting.list_total(
        session=session,
        served=len(rows),
        more=more,
        offset=None if cursor is not None else page.offset,
        city=filters.city,
        country=filters.country,
        exact_up_to=exact_up_to,
        estimates=estimates,
    )
    next_cursor = listing.cursor_after(rows[-1], filters.sort_by, filters.order) if more else None
    return ListPage(rows, total, exact, next_cursor)


def new_record(data: EmployeeCreate) -> EmployeeRow:
    """A new record, complete before it is written: id, timestamps and version 1."""
    now = utc_now()
    return EmployeeRow(
        id=uuid.uuid4(), **data.model_dump(), created_at=now, updated_at=now, version=1
    )


async def create_employee(
    *, session: AsyncSession, data: EmployeeCreate, actor: Actor
) -> EmployeeRow:
    return await crud.insert_employee(session=session, record=new_record(data), actor=actor)


async def create_employee_once(
    *, session: AsyncSession, data: EmployeeCreate, actor: Actor, key: str, ttl: timedelta
) -> StoredResponse:
    """Create the employee and store the answer under the key, in one transaction.

    A retry with the same key and body gets the stored answer and inserts nothing; the same key
    with another body is refused (422). A failed create stores nothing, so it may be retried.
    """
    request_hash = idempotency.fingerprint("create_employee", data.model_dump(mode="json"))

    async def stored_answer() -> StoredResponse | None:
        return await idempotency.get_stored_response(
            session=session, user_id=actor.user_id, key=key, request_hash=request_hash
        )

    stored = await stored_answer()
    if stored is not None:
        return stored
    record = new_record(data)
    body = to_jsonable_python(record._asdict())
    headers = {"Location": location(data.emp_id), "ETag": etag(record)}
    response = StoredResponse(status.HTTP_201_CREATED, body, headers)
    claimed = await idempotency.claim_key(
        session=session,
        user_id=actor.user_id,
        key=key,
        request_hash=request_hash,
        response=response,
        ttl=ttl,
    )
    if not claimed:
        # A concurrent request with this key committed first: its answer (or a 422) is ours.
        stored = await stored_answer()
        if stored is None:
            raise idempotency.IdempotencyKeyInUseError(
                "A request with this Idempotency-Key is still being processed; retry shortly",
                retry_after=1,
            )
        return stored
    # Commits the record, its audit row and the claimed key together, or none of them.
    await crud.insert_employee(session=session, record=record, actor=actor)
    return response


async def update_employee(
    *,
    session: AsyncSession,
    claims: Credential,
    emp_id: int,
    changes: dict[str, Any],
    if_match: IfMatch,
) -> EmployeeRow:
    """Apply `changes` to the record's current version, once the caller and `If-Match` allow
    it. A change that alters nothing writes nothing: no new version, no audit row."""
    async with transaction(session):
        actor, employee = await _lock(session, claims, emp_id)
        conditional = if_match.check(etag(employee))
        before = history.snapshot(employee)
        delta = history.diff(before, before | to_jsonable_python(changes))
        if not delta:
            return employee
        values = {name: changes.get(name, getattr(employee, name)) for name in crud.WRITABLE}
        row = await crud.update_employee(
            session=session, employee=employee, values=values, changes=delta, actor=actor
        )
        if row is None:
            await _refuse_stale_write(session, employee, conditional=conditional)
    return row


async def delete_employee(
    *, session: AsyncSession, claims: Credential, emp_id: int, if_match: IfMatch
) -> None:
    async with transaction(session):
        actor, employee = await _lock(session, claims, emp_id)
        conditional = if_match.check(etag(employee))
        if not await crud.delete_employee(session=session, employee=employee, actor=actor):
            await _refuse_stale_write(session, employee, conditional=conditional)


async def _lock(
    session: AsyncSession, claims: Credential, emp_id: int
) -> tuple[Actor, EmployeeRow]:
    """The writer, once admitted (401/403), and the record, locked until the commit."""
    await crud.queue_for_record(session=session, emp_id=emp_id)
    account: AccountAccess | KeyAccess | None
    if isinstance(claims, KeyCredential):
        account, employee = await key_crud.lock_employee_as_key(
            session=session, emp_id=emp_id, key_hash=claims.key_hash
        )
    else:
        account, employee = await crud.lock_employee_as(
            session=session, emp_id=emp_id, user_id=claims.user_id, sign_in_id=claims.sign_in_id
        )
    actor = writer(claims, account)  # before anything is said about the record
    if employee is None:
        raise not_found(emp_id)
    return actor, employee


async def _refuse_stale_write(
    session: AsyncSession, employee: EmployeeRow, *, conditional: bool
) -> NoReturn:
    """The write matched no row: the record was deleted, or another writer got there first."""
    if not await crud.employee_exists(session=session, row_id=employee.id):
        raise not_found(employee.emp_id)
    if conditional:
        raise PreconditionFailedError(STALE)
    # Only without row locks (SQLite): the record changed between our read and our write.
    raise ConflictError(f"Employee {employee.emp_id} was changed by another request; retry")
