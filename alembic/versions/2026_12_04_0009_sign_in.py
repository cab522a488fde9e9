"""sign in: one row per sign-in, read by every request, so that signing out ends its access tokens

Access tokens carry the sign-in's id (`sid`); its refresh tokens are the family of that id. The
existing families become sign-ins (revoked if every token of theirs is), so refresh tokens issued
before keep working and their next refresh gives an access token with a `sid`.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sign_in",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["app_user.id"], name="fk_sign_in_user_id_app_user", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_sign_in"),
    )
    op.create_index("ix_sign_in_user_id", "sign_in", ["user_id"])
    # A family lives as long as its newest refresh token; it is revoked when all of it is.
    op.execute(
        "INSERT INTO sign_in (id, user_id, created_at, expires_at, revoked_at) "
        "SELECT family_id, user_id, MIN(created_at), MAX(expires_at), "
        "CASE WHEN COUNT(revoked_at) = COUNT(*) THEN MAX(revoked_at) END "
        "FROM refresh_token GROUP BY family_id, user_id"
    )
    # Batch mode: SQLite cannot add a foreign key in place; on PostgreSQL this is a plain ALTER.
    with op.batch_alter_table("refresh_token") as batch:
        batch.create_foreign_key(
            "fk_refresh_token_family_id_sign_in",
            "sign_in",
            ["family_id"],
            ["id"],
            ondelete="CASCADE",
        )


def downgrade() -> None:
    with op.batch_alter_table("refresh_token") as batch:
        batch.drop_constraint("fk_refresh_token_family_id_sign_in", type_="foreignkey")
    op.drop_index("ix_sign_in_user_id", table_name="sign_in")
    op.drop_table("sign_in")
