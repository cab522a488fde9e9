"""What app/db/statements.py takes from SQLAlchemy's compiler beyond its documented API.

It was written against one SQLAlchemy series; on another, these fail first and say what changed.
"""

import datetime
import uuid

import sqlalchemy
from sqlalchemy import bindparam, select
from sqlalchemy.dialects import postgresql, sqlite

from app.db.statements import SQLALCHEMY_SERIES, Query
from app.employees import crud
from app.employees.models import EmployeeRow

QUERY = Query(
    select(*crud.read_columns).where(
        crud.columns.emp_id == bindparam("emp_id"), crud.columns.city == bindparam("city")
    ),
    EmployeeRow._make,
)


def test_sqlalchemy_is_the_series_the_fast_path_was_written_for():
    assert sqlalchemy.__version__.startswith(SQLALCHEMY_SERIES + "."), (
        f"SQLAlchemy {sqlalchemy.__version__}: app/db/statements.py reads the compiler's "
        f"positiontup and binds, checked against {SQLALCHEMY_SERIES}.x; check them, then this"
    )


def test_bind_names_come_in_positional_order_with_their_processors():
    compiled = QUERY.compiled(postgresql.asyncpg.dialect())

    assert compiled.names == ("emp_id", "city")
    assert "$1" in compiled.sql and "$2" in compiled.sql
    assert compiled.arguments({"city": "Paris", "emp_id": 7}) == [7, "Paris"]
    assert len(compiled.results) == len(EmployeeRow._fields)


def test_result_processors_turn_driver_values_into_column_values():
    compiled = QUERY.compiled(sqlite.dialect())
    stored = (
        str(uuid.UUID(int=1)).replace("-", ""),
        7,
        "A",
        "Paris",
        "France",
        "1990-01-02",
        "2026-01-01 00:00:00",
        "2026-01-01 00:00:00",
        1,
    )

    row = QUERY.make(compiled, stored)

    assert row.id == uuid.UUID(int=1)
    assert row.emp_dob == datetime.date(1990, 1, 2)
    assert row.created_at.tzinfo is datetime.UTC
