"""change feed: the audit trail becomes the event log every change is delivered from

`employee_audit.tx_id` records the writing transaction's id (PostgreSQL), so the feed can serve
rows in an order that a transaction committing late cannot overtake; an index on (tx_id, id)
reads it in that order. Rows written before this revision get 0: they committed long ago and
come first.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "employee_audit",
        sa.Column("tx_id", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
    )
    op.create_index("ix_employee_audit_tx_id_id", "employee_audit", ["tx_id", "id"])
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite: one writer at a time, so rows are in commit order already
    op.execute(
        "ALTER TABLE employee_audit "
        "ALTER COLUMN tx_id SET DEFAULT (pg_current_xact_id()::text::bigint)"
    )


def downgrade() -> None:
    op.drop_index("ix_employee_audit_tx_id_id", table_name="employee_audit")
    op.drop_column("employee_audit", "tx_id")
