"""The writer of a change, as the audit trail records it."""

from functools import partial
from typing import Annotated

from fastapi import Depends, Request

from app.audit.models import Actor, Caller
from app.auth.dependencies import AccountAccess, ClaimsDep, authorize, require_admin
from app.core.db import SessionDep
from app.core.tokens import AccessClaims
from app.users import crud


def admin_actor(request: Request, claims: AccessClaims, account: AccountAccess | None) -> Actor:
    """The account as the writer of a change, if it is an active administrator (401/403)."""
    admin = require_admin(authorize(request, claims, account))
    return Actor(
        user_id=admin.id,
        username=admin.username,
        request_id=getattr(request.state, "request_id", None),
    )


async def get_admin_actor(request: Request, claims: ClaimsDep, session: SessionDep) -> Actor:
    """`AdminUser`'s checks in one dependency instead of three: the write routes are hot."""
    account = await crud.get_user_access(session=session, user_id=claims.user_id)
    return admin_actor(request, claims, account)


async def get_admin_caller(request: Request, claims: ClaimsDep) -> Caller:
    """An administrator's write whose statement reads the account with the record it locks."""
    return Caller(claims.user_id, partial(admin_actor, request, claims))


# An administrator (403 otherwise), described for the audit trail.
AdminActor = Annotated[Actor, Depends(get_admin_actor)]
# The same, checked by the write itself (app.employees.crud.lock_employee).
AdminCaller = Annotated[Caller, Depends(get_admin_caller)]
