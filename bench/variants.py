"""Scenarios run on variants of ours, each judged against (a) measured around it: (i) request
limits counted in Redis, (j) compression off, (k) the database through PgBouncer."""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import redis
from sqlalchemy.engine import make_url

from bench import servers
from bench.scenarios import Settings, run_scenario
from bench.servers import log
from bench.wrk import LoadResult
from tests.pgbouncer import (
    INSTALL_HINT,
    KEPT_STATEMENTS,
    find_pgbouncer,
    pgbouncer_version,
    start_pgbouncer,
)

# Scenarios run on a variant of ours: the same database and tokens, other settings. A variant
# server runs only during its scenario: three servers' pools at once would pass PostgreSQL's
# max_connections. Its cost is judged against a reference: a server of ours with the default
# settings, started the same way just before and again just after it, and measured with (a). Not
# against the run's long-running server: a server that has served the run's sign-ins and loads
# measured about 5% slower than a fresh twin of the same settings (2026-12-04), which would
# be counted as the variant's gain. And not minutes apart: throughput here drifts by up to a
# fifth over that time.
VARIANTS = ("i", "j", "k")
# (k): PgBouncer's server connections for the variant's database, half the clients' (two
# workers with a pool of 20 each), so transactions of different clients share them.
PGBOUNCER_POOL = 20


def run_variant(
    key: str,
    workers: int,
    dsn: str,
    logdir: Path,
    running: dict[str, servers.Server],
    settings: Settings,
) -> LoadResult | None:
    def fresh(scenario: str, extra: dict[str, str], name: str) -> LoadResult:
        running[name] = servers.start_ours(
            dsn, workers, logdir, env_extra=extra, like=running["ours"], name=name
        )
        try:
            servers.wait_ready(running[name])
            return run_scenario(scenario, running[name], settings)
        finally:
            servers.stop(running.pop(name))

    if not can_run(key):
        return None
    # The references run without the variant's surroundings (a PgBouncer for (k)).
    before = fresh("a", servers.LIMITS_OFF, f"reference-{key}")
    with variant_env(key, dsn) as env:
        assert env is not None
        result = fresh(key, env, f"ours-{key}")
    after = fresh("a", servers.LIMITS_OFF, f"reference-{key}")
    log(f"({key}) reference, (a) on a fresh server: {before.rps:,.1f}, then {after.rps:,.1f}")
    extra = {"reference_rps": (before.rps + after.rps) / 2}
    if "PGBOUNCER_VERSION" in env:
        extra["pgbouncer"] = pgbouncer_label(env)
    return replace(result, extra={**result.extra, **extra})


@contextmanager
def variant_env(key: str, dsn: str) -> Iterator[dict[str, str] | None]:
    """The variant's settings: (i) request limits counted in Redis; (j) compression off; (k)
    the database through a PgBouncer in transaction pooling, running while the block does.
    None: the variant cannot run here ((i) without Redis, (k) without PgBouncer)."""
    if not can_run(key):
        yield None
    elif key == "j":
        yield {**servers.LIMITS_OFF, "COMPRESSION_ENABLED": "false"}
    elif key == "k":
        with through_pgbouncer(dsn) as env:
            yield env
    else:
        yield servers.limits_on(redis_url())


def redis_url() -> str:
    return os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


def can_run(key: str) -> bool:
    """Whether what the variant needs is here ((i) Redis, (k) PgBouncer); if not, says why."""
    if key == "i":
        try:
            redis.Redis.from_url(redis_url(), socket_connect_timeout=1).ping()
        except redis.RedisError as error:
            log(f"(i) skipped: no Redis at {redis_url()} ({error}); set BENCH_REDIS_URL")
            return False
    if key == "k" and find_pgbouncer() is None:
        log(f"(k) skipped: PgBouncer not found ({INSTALL_HINT}, or set PGBOUNCER)")
        return False
    return True


@contextmanager
def through_pgbouncer(dsn: str) -> Iterator[dict[str, str]]:
    """A PgBouncer in front of `dsn`'s server, and our settings to reach `dsn` through it;
    migrations and anything needing a session would use the direct URL."""
    binary = find_pgbouncer()
    assert binary is not None, "can_run('k') checks for it first"
    direct = servers.asyncpg_url(dsn)
    keeps = pgbouncer_version(binary) >= (1, 21)
    bouncer = start_pgbouncer(
        binary,
        direct,
        pool_size=PGBOUNCER_POOL,
        max_prepared_statements=KEPT_STATEMENTS if keeps else None,
    )
    try:
        env = {
            **servers.LIMITS_OFF,
            "DATABASE_URL": bouncer.url_for(make_url(direct).database or "postgres"),
            "DATABASE_POOL_MODE": "transaction",
            "DATABASE_POOLER_PREPARED_STATEMENTS": str(keeps).lower(),
            "DATABASE_DIRECT_URL": direct,
            # Not a setting of ours: what the report names the PgBouncer by.
            "PGBOUNCER_VERSION": ".".join(map(str, bouncer.version)),
        }
        log(f"(k) through {pgbouncer_label(env)}")
        yield env
    finally:
        bouncer.stop()


def pgbouncer_label(env: dict[str, str]) -> str:
    """ "PgBouncer 1.18 (statements prepared again in each transaction)", or 1.21+'s keeping."""
    kept = env["DATABASE_POOLER_PREPARED_STATEMENTS"] == "true"
    how = "prepared statements kept" if kept else "statements prepared again in each transaction"
    return f"PgBouncer {env['PGBOUNCER_VERSION']} ({how})"
