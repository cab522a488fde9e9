"""refresh token version: each refresh token records the account's token version it was issued under

A refresh that raced a sign-out everywhere could write its successor after the revocation's
snapshot; the successor now carries the old version and is refused once the account's moved on.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("refresh_token") as batch:
        batch.add_column(sa.Column("token_version", sa.Integer(), nullable=True))
    # Tokens issued before this revision belong to the account's current version.
    op.execute(
        "UPDATE refresh_token SET token_version = "
        "(SELECT token_version FROM app_user WHERE app_user.id = refresh_token.user_id)"
    )
    with op.batch_alter_table("refresh_token") as batch:
        batch.alter_column("token_version", existing_type=sa.Integer(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("refresh_token") as batch:
        batch.drop_column("token_version")
