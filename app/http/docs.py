"""Swagger UI and ReDoc served from the service itself (the pinned `fastapi-offline` assets and
static/), so they work offline; each page's Content-Security-Policy allows only this origin and
the hash of its one inline script.
"""

import base64
import hashlib
import re
from functools import lru_cache
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.status import HTTP_304_NOT_MODIFIED

DOCS_URL = "/docs"
REDOC_URL = "/redoc"
OAUTH2_REDIRECT_URL = f"{DOCS_URL}/oauth2-redirect"
STATIC_URL = f"{DOCS_URL}/static"
# The security headers middleware leaves these pages' own policy in place.
DOCS_PATHS = (DOCS_URL, REDOC_URL)
STATIC_DIR = Path(str(files("fastapi_offline") / "static"))
# Hides the Authorize dialog's client and scope fields (see the file).
AUTH_DIALOG_CSS = "swagger-ui-password-flow.css"
REDOC_JS = "redoc.standalone.js"
# ReDoc's side menu shows its vendor's logo from this URL, with no option to turn it off; the
# page policy refuses it, an error in the console. With an empty src the image fails at once
# without a request, and ReDoc then leaves it out.
REDOC_LOGO_URL = b"https://cdn.redoc.ly/redoc/logo-mini.svg"

_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def page_csp(html: str) -> str:
    """Same origin only; inline scripts by hash. Both UIs set inline styles as they render,
    and ReDoc's search runs in a worker it builds from a blob."""
    hashes = " ".join(f"'sha256-{sha256(body)}'" for body in _INLINE_SCRIPT.findall(html))
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src 'self' {hashes}".rstrip(),
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data:",
            "font-src 'self' data:",
            "worker-src 'self' blob:",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def sha256(text: str) -> str:
    return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


def with_csp(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = page_csp(bytes(page.body).decode())
    return page


@lru_cache(maxsize=1)
def redoc_bundle() -> tuple[bytes, str]:
    """ReDoc's script without its logo's URL, and the ETag of that content."""
    bundle = (STATIC_DIR / REDOC_JS).read_bytes().replace(REDOC_LOGO_URL, b"")
    return bundle, f'"{hashlib.sha256(bundle).hexdigest()[:32]}"'


def with_stylesheet(page: HTMLResponse, href: str) -> HTMLResponse:
    link = f'<link type="text/css" rel="stylesheet" href="{href}">'
    return HTMLResponse(bytes(page.body).decode().replace("</head>", f"{link}\n</head>", 1))


def install_docs(app: FastAPI) -> None:
    """Add /docs, /docs/oauth2-redirect, /redoc and their assets; create the app with
    docs_url=None and redoc_url=None so FastAPI's CDN pages are not added as well."""

    # Before the mount, which would serve the bundle as shipped.
    @app.get(f"{STATIC_URL}/{REDOC_JS}", include_in_schema=False)
    def redoc_script(request: Request) -> Response:
        bundle, etag = redoc_bundle()
        headers = {"ETag": etag}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=HTTP_304_NOT_MODIFIED, headers=headers)
        return Response(bundle, media_type="text/javascript", headers=headers)

    assets = StaticFiles(directory=STATIC_DIR, packages=[("app.http", "static")])
    app.mount(STATIC_URL, assets, name="docs-static")

    @app.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        page = with_stylesheet(
            get_swagger_ui_html(
                openapi_url=f"{root}{app.openapi_url}",
                title=f"{app.title} - Swagger UI",
                oauth2_redirect_url=f"{root}{OAUTH2_REDIRECT_URL}",
                swagger_js_url=f"{root}{STATIC_URL}/swagger-ui-bundle.js",
                swagger_css_url=f"{root}{STATIC_URL}/swagger-ui.css",
                swagger_favicon_url=f"{root}{STATIC_URL}/favicon.png",
                # No badge fetched from the public validator service.
                swagger_ui_parameters={**(app.swagger_ui_parameters or {}), "validatorUrl": None},
            ),
            f"{root}{STATIC_URL}/{AUTH_DIALOG_CSS}",
        )
        return with_csp(page)

    @app.get(OAUTH2_REDIRECT_URL, include_in_schema=False)
    async def swagger_ui_oauth2_redirect() -> HTMLResponse:
        return with_csp(get_swagger_ui_oauth2_redirect_html())

    @app.get(REDOC_URL, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return with_csp(
            get_redoc_html(
                openapi_url=f"{root}{app.openapi_url}",
                title=f"{app.title} - ReDoc",
                redoc_js_url=f"{root}{STATIC_URL}/{REDOC_JS}",
                redoc_favicon_url=f"{root}{STATIC_URL}/favicon.png",
                with_google_fonts=False,
            )
        )
