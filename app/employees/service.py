"""Creating an employee once per `Idempotency-Key`, however often the request is retried."""

from datetime import timedelta

from fastapi import status
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.models import Actor
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
    claimed = await idempotency.claim_key(
        session=session,
        user_id=actor.user_id,
        key=key,
        request_hash=request_hash,
        response=response,
        ttl=ttl,
    )
    if not claimed:
        # A concurrent request with this key committed first: its answer (or a 422) is ours.
        stored = await stored_answer()
        if stored is None:
            raise idempotency.IdempotencyKeyInUseError(
                "A request with this Idempotency-Key is still being processed; retry shortly",
                retry_after=1,
            )
        return stored
    # Commits the record, its audit row and the claimed key together, or none of them.
    await crud.insert_employee(session=session, record=record, actor=actor)
    return response
