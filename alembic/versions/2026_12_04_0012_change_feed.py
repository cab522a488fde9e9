"""change feed: the audit trail becomes the event log every change is delivered from

`employee_audit.tx_id` records the writing transaction's id (PostgreSQL), so the feed can serve
rows in an order that a transaction committing late cannot overtake; an index on (tx_id, id)
reads it in that order. A statement-level trigger notifies the `employee_changes` channel when
a change commits: streams on every worker and replica wake up and read the feed (a notification
carries nothing; a lost one delays, never loses). Rows written before this revision get 0: they
committed long ago and come first.

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

CHANNEL = "employee_changes"  # app.changes.events.CHANNEL, frozen here as this revision wrote it


def upgrade() -> None:
    op.add_column(
        "employee_audit",
        sa.Column("tx_id", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
    )
    op.create_index("ix_employee_audit_tx_id_id", "employee_audit", ["tx_id", "id"])
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite: one writer at a time, rows in commit order; streams wake in-process
    op.execute(
        "ALTER TABLE employee_audit "
        "ALTER COLUMN tx_id SET DEFAULT (pg_current_xact_id()::text::bigint)"
    )
    op.execute(
        "CREATE FUNCTION notify_employee_changes() RETURNS trigger LANGUAGE plpgsql AS $$ "
        f"BEGIN PERFORM pg_notify('{CHANNEL}', ''); RETURN NULL; END $$"
    )
    op.execute(
        "CREATE TRIGGER employee_audit_notify AFTER INSERT ON employee_audit "
        "FOR EACH STATEMENT EXECUTE FUNCTION notify_employee_changes()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER employee_audit_notify ON employee_audit")
        op.execute("DROP FUNCTION notify_employee_changes()")
    op.drop_index("ix_employee_audit_tx_id_id", table_name="employee_audit")
    op.drop_column("employee_audit", "tx_id")
