"""Reading the change feed: where a reader resumes, and what it may see of each event."""

from sqlalchemy.ext.asyncio import AsyncSession

from app.changes import crud
from app.changes.events import AFTER, Change, EventPosition, InvalidEventIdError, decode_event_id


async def resume_after(
    *, session: AsyncSession, event_id: str | None, loc: tuple[str, ...] = AFTER
) -> EventPosition | None:
    """The position an event id handed out by this feed names (None: from the beginning); a
    422 at `loc` for an id this feed never served (malformed, another feed's, made up)."""
    if event_id is None:
        return None
    position = decode_event_id(event_id, loc)
    if not await crud.event_exists(session=session, position=position):
        raise InvalidEventIdError(loc)
    return position


async def read_page(
    *, session: AsyncSession, after: EventPosition | None, limit: int
) -> list[Change]:
    """Up to `limit` events after `after`, oldest first."""
    return await crud.read_changes(session=session, after=after, limit=limit)
