"""Closes every database session a request opened once it is answered, announces the changes
they wrote, then runs the work the request deferred until then (app.http.deferred)."""

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.types import ASGIApp, Receive, Scope, Send

from app.db.change_log import wrote_changes
from app.db.session import SESSIONS, close_session
from app.http.deferred import run_deferred


class SessionCloser:
    """Pure ASGI: a dependency with `yield` would do the same at a cost FastAPI pays on every
    request (an exit stack, a cancel scope, a context manager)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sessions: list[AsyncSession] = []
        scope[SESSIONS] = sessions
        try:
            await self.app(scope, receive, send)
        finally:
            for session in sessions:
                # A session that never began a transaction holds no connection: nothing to close.
                if session.in_transaction():
                    await close_session(session)
            if any(wrote_changes(session) for session in sessions):
                announce = getattr(scope["app"].state, "announce_changes", None)
                if announce is not None:
                    announce()
            await run_deferred(scope)
