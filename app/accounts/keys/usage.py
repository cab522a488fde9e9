"""After a request with an API key is answered: remember the key's owner (request limits) and
write the key's last use, at most once a minute per key."""

from fastapi import Request

from app.accounts.keys import crud
from app.core.types import utc_now
from app.db.session import database
from app.security.api_keys import KeyCredential, KeyMemory


def key_memory(request: Request) -> KeyMemory:
    memory: KeyMemory = request.app.state.api_keys
    return memory


async def record_key_use(request: Request, credential: KeyCredential) -> None:
    """Deferred (app.http.deferred) by the request that presented the key: nothing to do unless
    the key was admitted. The stored last use, read with the key, and this worker's memory of
    its own writes spare the UPDATE within the minute; the UPDATE's own condition keeps several
    workers from writing more than one within it."""
    use = credential.used
    if use is None:
        return
    request.scope.setdefault("state", {})["user_id"] = use.owner_id  # for the access log line
    now = utc_now()
    memory = key_memory(request)
    memory.admitted(credential.key_hash, use.owner_id, now)
    if memory.last_used_due(use.key_id, use.last_used_at, now):
        async with database(request).sessions() as session:
            await crud.touch_api_key(session=session, key_id=use.key_id, now=now)
