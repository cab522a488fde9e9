"""A throwaway PostgreSQL server (initdb + pg_ctl) that a test may stop, restart and freeze,
and a streaming replica of it (pg_basebackup -R).

The shared server of the suite is never touched: fault tests start their own, on a free port,
in a temporary directory deleted afterwards. As root (containers, CI), initdb refuses to run, so
the server is run as the `postgres` account through `runuser`.
"""

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# Durability is pointless for a server that lives a few seconds; these make start-up and
# shutdown checkpoints near-instant.
FAST_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "16MB",
    "max_connections": "60",
    "log_min_messages": "warning",
}
# A primary that replicas can stream from (PostgreSQL 15's defaults, said explicitly).
PRIMARY_SETTINGS = {"wal_level": "replica", "max_wal_senders": "4"}
# Replication connections from this machine, as initdb's trust setup has them.
REPLICATION_HBA = "host replication all 127.0.0.1/32 trust\n"


def find_bindir() -> Path | None:
    """PG_BINDIR, else where `initdb` on PATH really lives, else Debian's versioned directories."""
    candidates = [os.environ.get("PG_BINDIR", "")]
    if initdb := shutil.which("initdb"):
        candidates.append(str(Path(initdb).resolve().parent))
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for candidate in candidates:
        tools = ("initdb", "pg_ctl", "pg_isready")
        if candidate and all((Path(candidate) / tool).exists() for tool in tools):
            return Path(candidate)
    return None


def _run_as() -> list[str]:
    if os.geteuid() != 0:
        return []
    runuser = shutil.which("runuser")
    if runuser is None:
        pytest.skip("running as root and no `runuser` to start PostgreSQL as another account")
    try:
        import pwd

        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("running as root and there is no `postgres` account to run initdb as")
    return [runuser, "-u", "postgres", "--"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PgCluster:
    """One private PostgreSQL server: `start`, `stop`, `restart`, `freeze`/`thaw`, `url`."""

    def __init__(self, bindir: Path, directory: Path, prefix: list[str]) -> None:
        self.bindir = bindir
        self.directory = directory
        self.datadir = directory / "data"
        self.prefix = prefix
        self.port = _free_port()
        self._frozen: list[int] = []

    def _run(self, tool: str, *args: str, timeout: float = 60) -> None:
        command = [*self.prefix, str(self.bindir / tool), *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"{tool} failed: {result.stdout}\n{result.stderr}")

    def init(self, *, primary: bool = False) -> None:
        """A new data directory; `primary`: one that replicas may stream from."""
        self._run("initdb", "-D", str(self.datadir), "-U", "postgres", "-A", "trust", "-N")
        self._configure(FAST_SETTINGS | (PRIMARY_SETTINGS if primary else {}))
        if primary:
            with (self.datadir / "pg_hba.conf").open("a") as hba:
                hba.write(REPLICATION_HBA)

    def init_replica_of(self, primary: "PgCluster") -> None:
        """A copy of `primary`'s data directory that streams its changes (a hot standby)."""
        self._run(
            "pg_basebackup",
            *("-D", str(self.datadir), "-h", "127.0.0.1", "-p", str(primary.port)),
            *("-U", "postgres", "-R", "-X", "stream", "-c", "fast"),
        )
        self._configure({})  # the copied configuration is the primary's: its port, its socket

    def _configure(self, settings: dict[str, str]) -> None:
        options = settings | {
            "port": str(self.port),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.directory}'",
        }
        with (self.datadir / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in options.items())

    def _ctl(self, action: str, *args: str) -> None:
        log = str(self.directory / "server.log")
        self._run("pg_ctl", "-D", str(self.datadir), "-l", log, "-w", "-t", "30", action, *args)

    def start(self) -> None:
        self._ctl("start")

    def stop(self, mode: str = "fast") -> None:
        self._ctl("stop", "-m", mode)

    def restart(self, mode: str = "fast") -> None:
        self._ctl("restart", "-m", mode)

    def is_running(self) -> bool:
        return (self.datadir / "postmaster.pid").exists()

    def accepts_connections(self) -> bool:
        command = [str(self.bindir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)]
        return subprocess.run(command, timeout=10).returncode == 0

    def _pids(self) -> list[int]:
        postmaster = int((self.datadir / "postmaster.pid").read_text().split()[0])
        children = []
        for stat in glob.glob("/proc/[0-9]*/stat"):
            with contextlib.suppress(OSError):
                fields = Path(stat).read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == postmaster:
                    children.append(int(Path(stat).parent.name))
        return [postmaster, *children]

    def freeze(self) -> None:
        """SIGSTOP the postmaster, then its backends: connections open, nothing ever answers."""
        for pid in self._pids():
            os.kill(pid, signal.SIGSTOP)
            self._frozen.append(pid)

    def thaw(self) -> None:
        for pid in reversed(self._frozen):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self._frozen.clear()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def cleanup(self) -> None:
        self.thaw()
        if self.is_running():
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)


def _new_cluster(bindir: Path, prefix: list[str]) -> PgCluster:
    directory = Path(tempfile.mkdtemp(prefix="pgcluster-"))
    if prefix:
        shutil.chown(directory, "postgres", "postgres")
    return PgCluster(bindir, directory, prefix)


def _bindir() -> Path:
    if not Path("/proc/self/stat").exists():
        pytest.skip("freezing the server needs /proc (Linux)")
    bindir = find_bindir()
    if bindir is None:
        pytest.skip(
            "PostgreSQL server binaries (initdb, pg_ctl, pg_isready) not found; set PG_BINDIR"
        )
    return bindir


@contextlib.contextmanager
def throwaway_cluster(*, primary: bool = False) -> Iterator[PgCluster]:
    """A started private server; skips the test when PostgreSQL's server binaries are absent.
    `primary`: one that `throwaway_replica` can copy and stream from."""
    cluster = _new_cluster(_bindir(), _run_as())
    try:
        try:
            cluster.init(primary=primary)
            cluster.start()
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as error:
            pytest.skip(f"cannot start a throwaway PostgreSQL server: {error}")
        yield cluster
    finally:
        cluster.cleanup()


@contextlib.contextmanager
def throwaway_replica(primary: PgCluster) -> Iterator[PgCluster]:
    """A started hot standby of `primary` (made by `throwaway_cluster(primary=True)`) on a port
    of its own, streaming from it; skips the test when `pg_basebackup` is absent."""
    if not (primary.bindir / "pg_basebackup").exists():
        pytest.skip(f"pg_basebackup not found in {primary.bindir}; set PG_BINDIR")
    replica = _new_cluster(primary.bindir, primary.prefix)
    try:
        try:
            replica.init_replica_of(primary)
            replica.start()
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as error:
            pytest.skip(f"cannot start a streaming replica: {error}")
        yield replica
    finally:
        replica.cleanup()
