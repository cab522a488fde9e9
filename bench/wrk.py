"""Run `wrk` with a scenario's Lua script and read the JSON line its done() prints."""

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

LUA_DIR = Path(__file__).resolve().parent / "lua"
MARKER = "BENCH_JSON "


class WrkError(RuntimeError):
    """wrk is missing, failed, or printed no summary."""


@dataclass
class LoadResult:
    """One measured run: throughput, latency percentiles (ms) and failures."""

    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    non2xx: int
    errors: int
    statuses: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_wrk_output(stdout: str) -> LoadResult:
    """Turn the BENCH_JSON line of common.lua's done() into a LoadResult."""
    for line in stdout.splitlines():
        if line.startswith(MARKER):
            data = json.loads(line[len(MARKER) :])
            break
    else:
        raise WrkError(f"no {MARKER.strip()} line in wrk output:\n{stdout[-2000:]}")
    seconds = data["duration_us"] / 1e6
    latency = data["latency_us"]
    statuses = {str(code): int(n) for code, n in data["statuses"].items()}
    non2xx = sum(n for code, n in statuses.items() if not 200 <= int(code) < 300)
    errors = sum(v for k, v in data["errors"].items() if k != "status")
    return LoadResult(
        requests=data["requests"],
        seconds=round(seconds, 3),
        rps=round(data["requests"] / seconds, 1) if seconds else 0.0,
        p50_ms=latency["p50"] / 1000,
        p90_ms=latency["p90"] / 1000,
        p99_ms=latency["p99"] / 1000,
        mean_ms=round(latency["mean"] / 1000, 3),
        max_ms=latency["max"] / 1000,
        non2xx=non2xx,
        errors=errors,
        statuses=dict(sorted(statuses.items())),
    )


def build_script(name: str) -> str:
    """common.lua followed by the scenario's own script (wrk loads one file)."""
    return (LUA_DIR / "common.lua").read_text() + "\n" + (LUA_DIR / f"{name}.lua").read_text()


def require_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise WrkError("wrk is not installed: apt-get install -y wrk")
    return path


def start_wrk(
    url: str,
    script: str,
    *,
    env: dict[str, str],
    seconds: float,
    connections: int,
    threads: int,
) -> tuple[subprocess.Popen[str], Path]:
    """Start wrk in the background; finish_wrk() waits for it and parses the result."""
    handle, name = tempfile.mkstemp(prefix="bench-", suffix=".lua")
    script_path = Path(name)
    with os.fdopen(handle, "w") as out:
        out.write(build_script(script))
    command = [
        require_wrk(),
        f"-t{min(threads, connections)}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "30s",
        "-s",
        str(script_path),
        url,
    ]
    process = subprocess.Popen(  # noqa: S603
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **env},
    )
    return process, script_path


def finish_wrk(process: subprocess.Popen[str], script_path: Path) -> LoadResult:
    try:
        stdout, _ = process.communicate(timeout=600)
    finally:
        script_path.unlink(missing_ok=True)
    if process.returncode != 0:
        raise WrkError(f"wrk exited {process.returncode}:\n{stdout[-2000:]}")
    return parse_wrk_output(stdout)


def run_wrk(url: str, script: str, **kwargs: Any) -> LoadResult:
    return finish_wrk(*start_wrk(url, script, **kwargs))
