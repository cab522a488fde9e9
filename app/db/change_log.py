"""Which sessions wrote to the change log (the audit trail), so that the worker can announce,
once a request is answered, that changes committed (`announce_changes` in the app's state; see
app.changes.streams.announce). A write rolled back costs a wake-up for nothing, never an event.
"""

from sqlalchemy.ext.asyncio import AsyncSession

_WROTE_CHANGES = "app.wrote_changes"  # session.info key


def note_changes(session: AsyncSession) -> None:
    session.info[_WROTE_CHANGES] = True


def wrote_changes(session: AsyncSession) -> bool:
    return bool(session.info.get(_WROTE_CHANGES))
