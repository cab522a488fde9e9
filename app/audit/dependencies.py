"""The writer of a change, as the audit trail records it."""

from typing import Annotated

from fastapi import Depends, Request

from app.audit.models import Actor
from app.auth.dependencies import ClaimsDep, authorize, require_admin
from app.core.db import SessionDep
from app.users import crud


async def get_admin_actor(request: Request, claims: ClaimsDep, session: SessionDep) -> Actor:
    """`AdminUser`'s checks in one dependency instead of three: the write routes are hot."""
    account = await crud.get_user_access(session=session, user_id=claims.user_id)
    admin = require_admin(authorize(request, claims, account))
    return Actor(
        user_id=admin.id,
        username=admin.username,
        request_id=getattr(request.state, "request_id", None),
    )


# An administrator (403 otherwise), described for the audit trail.
AdminActor = Annotated[Actor, Depends(get_admin_actor)]
