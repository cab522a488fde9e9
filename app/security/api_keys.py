"""API keys: long-lived bearer credentials for programs (`erk_...`), of which only a SHA-256
digest is stored; and each worker's memory of the keys it has seen lately.
"""

import hashlib
import re
import secrets
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from app.security.tokens import AccessClaims, InvalidTokenError

PREFIX = "erk_"
KEY_BYTES = 40
# token_urlsafe(40) is 54 characters; the list shows the first 8 of them, leaving 34 bytes unknown.
KEY_PATTERN = re.compile(PREFIX + r"[A-Za-z0-9_-]{54}")
SHOWN_LENGTH = len(PREFIX) + 8
# A key's last use is written at most this often.
LAST_USED_INTERVAL = timedelta(minutes=1)
# How long a worker counts a key's requests against its owner's request quota once admitted.
OWNER_MEMORY = timedelta(minutes=1)
REMEMBERED_KEYS = 10_000


@dataclass(frozen=True, slots=True)
class NewApiKey:
    key: str
    key_hash: str
    prefix: str


@dataclass(frozen=True, slots=True)
class KeyUse:
    """What admitting a key found: which key, whose, and when its last use was written."""

    key_id: uuid.UUID
    owner_id: uuid.UUID
    last_used_at: datetime | None


@dataclass(slots=True, eq=False)
class KeyCredential:
    """A presented API key, by digest; `used` is filled in once a request admits it."""

    key_hash: str
    used: KeyUse | None = None


# What a bearer token stands for: a signed-in account (a JWT) or an API key.
Credential = AccessClaims | KeyCredential


def create_api_key() -> NewApiKey:
    key = PREFIX + secrets.token_urlsafe(KEY_BYTES)
    return NewApiKey(key=key, key_hash=hash_api_key(key), prefix=key[:SHOWN_LENGTH])


def hash_api_key(key: str) -> str:
    # A plain digest suffices for 320 random bits (nothing to brute-force), and a deterministic
    # one lets the database find the row by its unique index: what is compared is the digest,
    # so lookup timing says nothing about the key itself.
    return hashlib.sha256(key.encode()).hexdigest()


def looks_like_api_key(token: str) -> bool:
    return token.startswith(PREFIX)


def api_key_credential(token: str) -> KeyCredential:
    """The presented key by its digest; raise for text no key can be (wrong length, alphabet)."""
    if KEY_PATTERN.fullmatch(token) is None:
        raise InvalidTokenError("malformed API key")
    return KeyCredential(hash_api_key(token))


K = TypeVar("K")
V = TypeVar("V")


def _trim(entries: OrderedDict[K, V], size: int) -> None:
    while len(entries) > size:
        entries.popitem(last=False)


class KeyMemory:
    """One worker's memory of keys: the owner of each key admitted lately (its requests count
    against the owner's request quota), and when this worker last wrote each key's last use."""

    def __init__(self, size: int = REMEMBERED_KEYS) -> None:
        self.size = size
        self._owners: OrderedDict[str, tuple[uuid.UUID, datetime]] = OrderedDict()
        self._written: OrderedDict[uuid.UUID, datetime] = OrderedDict()

    def owner(self, key_hash: str, now: datetime) -> uuid.UUID | None:
        """The owner of a key admitted within `OWNER_MEMORY`, else None."""
        found = self._owners.get(key_hash)
        return found[0] if found is not None and found[1] > now else None

    def admitted(self, key_hash: str, owner_id: uuid.UUID, now: datetime) -> None:
        self._owners[key_hash] = (owner_id, now + OWNER_MEMORY)
        self._owners.move_to_end(key_hash)
        _trim(self._owners, self.size)

    def last_used_due(self, key_id: uuid.UUID, stored: datetime | None, now: datetime) -> bool:
        """Whether to write the key's last use now: the stored one is over a minute old and this
        worker has not tried within the minute (requests in flight together read the same old
        value). A True is remembered: the caller writes."""
        cutoff = now - LAST_USED_INTERVAL
        if stored is not None and stored > cutoff:
            return False
        written = self._written.get(key_id)
        if written is not None and written > cutoff:
            return False
        self._written[key_id] = now
        self._written.move_to_end(key_id)
        _trim(self._written, self.size)
        return True
