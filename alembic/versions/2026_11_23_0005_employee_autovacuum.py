"""employee autovacuum: vacuum after 1% of the rows change, not 20% (PostgreSQL)

Offset pages count the rows they skip in an index alone (an index-only scan), which works only
while the visibility map says the table's pages are all-visible. Every write clears that for its
page, and at the default thresholds (20% of the rows) autovacuum would leave a 100k-row table
with thousands of rewritten pages for a long time: 2,000 changes made a page at offset 50,000
read 41,628 heap pages and cost 52 ms instead of 13 ms.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPTIONS = {
    "autovacuum_vacuum_scale_factor": "0.01",
    "autovacuum_vacuum_insert_scale_factor": "0.01",
    "autovacuum_analyze_scale_factor": "0.02",
}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite has no autovacuum
    settings = ", ".join(f"{name} = {value}" for name, value in OPTIONS.items())
    op.execute(f"ALTER TABLE employee SET ({settings})")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"ALTER TABLE employee RESET ({', '.join(OPTIONS)})")
