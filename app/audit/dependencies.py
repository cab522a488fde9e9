"""The writer of a change, as the audit trail records it."""

from typing import Annotated

from fastapi import Depends, Request

from app.audit.models import Actor
from app.auth.dependencies import AdminUser


async def get_admin_actor(admin: AdminUser, request: Request) -> Actor:
    return Actor(
        user_id=admin.id,
        username=admin.username,
        request_id=getattr(request.state, "request_id", None),
    )


# An administrator (403 otherwise), described for the audit trail.
AdminActor = Annotated[Actor, Depends(get_admin_actor)]
