"""One record with the account of the API key a request presents, read or locked in the same
statement: `crud`'s account-and-record statements, driven by the key's digest (its unique index)
and joined to its account instead of the account's id.
"""

from typing import Any

from sqlalchemy import bindparam, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.keys.crud import KeyAccess, key_access, key_access_columns, key_and_account
from app.accounts.keys.crud import presented_key as by_digest
from app.db.reader import Reader
from app.db.statements import Query
from app.employees.crud import columns, employee_table, locked_record, read_columns
from app.employees.models import READ_COLUMNS, EmployeeRow


def key_account_and_record(values: Any) -> tuple[KeyAccess, EmployeeRow | None]:
    width = len(READ_COLUMNS)
    record = EmployeeRow._make(values[:width]) if values[0] is not None else None
    return key_access(values[width:]), record


# No key (or no account) means no row at all: nothing is said about the record before the key
# is admitted.
_EMPLOYEE_AS_KEY = Query(
    select(*read_columns, *key_access_columns)
    .select_from(key_and_account().outerjoin(employee_table, columns.emp_id == bindparam("emp_id")))
    .where(by_digest()),
    key_account_and_record,
)
# Locked until the commit, through the same LATERAL subquery on PostgreSQL as `crud._LOCK_AS`.
_LOCK_AS_KEY = Query(
    _EMPLOYEE_AS_KEY.statement,
    key_account_and_record,
    postgresql=select(*[locked_record.c[name] for name in READ_COLUMNS], *key_access_columns)
    .select_from(key_and_account().outerjoin(locked_record, true()))
    .where(by_digest()),
)


async def get_employee_as_key(
    *, reader: Reader, emp_id: int, key_hash: str
) -> tuple[KeyAccess | None, EmployeeRow | None]:
    """The key with this digest, its account and one record, in one round trip."""
    found = await reader.first(_EMPLOYEE_AS_KEY, emp_id=emp_id, key_hash=key_hash)
    return (None, None) if found is None else found


async def lock_employee_as_key(
    *, session: AsyncSession, emp_id: int, key_hash: str
) -> tuple[KeyAccess | None, EmployeeRow | None]:
    """The same, the record locked until the session's transaction ends."""
    found = await _LOCK_AS_KEY.first(session, emp_id=emp_id, key_hash=key_hash)
    return (None, None) if found is None else found
