"""A throwaway PgBouncer in transaction pooling, in front of a PostgreSQL server that already runs.

Tests start one per test process (in front of the suite's server), the bench one in front of its
database. Every database of the server is reachable through it under its own name, each with a
pool of `pool_size` server connections, fewer than the clients: transactions of different clients
take turns on the same server connections, which is what breaks statements prepared on one.
PgBouncer refuses to run as root; as root it is started with `-u postgres`.
"""

import contextlib
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL, make_url

INSTALL_HINT = "apt-get install -y pgbouncer"
# Another build (1.21+ for max_prepared_statements, say) can be named by PGBOUNCER.
BINARY_ENV = "PGBOUNCER"
# max_prepared_statements where the build has it (1.21+): more than the service has statements.
KEPT_STATEMENTS = 200
# Debian installs it in sbin, which is not on every account's PATH.
SBIN = os.pathsep.join(("/usr/sbin", "/usr/local/sbin"))
STARTUP_SECONDS = 10.0


def find_pgbouncer() -> str | None:
    """PGBOUNCER, else `pgbouncer` on PATH or in sbin; None when there is none."""
    explicit = os.environ.get(BINARY_ENV)
    if explicit:
        return shutil.which(explicit)
    return shutil.which("pgbouncer") or shutil.which("pgbouncer", path=SBIN)


def pgbouncer_version(binary: str) -> tuple[int, int]:
    """(major, minor) from `pgbouncer --version` ("PgBouncer 1.18.0")."""
    output = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, timeout=10, check=True
    ).stdout
    match = re.search(r"PgBouncer (\d+)\.(\d+)", output)
    if match is None:
        raise RuntimeError(f"cannot read the version of {binary}: {output!r}")
    return int(match.group(1)), int(match.group(2))


def run_as() -> str | None:
    """The account to run PgBouncer as: `postgres` when we are root (it refuses root)."""
    if os.geteuid() != 0:
        return None
    import pwd

    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError(
            "running as root and there is no `postgres` account to run it as"
        ) from None
    return "postgres"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _quoted(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def config_text(
    server: URL,
    directory: Path,
    port: int,
    *,
    pool_size: int,
    max_prepared_statements: int | None,
    version: tuple[int, int],
) -> str:
    """pgbouncer.ini: every database of `server` under its own name, transaction pooling. No
    prepared statements kept unless `max_prepared_statements` says so, as Debian's 1.18 (1.22
    and later keep 200 by default)."""
    lines = [
        "[databases]",
        f"* = host={server.host or '127.0.0.1'} port={server.port or 5432}",
        "[pgbouncer]",
        "listen_addr = 127.0.0.1",
        f"listen_port = {port}",
        "unix_socket_dir =",
        "pool_mode = transaction",
        f"default_pool_size = {pool_size}",
        "max_client_conn = 1000",
        # Clients are this machine's tests and bench; PgBouncer logs in to the server with the
        # password of the auth file.
        "auth_type = trust",
        f"auth_file = {directory / 'users.txt'}",
        f"logfile = {directory / 'pgbouncer.log'}",
        "log_connections = 0",
        "log_disconnections = 0",
    ]
    if max_prepared_statements is not None or version >= (1, 21):
        lines.append(f"max_prepared_statements = {max_prepared_statements or 0}")
    return "\n".join(lines) + "\n"


@dataclass
class PgBouncer:
    """One running PgBouncer: `url_for(database)`, `stop()`."""

    server: URL
    directory: Path
    port: int
    process: subprocess.Popen[bytes]
    version: tuple[int, int]
    pool_size: int
    max_prepared_statements: int | None = None

    def url_for(self, database: str) -> str:
        """The server's URL for `database`, through PgBouncer."""
        url = self.server.set(host="127.0.0.1", port=self.port, database=database)
        return url.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)

    def log(self) -> str:
        """What it wrote to stderr (start-up errors) and to its log file."""
        text = ""
        for name in ("stderr.log", "pgbouncer.log"):
            path = self.directory / name
            text += path.read_text(errors="replace") if path.exists() else ""
        return text

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        shutil.rmtree(self.directory, ignore_errors=True)


def start_pgbouncer(
    binary: str,
    server_url: str,
    *,
    pool_size: int = 2,
    max_prepared_statements: int | None = None,
) -> PgBouncer:
    """PgBouncer in front of the server `server_url` names, listening on a free port."""
    server = make_url(server_url)
    account = run_as()
    directory = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
    port = free_port()
    version = pgbouncer_version(binary)
    ini = directory / "pgbouncer.ini"
    ini.write_text(
        config_text(
            server,
            directory,
            port,
            pool_size=pool_size,
            max_prepared_statements=max_prepared_statements,
            version=version,
        )
    )
    user = server.username or "postgres"
    (directory / "users.txt").write_text(f"{_quoted(user)} {_quoted(server.password or '')}\n")
    command = [binary, str(ini)]
    if account is not None:
        for path in (directory, ini, directory / "users.txt"):
            shutil.chown(path, account, account)
        command = [binary, "-u", account, str(ini)]
    with (directory / "stderr.log").open("wb") as stderr:
        process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True
        )
    bouncer = PgBouncer(
        server, directory, port, process, version, pool_size, max_prepared_statements
    )
    try:
        _wait_listening(bouncer)
    except BaseException:
        bouncer.stop()
        raise
    return bouncer


def _wait_listening(bouncer: PgBouncer) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if bouncer.process.poll() is not None:
            raise RuntimeError(f"pgbouncer exited: {bouncer.log()}")
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", bouncer.port), timeout=1),
        ):
            return
        time.sleep(0.05)
    raise RuntimeError(f"pgbouncer did not listen within {STARTUP_SECONDS:.0f} s: {bouncer.log()}")
