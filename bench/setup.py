"""Before measuring: which systems a run compares, the databases migrated and seeded, the
servers started."""

import argparse
import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bench import servers
from bench.data import copy_rows
from bench.report import ADD_BASELINE, NOT_MEASURED, SYSTEMS
from bench.servers import log


@dataclass(frozen=True)
class Baseline:
    """What a run measures: both systems with the seed's source, or ours alone and a note why."""

    systems: tuple[str, ...]
    source: Path | None = None
    note: str | None = None


def choose_baseline(
    environ: Mapping[str, str] | None = None, venv: Path = servers.SEED_VENV
) -> Baseline:
    """The seed when its folder exists (BENCH_SEED_APP, or the default path); else ours alone."""
    source = servers.seed_dir(environ)
    if not source.is_dir():
        note = (
            f"baseline: {NOT_MEASURED}: no seed app at {source}, so this run measures ours alone "
            f"(no ratios ours/seed). To add the baseline, {ADD_BASELINE}."
        )
        return Baseline(("ours",), note=note)
    if not (venv / "bin" / "python").exists():
        raise SystemExit(
            f"the seed app at {source} has no virtualenv at {venv}: `make bench` makes it, or "
            f"`python3 -m venv {venv} && {venv}/bin/pip install -r {source}/requirements.txt`"
        )
    return Baseline(SYSTEMS, source)


def migrate(dsn: str) -> None:
    env = {**os.environ, "DATABASE_URL": servers.asyncpg_url(dsn)}
    subprocess.run(  # noqa: S603
        [
            sys.executable,
            "-m",
            "alembic",
            "-x",
            f"url={servers.asyncpg_url(dsn)}",
            "upgrade",
            "head",
        ],
        cwd=servers.REPO,
        env=env,
        check=True,
        capture_output=True,
    )


def prepare(
    args: argparse.Namespace,
    n: int,
    dsns: dict[str, str],
    logdir: Path,
    running: dict[str, servers.Server],
    baseline: Baseline,
) -> None:
    migrate(dsns["ours"])
    if baseline.source is not None:
        # The seed creates its tables and admin at start-up; two workers doing it at once crash.
        first = servers.start_seed(dsns["seed"], 1, logdir, baseline.source)
        try:
            servers.wait_ready(first)
        finally:
            servers.stop(first)
    started = time.monotonic()
    for system, dsn in dsns.items():
        asyncio.run(copy_rows(dsn, n, with_timestamps=system == "ours"))
    where = "into each database" if len(dsns) > 1 else "into the database"
    log(f"seeded {n:,} rows {where} in {time.monotonic() - started:.1f} s")
    # Filled one by one, so a failure starting the second still stops the first.
    running["ours"] = servers.start_ours(dsns["ours"], args.workers, logdir)
    if baseline.source is not None:
        running["seed"] = servers.start_seed(dsns["seed"], args.workers, logdir, baseline.source)
