"""Scenario (g): walk the whole table page by page with one connection, as a client would."""

import math
import re
import time
from urllib.parse import urljoin

import httpx

from bench.wrk import LoadResult

LINK_PART = re.compile(r"<([^>]*)>\s*((?:;\s*[^;,]+)*)")
REL = re.compile(r'rel\s*=\s*"?([^";]+)"?', re.IGNORECASE)
PAGE_SIZE = 100


def parse_link_header(value: str | None) -> dict[str, str]:
    """RFC 8288 `Link` header -> {rel: url} (each space-separated rel gets the url)."""
    links: dict[str, str] = {}
    for url, params in LINK_PART.findall(value or ""):
        match = REL.search(params)
        if match:
            for rel in match.group(1).split():
                links.setdefault(rel.lower(), url)
    return links


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def _summary(latencies: list[float], failures: int, total: float, complete: bool) -> LoadResult:
    if not latencies:
        latencies = [0.0]
    return LoadResult(
        requests=len(latencies),
        seconds=round(total, 3),
        rps=round(len(latencies) / total, 1) if total else 0.0,
        p50_ms=round(percentile(latencies, 50) * 1000, 3),
        p90_ms=round(percentile(latencies, 90) * 1000, 3),
        p99_ms=round(percentile(latencies, 99) * 1000, 3),
        mean_ms=round(sum(latencies) / len(latencies) * 1000, 3),
        max_ms=round(max(latencies) * 1000, 3),
        non2xx=failures,
        errors=0,
        extra={"pages": len(latencies), "walk_seconds": round(total, 3), "complete": complete},
    )


def walk(
    base_url: str,
    token: str,
    *,
    follow_links: bool,
    budget_seconds: float,
    transport: httpx.BaseTransport | None = None,
) -> LoadResult:
    """From the first page to the last: `Link: next` (ours) or offset += 100 (the seed)."""
    latencies: list[float] = []
    failures = 0
    complete = False
    url: str | None = f"{base_url}/employees/?limit={PAGE_SIZE}"
    headers = {"Authorization": f"Bearer {token}"}
    started = time.perf_counter()
    limits = httpx.Limits(max_connections=1)
    with httpx.Client(headers=headers, timeout=60, limits=limits, transport=transport) as client:
        offset = 0
        while url is not None:
            if time.perf_counter() - started > budget_seconds:
                break
            before = time.perf_counter()
            response = client.get(url)
            latencies.append(time.perf_counter() - before)
            if not response.is_success:
                failures += 1
                break
            if follow_links:
                target = parse_link_header(response.headers.get("link")).get("next")
                url = urljoin(url, target) if target else None
            else:
                offset += PAGE_SIZE
                more = len(response.json()) == PAGE_SIZE
                url = f"{base_url}/employees/?limit={PAGE_SIZE}&offset={offset}" if more else None
        else:
            complete = True
    return _summary(latencies, failures, time.perf_counter() - started, complete)
