"""What asyncpg is told when DATABASE_URL is PgBouncer in transaction pooling.

PgBouncer gives each transaction whichever server connection is free. asyncpg's statement cache
names its statements per client connection (`__asyncpg_stmt_1__`, ...) and expects them to stay
on one server: through PgBouncer they are missing, already taken by another client, or worse,
another client's statement of the same name answers with its rows. With the cache off, asyncpg
sends unnamed statements and parses them again in the same message batch as each execution, so
nothing outlives its transaction. SQLAlchemy's own statement cache then holds those unnamed
statements (their column types, not server state) and may stay on; no statement names are
needed. tests/test_pgbouncer.py shows both against a real PgBouncer.

A pooler that keeps prepared statements across transactions itself (PgBouncer 1.21+ with
`max_prepared_statements`: it gives each client's statement names its own on the server and
prepares them again wherever the transaction lands) is told by
DATABASE_POOLER_PREPARED_STATEMENTS=true, and asyncpg's cache stays on.
"""

from typing import Any

from app.core.config import DatabaseSettings


def pooler_connect_args(settings: DatabaseSettings) -> dict[str, Any]:
    """asyncpg's connect arguments for the configured pool mode: none in session mode, nor when
    the pooler keeps prepared statements."""
    if settings.database_pool_mode != "transaction" or settings.database_pooler_prepared_statements:
        return {}
    return {"statement_cache_size": 0}
