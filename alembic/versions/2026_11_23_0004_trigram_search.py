"""trigram search: GIN indexes for case-insensitive city and country filters (PostgreSQL)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("city", "country")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite has no trigram indexes; its filters read the (small) table
    # pg_trgm is a trusted extension: the database owner may create it without superuser.
    # fastupdate off: rows are indexed as they are written, never left in a pending list that
    # every search must read through.
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for name in COLUMNS:
        op.execute(
            f"CREATE INDEX ix_employee_{name}_trgm ON employee "
            f"USING gin ({name} gin_trgm_ops) WITH (fastupdate = off)"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name in COLUMNS:
        op.execute(f"DROP INDEX ix_employee_{name}_trgm")
    # The extension stays: other schemas in the database may use it too.
