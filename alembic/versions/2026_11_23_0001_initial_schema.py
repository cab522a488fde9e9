"""initial schema: employee records and user accounts

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "app_user",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("username", sa.String(length=50), nullable=False),
        sa.Column("hashed_password", sa.String(length=255), nullable=False),
        sa.Column("is_admin", sa.Boolean(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_app_user"),
    )
    op.create_index(
        "uq_app_user_username_lower", "app_user", [sa.text("lower(username)")], unique=True
    )
    op.create_table(
        "employee",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("emp_id", sa.Integer(), nullable=False),
        sa.Column("emp_name", sa.String(length=100), nullable=False),
        sa.Column("city", sa.String(length=100), nullable=False),
        sa.Column("country", sa.String(length=100), nullable=False),
        sa.Column("emp_dob", sa.Date(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("emp_id BETWEEN 1 AND 2147483647", name="ck_employee_emp_id_range"),
        sa.PrimaryKeyConstraint("id", name="pk_employee"),
        sa.UniqueConstraint("emp_id", name="uq_employee_emp_id"),
    )
    for column in ("emp_name", "city", "country", "emp_dob"):
        op.create_index(f"ix_employee_{column}_emp_id", "employee", [column, "emp_id"])


def downgrade() -> None:
    op.drop_table("employee")
    op.drop_index("uq_app_user_username_lower", table_name="app_user")
    op.drop_table("app_user")
