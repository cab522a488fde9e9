"""What asyncpg is told when DATABASE_URL is PgBouncer in transaction pooling.

PgBouncer gives each transaction whichever server connection is free. asyncpg's statement cache
names its statements per client connection (`__asyncpg_stmt_1__`, ...) and expects them to stay
on one server: through PgBouncer they are missing, already taken by another client, or worse,
another client's statement of the same name answers with its rows. With the cache off, asyncpg
sends unnamed statements and parses them again in the same message batch as each execution, so
nothing outlives its transaction. SQLAlchemy's own statement cache then holds those unnamed
statements (their column types, not server state) and may stay on; no statement names are
needed. tests/test_pgbouncer.py shows both against a real PgBouncer.
"""

from typing import Any

from app.core.config import DatabaseSettings


def pooler_connect_args(settings: DatabaseSettings) -> dict[str, Any]:
    """asyncpg's connect arguments for the configured pool mode: none in session mode."""
    if settings.database_pool_mode != "transaction":
        return {}
    return {"statement_cache_size": 0}
