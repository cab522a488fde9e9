"""account roles: app_user.role (admin, auditor or user) replaces app_user.is_admin

One column, so that a role and a flag can never disagree. Existing accounts keep their rights:
an admin becomes `admin`, every other account `user`; the downgrade maps `admin` back to an
admin and `auditor` and `user` to a regular account.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLE_CHECK = "role IN ('admin', 'auditor', 'user')"


def _username_index(create: bool) -> None:
    # On SQLite a batch that drops a column or adds a constraint rebuilds the table from its
    # reflection, which cannot see the lower(username) expression index: it is set aside and
    # recreated so the rebuild keeps it.
    if create:
        op.create_index(
            "uq_app_user_username_lower", "app_user", [sa.text("lower(username)")], unique=True
        )
    else:
        op.drop_index("uq_app_user_username_lower", table_name="app_user")


def upgrade() -> None:
    with op.batch_alter_table("app_user") as batch:
        batch.add_column(
            sa.Column("role", sa.String(length=10), server_default="user", nullable=False)
        )
    op.execute("UPDATE app_user SET role = CASE WHEN is_admin THEN 'admin' ELSE 'user' END")
    _username_index(create=False)
    with op.batch_alter_table("app_user") as batch:
        batch.create_check_constraint("ck_app_user_role", ROLE_CHECK)
        batch.drop_column("is_admin")
    _username_index(create=True)


def downgrade() -> None:
    with op.batch_alter_table("app_user") as batch:
        batch.add_column(sa.Column("is_admin", sa.Boolean(), nullable=True))
    op.execute("UPDATE app_user SET is_admin = (role = 'admin')")
    _username_index(create=False)
    with op.batch_alter_table("app_user") as batch:
        batch.alter_column("is_admin", existing_type=sa.Boolean(), nullable=False)
        batch.drop_constraint("ck_app_user_role", type_="check")
        batch.drop_column("role")
    _username_index(create=True)
