"""The writing transaction's id, as a column default, and the horizon below which every
transaction has ended: what a log read in commit-safe order needs (app.changes).

PostgreSQL numbers transactions when they first write (`pg_current_xact_id()`, 64 bits, never
reused), not when they commit: a transaction numbered first may commit last. Every transaction
numbered below the current snapshot's `xmin` has ended, so rows written with such ids are all
visible (or rolled back) for good. SQLite lets one writer in at a time, so its rows' order is
already their commit order: its id is 0 and there is no horizon.
"""

from typing import Any

from sqlalchemy import BigInteger
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement
from sqlalchemy.sql.functions import FunctionElement


class CurrentTransactionId(FunctionElement[int]):
    """The id of the transaction that runs the statement (assigned on its first write)."""

    type = BigInteger()
    inherit_cache = True
    name = "current_transaction_id"


class OldestRunningTransactionId(FunctionElement[int]):
    """Every transaction numbered below this one has committed or rolled back (PostgreSQL)."""

    type = BigInteger()
    inherit_cache = True
    name = "oldest_running_transaction_id"


@compiles(CurrentTransactionId)
def _no_transaction_ids(element: CurrentTransactionId, compiler: Any, **kw: Any) -> str:
    return "0"


@compiles(CurrentTransactionId, "postgresql")
def _current_xact_id(element: CurrentTransactionId, compiler: Any, **kw: Any) -> str:
    return "(pg_current_xact_id()::text::bigint)"


@compiles(OldestRunningTransactionId, "postgresql")
def _snapshot_xmin(element: OldestRunningTransactionId, compiler: Any, **kw: Any) -> str:
    return "(pg_snapshot_xmin(pg_current_snapshot())::text::bigint)"


CURRENT_TRANSACTION_ID: ColumnElement[int] = CurrentTransactionId()
OLDEST_RUNNING_TRANSACTION_ID: ColumnElement[int] = OldestRunningTransactionId()
