"""Start, probe, measure and stop the servers: ours, and the seed baseline when it is there."""

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
SEED_VENV = REPO / "bench" / ".venv-seed"
SEED_ENV = "BENCH_SEED_APP"
SEED_DEFAULT = Path("..") / "shared" / "anchors" / "seed_app"  # relative to the repository
USER_PASSWORD = "Bench-" + "x7Kp2Qm9Lw4Rt"  # a regular account the bench registers on each side
STARTUP_SECONDS = 60.0
QUIESCE_SECONDS = 180.0


@dataclass
class Server:
    """One running system: where it listens, its accounts and its processes."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    admin: tuple[str, str]
    workers: int = 2
    user: tuple[str, str] = ("benchuser", USER_PASSWORD)
    tokens: dict[str, str] = field(default_factory=dict)
    secret: str = ""  # ours: the key its tokens are signed with

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def seed_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where the seed's source is looked for: BENCH_SEED_APP, by default ../shared/anchors/seed_app
    from the repository (it is not part of it)."""
    value = (os.environ if environ is None else environ).get(SEED_ENV)
    return Path(value).resolve() if value else (REPO / SEED_DEFAULT).resolve()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def asyncpg_url(dsn: str) -> str:
    return "postgresql+asyncpg://" + dsn.split("://", 1)[1]


def has_serve_command() -> bool:
    result = subprocess.run(
        [sys.executable, "-m", "app", "serve", "--help"],
        cwd=REPO,
        capture_output=True,
        check=False,
    )
    return result.returncode == 0


# Bench clients make thousands of requests a second with one token: the comparison with the seed
# runs without request limits, and scenario (i) measures what they cost.
LIMITS_OFF = {"RATE_LIMIT_ENABLED": "false"}


def limits_on(redis_url: str) -> dict[str, str]:
    """Request limits counted in Redis, with quotas the load never spends (their cost, not
    their refusals, is what (i) measures)."""
    return {
        "RATE_LIMIT_ENABLED": "true",
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": f"bench-{secrets.token_hex(6)}",
        "RATE_LIMIT_AUTHENTICATED": "1000000000/hour",
        "RATE_LIMIT_WRITES": "1000000000/hour",
    }


def start_ours(
    dsn: str,
    workers: int,
    logdir: Path,
    *,
    env_extra: Mapping[str, str] = LIMITS_OFF,
    like: Server | None = None,
    name: str = "ours",
) -> Server:
    """Ours on `dsn`; `like`: with that server's signing key and admin, so its tokens work here."""
    port = free_port()
    admin = like.admin if like else ("benchadmin", "Admin-" + secrets.token_hex(8))
    env = {
        "DATABASE_URL": asyncpg_url(dsn),
        "JWT_SECRET_KEY": like.secret if like else secrets.token_hex(32),
        "FIRST_ADMIN_USERNAME": admin[0],
        "FIRST_ADMIN_PASSWORD": admin[1],
        "ACCESS_TOKEN_EXPIRE_MINUTES": "1440",
        "LOGIN_LIMIT_PER_CLIENT": "1000000/minute",
        "LOGIN_LIMIT_PER_USERNAME": "1000000/hour",
        "SHUTDOWN_DRAIN_SECONDS": "1",
        "WEB_CONCURRENCY": str(workers),
        "PYTHONPATH": str(REPO),
        **env_extra,
    }
    if has_serve_command():
        command = [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(port)]
        # The same logging as the seed gets (its README runs it with --log-level warning).
        command += ["--log-level", "warning"]
    else:
        command = [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1"]
        command += ["--port", str(port), "--workers", str(workers)]
    # cwd is a scratch folder so the repository's .env does not leak into the benchmark.
    process = spawn(command, env, cwd=logdir, log=logdir / f"{name}.log")
    server = Server(name, port, process, admin, workers, secret=env["JWT_SECRET_KEY"])
    if like:
        server.tokens = like.tokens
    return server


def start_seed(dsn: str, workers: int, logdir: Path, source: Path) -> Server:
    port = free_port()
    env = {
        "DATABASE_URL": asyncpg_url(dsn),
        "JWT_SECRET_KEY": secrets.token_hex(32),
        "JWT_ALGORITHM": "HS256",
        "ACCESS_TOKEN_EXPIRE_MINUTES": "1440",
    }
    command = [str(SEED_VENV / "bin" / "python"), "-m", "uvicorn", "app.main:app"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    command += ["--log-level", "warning"]
    process = spawn(command, env, cwd=source, log=logdir / f"seed-{workers}.log")
    return Server("seed", port, process, ("admin", "adminpassword"), workers)


def spawn(
    command: list[str], env: dict[str, str], *, cwd: Path, log: Path
) -> subprocess.Popen[bytes]:
    base = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    with log.open("ab") as err:
        # stdout (the seed's SQL echo) is discarded; stderr keeps start-up errors for the report.
        return subprocess.Popen(  # noqa: S603
            command,
            cwd=cwd,
            env={**base, **env},
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )


def worker_pids(parent: int) -> list[int]:
    """The uvicorn worker processes: children of the supervisor, minus helper processes."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and b"resource_tracker" not in cmdline:
            pids.append(int(entry.name))
    return sorted(pids)


def memory_kb(pid: int) -> dict[str, int]:
    """VmHWM (peak resident set) and VmRSS of one process, in kB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            values[key] = int(rest.split()[0])
    return values


def serving_pids(server: Server) -> list[int]:
    """With one worker uvicorn serves in its own process; with more, in child processes."""
    if server.workers == 1:
        return [server.process.pid]
    return worker_pids(server.process.pid)


def worker_memory(server: Server) -> list[dict[str, int]]:
    return [{"pid": pid, **memory_kb(pid)} for pid in serving_pids(server)]


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def quiesce(server: Server, timeout: float = QUIESCE_SECONDS) -> float:
    """Wait until every worker is idle: a blocked worker (the seed hashing on its event loop)
    still works through requests queued by the previous load after wrk has gone."""
    started = time.monotonic()
    pids = serving_pids(server)
    before = {pid: cpu_ticks(pid) for pid in pids}
    while time.monotonic() - started < timeout:
        time.sleep(0.25)
        after = {pid: cpu_ticks(pid) for pid in pids}
        if all(after[pid] - before[pid] <= 1 for pid in pids):  # <= ~4% of a core each
            break
        before = after
    return time.monotonic() - started


def wait_ready(server: Server) -> None:
    """Until the socket answers and every worker process exists (or the server died)."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {server.process.returncode}")
        try:
            answered = httpx.get(server.url + "/docs", timeout=2).status_code < 500
        except httpx.HTTPError:
            answered = False
        if answered and len(serving_pids(server)) >= server.workers:
            return
        time.sleep(0.2)
    raise RuntimeError(f"{server.name} did not start within {STARTUP_SECONDS:.0f} s")


def stop(server: Server) -> None:
    if server.process.poll() is not None:
        return
    os.killpg(server.process.pid, signal.SIGTERM)
    try:
        server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=10)


def login(server: Server, username: str, password: str) -> str:
    response = httpx.post(
        server.url + "/auth/token", data={"username": username, "password": password}, timeout=30
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


def prepare_accounts(server: Server) -> None:
    """Register the regular account (once) and sign both accounts in."""
    username, password = server.user
    response = httpx.post(
        server.url + "/auth/register",
        json={"username": username, "password": password},
        timeout=30,
    )
    if response.status_code not in (200, 201, 409):
        raise RuntimeError(f"{server.name}: register answered {response.status_code}")
    server.tokens = {
        "user": login(server, username, password),
        "admin": login(server, *server.admin),
    }


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)
