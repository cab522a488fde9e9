"""sso accounts: an account may belong to an identity at the provider (issuer, subject), and
then has no password

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

from collections.abc import Callable, Sequence

import sqlalchemy as sa
from alembic import op
from alembic.operations import BatchOperations

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Stored by the downgrade in place of the missing password of a single sign-on account: no
# password hashes to it (passlib identifies no scheme in it), so it signs in with none.
NO_PASSWORD = "!sso"  # noqa: S105 (a marker that matches no password)


def _rebuild_app_user(change: Callable[[BatchOperations], None]) -> None:
    # On SQLite the batch rebuilds the table from its reflection, which cannot see the
    # lower(username) expression index: it is set aside and recreated around the rebuild.
    op.drop_index("uq_app_user_username_lower", table_name="app_user")
    with op.batch_alter_table("app_user") as batch:
        change(batch)
    op.create_index(
        "uq_app_user_username_lower", "app_user", [sa.text("lower(username)")], unique=True
    )


def upgrade() -> None:
    def change(batch: BatchOperations) -> None:
        batch.add_column(sa.Column("sso_issuer", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("sso_subject", sa.String(length=255), nullable=True))
        batch.alter_column("hashed_password", existing_type=sa.String(length=255), nullable=True)
        batch.create_unique_constraint("uq_app_user_sso_identity", ["sso_issuer", "sso_subject"])

    _rebuild_app_user(change)


def downgrade() -> None:
    # The accounts stay (the records' history names them) but cannot sign in: they never had
    # a password.
    op.execute(
        sa.text(
            "UPDATE app_user SET hashed_password = :marker WHERE hashed_password IS NULL"
        ).bindparams(marker=NO_PASSWORD)
    )

    def change(batch: BatchOperations) -> None:
        batch.drop_constraint("uq_app_user_sso_identity", type_="unique")
        batch.alter_column("hashed_password", existing_type=sa.String(length=255), nullable=False)
        batch.drop_column("sso_subject")
        batch.drop_column("sso_issuer")

    _rebuild_app_user(change)
