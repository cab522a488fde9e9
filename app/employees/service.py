"""Creating an employee once per `Idempotency-Key`, however often the request is retried."""

from datetime import timedelta

from fastapi import status
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.models import Actor
from app.core.errors import ConflictError
from app.employees import crud
from app.employees.models import EmployeeCreate, etag
from app.idempotency import crud as idempotency
from app.idempotency.models import StoredResponse


def location(emp_id: int) -> str:
    return f"/employees/{emp_id}"


async def create_employee_once(
    *, session: AsyncSession, data: EmployeeCreate, actor: Actor, key: str, ttl: timedelta
) -> StoredResponse:
    """Create the employee and store the answer under the key, in one transaction.

    A retry with the same key and body gets the stored answer and inserts nothing; the same key
    with another body is refused (422). A failed create stores nothing, so it may be retried.
    """
    request_hash = idempotency.fingerprint("create_employee", data.model_dump(mode="json"))

    async def stored_answer() -> StoredResponse | None:
        return await idempotency.get_stored_response(
            session=session, user_id=actor.user_id, key=key, request_hash=request_hash
        )

    stored = await stored_answer()
    if stored is not None:
        return stored
    record = crud.new_record(data)
    response = StoredResponse(
        status.HTTP_201_CREATED,
        # In the shape of `EmployeeRead`, as the answer without a key is.
        record.model_dump(mode="json"),
        {"Location": location(data.emp_id), "ETag": etag(record)},
    )
    await idempotency.remember_response(
        session=session,
        user_id=actor.user_id,
        key=key,
        request_hash=request_hash,
        response=response,
        ttl=ttl,
    )
    try:
        await crud.insert_employee(session=session, record=record, actor=actor)
    except ConflictError:
        # A concurrent retry with this key may have won the race: then its answer is ours.
        stored = await stored_answer()
        if stored is None:
            raise
        return stored
    return response
