"""argon2 threads run at a lower CPU priority, so reads keep the cores during a login storm."""

import asyncio
import os
import threading
from collections.abc import Iterator

import pytest

from app.security import passwords as security

pytestmark = pytest.mark.skipif(
    not hasattr(os, "setpriority") or not os.path.isdir("/proc/self/task"),
    reason="per-thread nice needs Linux (os.setpriority and /proc/self/task)",
)


def thread_nice(tid: int) -> int:
    """A thread's nice as the kernel sees it: field 19 of /proc/self/task/<tid>/stat."""
    with open(f"/proc/self/task/{tid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()  # the name in (...) may hold spaces
    return int(fields[16])  # fields[0] is field 3 (state)


@pytest.fixture(autouse=True)
def restore_executor() -> Iterator[None]:
    """Other tests expect the default pool: drop the one each test configures (configuring one
    shuts the previous pool down, so the next hash builds a fresh default pool)."""
    yield
    configured, security._executor = security._executor, None
    if configured is not None:
        configured.shutdown(wait=True)


@pytest.fixture
def hashing_threads(monkeypatch: pytest.MonkeyPatch) -> dict[int, int]:
    """Native id -> nice of each thread that ran a hash, read while that thread is alive."""
    seen: dict[int, int] = {}
    original = security.password_context.hash

    def spy(secret: str) -> str:
        tid = threading.get_native_id()
        seen[tid] = thread_nice(tid)
        return original(secret)

    monkeypatch.setattr(security.password_context, "hash", spy)
    return seen


async def test_hash_threads_run_niced_and_the_loop_thread_does_not(hashing_threads):
    loop_tid = threading.get_native_id()
    process_nice = os.getpriority(os.PRIO_PROCESS, 0)
    loop_nice = thread_nice(loop_tid)
    security.configure_hash_concurrency(1, nice=7)
    await security.hash_password("correct horse battery")
    assert len(hashing_threads) == 1
    [(tid, nice)] = hashing_threads.items()
    assert tid != loop_tid
    assert nice == min(process_nice + 7, 19)
    assert thread_nice(loop_tid) == loop_nice  # the request-serving thread keeps its priority


async def test_nice_zero_keeps_the_hash_thread_at_the_process_priority(hashing_threads):
    loop_nice = thread_nice(threading.get_native_id())
    security.configure_hash_concurrency(1, nice=0)
    await security.hash_password("correct horse battery")
    assert list(hashing_threads.values()) == [loop_nice]


async def test_a_refused_renice_still_hashes_and_verifies(monkeypatch, caplog):
    def refuse(which: int, who: int, priority: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "setpriority", refuse)
    monkeypatch.setattr(security, "_priority_warned", False)
    security.configure_hash_concurrency(2, nice=7)
    # Two at once: both pool threads start, and both fail to renice.
    hashed, _ = await asyncio.gather(
        security.hash_password("correct horse battery"), security.hash_password("other")
    )
    assert (await security.verify_password("correct horse battery", hashed))[0]
    assert not (await security.verify_password("wrong horse battery", hashed))[0]
    warnings = [r for r in caplog.records if "normal CPU priority" in r.getMessage()]
    assert len(warnings) == 1  # two threads failed to renice; logged once
