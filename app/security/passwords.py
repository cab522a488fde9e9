"""Passwords: hashing with argon2 through passlib's CryptContext, always off the event loop, and
the policy a new password must meet (NIST SP 800-63B: length, no well-known ones, not the
username)."""

import asyncio
import logging
import os
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache, partial
from pathlib import Path
from typing import TypeVar

from passlib.context import CryptContext

T = TypeVar("T")

# OWASP's first argon2id profile (19 MiB, 2 passes, 1 lane). bcrypt hashes from older
# deployments still verify and are replaced by argon2 at the next successful login.
password_context = CryptContext(
    schemes=["argon2", "bcrypt"],
    deprecated=["bcrypt"],
    argon2__type="ID",
    argon2__memory_cost=19456,
    argon2__time_cost=2,
    argon2__parallelism=1,
)

logger = logging.getLogger(__name__)

_executor: ThreadPoolExecutor | None = None
_priority_warned = False


def _lower_thread_priority(nice: int) -> None:
    """Executor initializer: run this hashing thread `nice` steps below the process, so reads
    and the database get the cores first during a login storm (Linux: per thread)."""
    global _priority_warned
    if nice == 0:
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + nice)
    except (AttributeError, OSError) as error:  # no setpriority (Windows), or not permitted
        if not _priority_warned:
            _priority_warned = True
            logger.warning("password hashing runs at normal CPU priority: %r", error)


def configure_hash_concurrency(limit: int, nice: int = 10) -> None:
    """At most `limit` hashes at once per process, on threads of their own (each holds argon2's
    memory and a core; a general pool's many threads would each keep an arena of it)."""
    global _executor
    executor = ThreadPoolExecutor(
        limit,
        thread_name_prefix="password-hash",
        initializer=_lower_thread_priority,
        initargs=(nice,),
    )
    previous, _executor = _executor, executor
    if previous is not None:
        previous.shutdown(wait=False)


def _get_executor() -> ThreadPoolExecutor:
    if _executor is None:
        configure_hash_concurrency(1)  # the settings' defaults; lifespan applies the settings
    assert _executor is not None
    return _executor


async def _off_loop(function: Callable[[], T]) -> T:
    return await asyncio.get_running_loop().run_in_executor(_get_executor(), function)


async def hash_password(password: str) -> str:
    return await _off_loop(partial(password_context.hash, password))


def _verify_and_update(password: str, hashed: str) -> tuple[bool, str | None]:
    try:
        matches, new_hash = password_context.verify_and_update(password, hashed)
    except ValueError:
        # bcrypt refuses passwords over 72 bytes instead of truncating them. Such a password
        # cannot be the one behind a legacy bcrypt hash unless truncation is allowed, and we
        # never truncate: it is a mismatch, not a server error.
        return False, None
    return bool(matches), new_hash


async def verify_password(password: str, hashed: str) -> tuple[bool, str | None]:
    """Return (matches, replacement hash when the stored one uses outdated parameters)."""
    return await _off_loop(partial(_verify_and_update, password, hashed))


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return str(password_context.hash(secrets.token_urlsafe(16)))


async def verify_dummy_password(password: str) -> None:
    """Spend the time a real check takes, so unknown usernames cannot be told apart by timing."""
    dummy = await _off_loop(_dummy_hash)
    await verify_password(password, dummy)


MIN_LENGTH = 8
MAX_LENGTH = 128
COMMON_PASSWORDS_FILE = Path(__file__).with_name("data") / "common_passwords.txt"


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    lines = COMMON_PASSWORDS_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip().lower() for line in lines if line and not line.startswith("#"))


def password_problem(password: str, username: str | None = None) -> str | None:
    """Why this password is refused, or None. Length is checked by the input models."""
    if password.lower() in common_passwords():
        return "is one of the most common passwords; choose another"
    if username is not None and password.casefold() == username.casefold():
        return "must not be the same as the username"
    return None
