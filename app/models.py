"""Every table model, imported in one place: the registry Alembic and the tests read."""

from collections.abc import Callable
from typing import Any

from sqlmodel import SQLModel

from app.accounts.history.models import AccountEvent
from app.accounts.keys.models import ApiKey
from app.accounts.models import RefreshToken, SignIn, User
from app.employees.history.models import EmployeeAudit
from app.employees.models import Employee
from app.idempotency.models import IdempotencyKey
from app.webhooks.models import WebhookDelivery, WebhookEndpoint

metadata = SQLModel.metadata


def include_for(dialect: str) -> Callable[..., bool]:
    """Alembic's `include_object` for one dialect: an index declared for another dialect only
    (`Index(...).ddl_if(dialect=...)`, like the PostgreSQL trigram indexes) is not missing."""

    def include_object(item: Any, _name: Any, type_: str, _reflected: Any, _other: Any) -> bool:
        only_for = getattr(getattr(item, "_ddl_if", None), "dialect", None)
        return type_ != "index" or only_for is None or only_for == dialect

    return include_object


__all__ = [
    "AccountEvent",
    "ApiKey",
    "Employee",
    "EmployeeAudit",
    "IdempotencyKey",
    "RefreshToken",
    "SignIn",
    "User",
    "WebhookDelivery",
    "WebhookEndpoint",
    "include_for",
    "metadata",
]
