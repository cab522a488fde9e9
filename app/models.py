"""Every table model, imported in one place: the registry Alembic and the tests read."""

from sqlmodel import SQLModel

from app.audit.models import EmployeeAudit
from app.auth.models import RefreshToken
from app.employees.models import Employee
from app.idempotency.models import IdempotencyKey
from app.users.models import User

metadata = SQLModel.metadata

__all__ = ["Employee", "EmployeeAudit", "IdempotencyKey", "RefreshToken", "User", "metadata"]
