"""With a read replica: once an account's write is answered, and before the answer leaves, note
where the primary's WAL ends, so that the account's next reads, on any worker, go to the primary
until the replica has replayed that far (`app.db.replica`). Installed only with
DATABASE_READ_URL.
"""

from starlette.types import ASGIApp, Message, Receive, Scope, Send

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
# A write done, or refused because the record changed or exists (409, 412): the account is
# about to read what the primary holds, and must not get the replica's older version.
NOTED_STATUSES = frozenset({409, 412})


class ReplicaWriteMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return

        async def send_noting(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = message["status"]
                if 200 <= status < 300 or status in NOTED_STATUSES:
                    await _note_write(scope)
            await send(message)

        await self.app(scope, receive, send_noting)


async def _note_write(scope: Scope) -> None:
    user_id = scope.get("state", {}).get("user_id")  # set once the bearer token is checked
    replica = getattr(scope["app"].state, "replica", None)
    if user_id is not None and replica is not None:
        await replica.record_write(user_id)
