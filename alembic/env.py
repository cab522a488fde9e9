"""Alembic environment: async engine, URL from the service's settings, batch mode on SQLite.

On PostgreSQL a run holds an advisory lock, so replicas that all migrate at start-up take turns:
one migrates, the others wait and then find nothing left to do.
"""

import asyncio
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from logging.config import fileConfig

from alembic import context
from sqlalchemy import func, select
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from app.core.config import DatabaseSettings, normalise_database_url
from app.models import include_for, metadata

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def database_url() -> str:
    # An explicit URL (tests, `alembic -x url=...`) wins over the environment. From the
    # environment: DATABASE_DIRECT_URL when set, since the advisory lock below is held across
    # transactions, which PgBouncer in transaction pooling would spread over server connections.
    explicit = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    if explicit:
        return normalise_database_url(explicit)
    return DatabaseSettings().session_url("migrations (their advisory lock)")


def configure(connection: Connection | None = None, url: str | None = None) -> None:
    dialect = connection.dialect.name if connection else make_url(url or "").get_backend_name()
    context.configure(
        connection=connection,
        url=url,
        target_metadata=metadata,
        compare_type=True,
        include_object=include_for(dialect),
        render_as_batch=dialect == "sqlite",
        literal_binds=connection is None,
    )


# pg_advisory_lock takes a signed 64-bit key: the first 8 bytes of SHA-256 of a name that is
# ours alone, so no other application sharing the database contends for it by accident.
MIGRATION_LOCK_NAME = b"employee-records-api:alembic-migrations"
MIGRATION_LOCK_KEY = int.from_bytes(
    hashlib.sha256(MIGRATION_LOCK_NAME).digest()[:8], "big", signed=True
)


@contextmanager
def migration_lock(connection: Connection) -> Iterator[None]:
    """Hold the migration lock on this connection, the one the migrations run on."""
    if connection.dialect.name != "postgresql":
        # SQLite serialises writers on the file itself and is never shared by replicas.
        yield
        return
    # Session-level, not pg_advisory_xact_lock: a revision may leave the transaction (an
    # autocommit_block for CREATE INDEX CONCURRENTLY, transaction_per_migration), which would
    # drop a transaction-level lock halfway through the run. Waiting has no timeout: a replica
    # whose migrator dies gets the lock as soon as the dead one's connection closes.
    connection.execute(select(func.pg_advisory_lock(MIGRATION_LOCK_KEY)))
    # End the transaction the lock query began (the lock outlives it), so that Alembic's own
    # begin_transaction() really begins and commits one instead of joining ours.
    connection.commit()
    try:
        yield
    finally:
        # After a failed revision the transaction may be aborted; roll it back first. Closing
        # the connection would release the lock too, but a pooled one might not be closed.
        connection.rollback()
        connection.execute(select(func.pg_advisory_unlock(MIGRATION_LOCK_KEY)))
        connection.commit()


def do_run_migrations(connection: Connection) -> None:
    with migration_lock(connection):
        configure(connection)
        with context.begin_transaction():
            context.run_migrations()


async def run_async_migrations() -> None:
    engine = create_async_engine(database_url(), poolclass=NullPool)
    async with engine.connect() as connection:
        await connection.run_sync(do_run_migrations)
    await engine.dispose()


if context.is_offline_mode():
    configure(url=database_url())
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(run_async_migrations())
