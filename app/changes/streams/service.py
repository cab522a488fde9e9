"""The worker's stream service, started and stopped with the app (`open_streams`): the hub, the
notifier that wakes it, the limits, and opening a stream for a bearer credential.
"""

import contextlib
import logging
from collections.abc import Callable, Iterator

from app.accounts.access import Principal, admit, require
from app.accounts.dependencies import get_access, verify_bearer
from app.changes.crud import current_position, held_back, read_changes
from app.changes.events import AFTER, Change, EventPosition
from app.changes.service import resume_after
from app.changes.streams.announce import Announcer
from app.changes.streams.hub import Hub, Registry
from app.changes.streams.notify import LocalNotifier, PgListener, listen_dsn
from app.changes.streams.stream import ChangeStream, Ended
from app.core.config import ConfigurationError, Settings
from app.db.engine import Database
from app.employees.privacy import hidden_fields
from app.http.server import on_server_stopping
from app.security.oidc import OidcVerifier

logger = logging.getLogger(__name__)

MAX_EVENT_ID_LENGTH = 200


class Streams:
    def __init__(self, settings: Settings, db: Database, oidc: OidcVerifier | None) -> None:
        self.settings = settings
        self.db = db
        self.oidc = oidc
        self.hub = Hub(self._read, settings.stream_heartbeat_seconds, self._held_back)
        self.registry = Registry(settings.stream_max_per_account, settings.stream_max_per_worker)
        self.open: set[ChangeStream] = set()
        self.forget: Callable[[], None] = lambda: None
        self.listening = False
        self.notifier = notifier_for(settings, db, self.hub)
        # SQLite: one process, whose commits the engine reports (LocalNotifier).
        self.announcer = None if settings.is_sqlite else Announcer(db)

    async def _read(self, after: EventPosition | None, limit: int) -> list[Change]:
        async with self.db.sessions() as session:
            return await read_changes(session=session, after=after, limit=limit)

    async def _held_back(self) -> bool:
        async with self.db.sessions() as session:
            return await held_back(session=session)

    async def start_position(
        self, event_id: str | None, loc: tuple[str, ...] = AFTER
    ) -> EventPosition | None:
        """Right after `event_id` (422 at `loc` for one this feed never handed out); without
        one, now."""
        async with self.db.sessions() as session:
            if event_id is not None:
                return await resume_after(session=session, event_id=event_id, loc=loc)
            return await current_position(session=session)

    async def authorize(self, token: str) -> Principal:
        """The caller a bearer credential names, if it may still read employees (the request
        path's checks: 401, or 403 without the permission)."""
        claims = await verify_bearer(token, settings=self.settings, oidc=self.oidc, db=self.db)
        access = await get_access(reader=self.db.reader, claims=claims)
        return require(admit(claims, access), "employees:read")

    def hidden(self, principal: Principal) -> tuple[str, ...]:
        return hidden_fields(principal.role, self.settings.employee_dob_visible_to)

    @contextlib.contextmanager
    def stream(
        self, token: str, principal: Principal, position: EventPosition | None
    ) -> Iterator[ChangeStream]:
        """A stream for the caller, counted against the limits while it is open (raises
        `TooManyStreams`)."""
        self.registry.open(principal.id)
        self.listen()
        stream = ChangeStream(
            hub=self.hub,
            principal=principal,
            position=position,
            admit=lambda: self.authorize(token),
            hidden=self.hidden,
            heartbeat=self.settings.stream_heartbeat_seconds,
            buffer=self.settings.stream_buffer_events,
        )
        self.open.add(stream)
        self.hub.streams = len(self.open)
        try:
            if self.hub.stopping:
                stream.end(Ended.stopping)
            yield stream
        finally:
            self.open.discard(stream)
            self.hub.streams = len(self.open)
            self.registry.close(principal.id)

    def on_change(self, callback: Callable[[], None]) -> None:
        """Call `callback` whenever a change commits, from now on (the notifier starts now)."""
        self.hub.subscribe(callback)
        self.listen()

    def listen(self) -> None:
        """Notifications from now on: on PostgreSQL the LISTEN connection opens with the first
        stream (a worker nobody streams from holds none)."""
        if not self.listening:
            self.listening = True
            self.notifier.start()

    def stop(self) -> None:
        """Every stream ends now with a reconnect hint (the server is stopping)."""
        self.hub.stop()
        for stream in list(self.open):
            stream.end(Ended.stopping)

    def announce(self) -> None:
        """A request wrote changes (app.middleware.sessions): tell every worker (PostgreSQL);
        without a LISTEN connection, at least this worker's streams."""
        if self.announcer is not None:
            self.announcer.announce()
            if not isinstance(self.notifier, PgListener):
                self.hub.notified()

    async def aclose(self) -> None:
        self.forget()
        self.stop()
        if self.announcer is not None:
            await self.announcer.aclose()
        await self.notifier.aclose()
        await self.hub.aclose()


def notifier_for(settings: Settings, db: Database, hub: Hub) -> PgListener | LocalNotifier:
    """LISTEN on PostgreSQL; the engine's own commits on SQLite, or where LISTEN cannot go
    (PgBouncer in transaction pooling without DATABASE_DIRECT_URL: the service still starts,
    and other workers' changes reach this one's streams at the next heartbeat)."""
    if settings.is_sqlite:
        return LocalNotifier(hub, db.engine)
    try:
        url = settings.session_url("LISTEN for change notifications")
    except ConfigurationError as error:
        logger.warning("live streams without notifications from other workers: %s", error)
        return LocalNotifier(hub, db.engine)
    return PgListener(hub, listen_dsn(url), settings.db_connect_timeout)


def start_streams(settings: Settings, db: Database, oidc: OidcVerifier | None) -> Streams:
    """The stream service for the app's lifespan (`Streams.aclose` at its end). Streams end
    when the server starts to stop, before uvicorn drains the other requests (which then do
    not wait for them), or at the latest when the lifespan ends."""
    streams = Streams(settings, db, oidc)
    if isinstance(streams.notifier, LocalNotifier):
        streams.listen()  # costs nothing until a commit
    streams.hub.start()
    if streams.announcer is not None:
        streams.announcer.start()
    streams.forget = on_server_stopping(streams.stop)
    return streams
