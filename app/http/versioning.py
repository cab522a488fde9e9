"""Version 1 of the API: every operation under `/v1`, and at the root as well, where the clients
written before versioning call it. The two are one version: same code, same answers.

The schema documents the `/v1` paths only (the root copies are left out of it, so operation ids
stay unique); answers that name a path (`Location`, `Link`) name it under the prefix the request
used.
"""

from collections.abc import Iterable

from fastapi import APIRouter, FastAPI
from starlette.types import Scope

API_PREFIX = "/v1"


def include_versioned(app: FastAPI, routers: Iterable[APIRouter]) -> None:
    """Serve each router at the root and under `API_PREFIX`; only the latter is documented."""
    for router in routers:
        app.include_router(router, include_in_schema=False)
        app.include_router(router, prefix=API_PREFIX)


def route_path(scope: Scope) -> str:
    """The path the routes see: behind a proxy prefix (root_path), scope["path"] includes it."""
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    return path[len(root_path) :] if root_path and path.startswith(root_path) else path


def version_prefix(path: str) -> str:
    """`API_PREFIX` for a path under it, else "" (a root path)."""
    return API_PREFIX if path == API_PREFIX or path.startswith(API_PREFIX + "/") else ""


def unversioned(path: str) -> str:
    """The path without its version prefix: `/auth/token` for `/v1/auth/token` too."""
    return path.removeprefix(version_prefix(path))


def under_request_prefix(scope: Scope, path: str) -> str:
    """An unversioned API path (`/employees/7`) under the version prefix this request used."""
    return version_prefix(route_path(scope)) + path
