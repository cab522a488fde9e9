"""Methods matched per path, not per route: a 405 names every method of its path, and a literal
path (`/employees/import`) keeps its other methods from a parameter route beside it.
"""

import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import Response
from fastapi.routing import iter_route_contexts
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException

METHOD_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


class Segment(Convertor[str]):
    """A path segment; FastAPI validates the parameter's type, as for a plain `{name}`."""

    regex = "[^/]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: Any) -> str:
        return str(value)


def segment_except(name: str, *literals: str) -> str:
    """Register a path convertor `name` matching any segment but `literals`; use it as
    `{param:name}`: a method the literal path does not take is then its 405."""
    names = "|".join(re.escape(literal) for literal in literals)
    convertor = type(name, (Segment,), {"regex": f"(?!(?:{names})(?:/|$))[^/]+"})
    register_url_convertor(name, convertor())
    return name


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """Every method some route of this path takes."""
    methods: set[str] = set()
    for route in iter_route_contexts(app.router.routes):
        regex = getattr(route, "path_regex", None)
        if route.methods and regex is not None and regex.match(path):
            methods |= route.methods
    return sorted(methods, key=lambda m: METHOD_ORDER.index(m) if m in METHOD_ORDER else 99)


async def handle_http_exception(request: Request, error: Exception) -> Response:
    """FastAPI's answer, with a 405's `Allow` naming every method of the path."""
    assert isinstance(error, HTTPException)
    if error.status_code == 405:
        allow = ", ".join(allowed_methods(request.app, request.scope["path"]))
        error = HTTPException(405, error.detail, headers={"Allow": allow})
    return await http_exception_handler(request, error)


def install_method_handler(app: FastAPI) -> None:
    app.add_exception_handler(HTTPException, handle_http_exception)
