"""Swagger UI and ReDoc work offline: every asset comes from the service itself."""

import base64
import hashlib
import re
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest
from httpx import ASGITransport, AsyncClient

from app.main import create_app

DOCS_PAGES = ["/docs", "/redoc", "/docs/oauth2-redirect"]


class References(HTMLParser):
    """Every src and href in a page, and every url(...) or url: '...' inside its scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_script = tag == "script" and not dict(attrs).get("src")
        for name, value in attrs:
            if name in ("src", "href", "spec-url") and value:
                self.urls.append(value)

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        self.urls += re.findall(r"""url\(\s*['"]?([^'")]+)""", data)
        self.urls += re.findall(r"""\burl:\s*['"]([^'"]+)""", data)
        self.urls += re.findall(r"https?://[^\s'\"<>]+", data)
        if self._in_script and data.strip():
            self.inline_scripts.append(data)


@pytest.fixture
async def client() -> AsyncIterator[AsyncClient]:
    # The pages touch no database, so one backend is enough.
    async with AsyncClient(transport=ASGITransport(create_app()), base_url="http://test") as c:
        yield c


def references(html: str) -> References:
    parser = References()
    parser.feed(html)
    return parser


def sha256(text: str) -> str:
    return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
async def test_pages_reference_no_external_host_and_every_asset_answers(client, path):
    page = await client.get(path)
    assert page.status_code == 200
    urls = references(page.text).urls
    assert len(urls) >= 3  # script, favicon, schema (and the stylesheet on /docs)
    for url in urls:
        assert not urlsplit(url).netloc and not url.startswith("//"), url
        asset = await client.get(urljoin(f"http://test{path}", url))
        assert asset.status_code == 200, url


async def test_swagger_ui_loads_its_bundle_and_stylesheet_from_the_service(client):
    page = await client.get("/docs")
    urls = references(page.text).urls
    script = next(url for url in urls if url.endswith("swagger-ui-bundle.js"))
    css = next(url for url in urls if url.endswith(".css"))
    bundle = await client.get(script)
    stylesheet = await client.get(css)
    assert "SwaggerUIBundle" in bundle.text
    assert bundle.headers["content-type"].startswith("text/javascript")
    assert stylesheet.headers["content-type"].startswith("text/css")
    # Swagger UI 5: the first major version that renders OpenAPI 3.1 schemas.
    assert re.search(r'PACKAGE_VERSION:"5\.\d+\.\d+"', bundle.text)


async def test_redoc_loads_its_bundle_from_the_service(client):
    page = await client.get("/redoc")
    (script,) = [url for url in references(page.text).urls if url.endswith(".js")]
    bundle = await client.get(script)
    assert bundle.status_code == 200 and "Redoc" in bundle.text[:2000]


async def test_swagger_ui_keeps_the_password_flow_and_authorization(client):
    page = await client.get("/docs")
    assert '"persistAuthorization": true' in page.text
    assert "oauth2RedirectUrl: window.location.origin + '/docs/oauth2-redirect'" in page.text
    # The public validator badge would be an image from another host.
    assert '"validatorUrl": null' in page.text


@pytest.mark.parametrize("path", DOCS_PAGES)
async def test_page_policy_allows_only_this_origin_and_its_own_inline_script(client, path):
    page = await client.get(path)
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    policy = {d.split()[0]: d.split()[1:] for d in csp.split("; ")}
    assert policy["default-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    scripts = policy["script-src"]
    assert "'unsafe-inline'" not in scripts and "'unsafe-eval'" not in scripts
    inline = references(page.text).inline_scripts
    assert scripts == ["'self'", *(f"'sha256-{sha256(body)}'" for body in inline)]
    assert not re.search(r"https?:|\*", csp), csp


async def test_swagger_ui_asks_for_a_username_and_password_only(client):
    # The scheme is a password flow with no client and no scopes; the stylesheet that hides
    # Swagger UI's client and scope fields comes from the service too.
    page = await client.get("/docs")
    (url,) = [url for url in references(page.text).urls if url.endswith("password-flow.css")]
    stylesheet = await client.get(url)
    assert stylesheet.headers["content-type"].startswith("text/css")
    for hidden in ("password_type", "client_id_", "client_secret_", ".scope-def"):
        assert hidden in stylesheet.text
    (scheme,) = (await client.get("/openapi.json")).json()["components"]["securitySchemes"].values()
    assert scheme["flows"]["password"]["scopes"] == {}


async def test_redoc_loads_its_logo_from_nowhere(client):
    page = await client.get("/redoc")
    (script,) = [url for url in references(page.text).urls if url.endswith(".js")]
    bundle = await client.get(script)
    assert bundle.headers["content-type"].startswith("text/javascript")
    assert "cdn.redoc.ly" not in bundle.text and "Redoc" in bundle.text[:2000]
    again = await client.get(script, headers={"If-None-Match": bundle.headers["etag"]})
    assert again.status_code == 304 and not again.content


async def test_the_description_is_true_on_both_pages(client):
    # ReDoc has no Authorize button: the description says how to sign in without one.
    description = (await client.get("/openapi.json")).json()["info"]["description"]
    assert "`POST /v1/auth/token`" in description and "Bearer" in description
    # The root paths the schema leaves out are named, as the same version.
    assert "root paths" in description and "the same version" in description
    for sentence in description.split(". "):
        assert "Authorize" not in sentence or "Swagger UI" in sentence, sentence


async def test_assets_and_unknown_docs_paths_load_nothing(client):
    missing = await client.get("/docs/static/nope.js")
    for path in ("swagger-ui-bundle.js", "redoc.standalone.js", "swagger-ui-password-flow.css"):
        asset = await client.get(f"/docs/static/{path}")
        assert asset.headers["content-security-policy"] == (
            "default-src 'none'; frame-ancestors 'none'"
        )
    assert missing.status_code == 404
    assert missing.headers["content-security-policy"] == (
        "default-src 'none'; frame-ancestors 'none'"
    )


async def test_pages_behind_a_path_prefix_point_at_the_prefixed_assets():
    transport = ASGITransport(create_app(), root_path="/hr")
    async with AsyncClient(transport=transport, base_url="http://test") as client:
        page = await client.get("/hr/docs")
    urls = references(page.text).urls
    assert page.status_code == 200
    assert all(url.startswith("/hr/") for url in urls), urls
