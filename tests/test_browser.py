"""/docs in a real browser: headless Chromium signs in, survives a reload, lists employees.

Needs Debian's `chromium` and `chromium-driver` and the `selenium` package; skipped without them.
The browser resolves no host but 127.0.0.1, so a page that needs a CDN fails here.
UPDATE_SCREENSHOT=1 rewrites docs/swagger-ui.png (shown in the README) from this run.
"""

import os
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import employee_payload
from tests.pg import ROOT
from tests.test_generated_client import ADMIN, running_server

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

LIST = "#operations-employees-list_employees"  # Swagger UI: operations-{tag}-{operationId}
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs Chromium and its driver: apt-get install -y chromium chromium-driver",
)


@pytest.fixture
def browser() -> Any:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--window-size=1280,1100",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def visible(driver: Any, css: str) -> Any:
    return WebDriverWait(driver, 10).until(ec.visibility_of_element_located((By.CSS_SELECTOR, css)))


def click(driver: Any, css: str) -> None:
    WebDriverWait(driver, 10).until(ec.element_to_be_clickable((By.CSS_SELECTOR, css))).click()


def seed_employee(base: str) -> None:
    token = httpx.post(f"{base}/auth/token", data=ADMIN).json()["access_token"]
    created = httpx.post(
        f"{base}/employees/",
        json=employee_payload(),
        headers={"Authorization": f"Bearer {token}"},
    )
    assert created.status_code == 201


def test_docs_authorize_survives_reload_and_lists_employees(browser, tmp_path):
    with running_server(tmp_path) as base:
        WebDriverWait(None, 10, poll_frequency=0.1).until(
            lambda _: httpx.post(f"{base}/auth/token", data=ADMIN).status_code == 200
        )
        seed_employee(base)
        browser.get(f"{base}/docs")
        # The records first, their list leading (not the CSV export and import).
        visible(browser, LIST)
        tags = browser.find_elements(By.CSS_SELECTOR, ".opblock-tag-section h3")
        assert [tag.get_attribute("data-tag") for tag in tags][:1] == ["employees"]
        first = browser.find_element(By.CSS_SELECTOR, ".opblock-tag-section .opblock")
        assert first.get_attribute("id") == LIST.removeprefix("#")

        click(browser, "button.btn.authorize")
        # A password flow without a client or scopes: only the username and password are asked.
        dialog = visible(browser, ".auth-container")
        for hidden in ("#password_type", "[id^='client_id']", "[id^='client_secret']"):
            assert not dialog.find_element(By.CSS_SELECTOR, hidden).is_displayed(), hidden
        for text in ("Scopes", "client_id", "client_secret", "Client credentials location"):
            assert text not in dialog.text, text
        assert "OAuth2PasswordBearer" in dialog.text
        visible(browser, "#oauth_username").send_keys(ADMIN["username"])
        visible(browser, "#oauth_password").send_keys(ADMIN["password"])
        click(browser, ".auth-btn-wrapper button.authorize")
        # Signed in: the dialog offers "Logout" in place of "Authorize".
        WebDriverWait(browser, 10).until(
            ec.visibility_of_element_located(
                (By.XPATH, "//div[contains(@class, 'auth-btn-wrapper')]/button[.='Logout']")
            )
        )
        click(browser, ".auth-btn-wrapper button.btn-done")

        browser.refresh()
        authorize = visible(browser, "button.btn.authorize")
        assert "locked" in authorize.get_attribute("class").split()

        click(browser, f"{LIST} .opblock-summary")
        # An optional parameter is a string, not `string | (string | null)`.
        city = visible(browser, f"{LIST} tr[data-param-name='city'] .parameter__type")
        assert city.text.strip() == "string"
        click(browser, f"{LIST} .try-out__btn")
        click(browser, f"{LIST} .execute")
        status = visible(
            browser,
            f"{LIST} .live-responses-table tr.response .response-col_status",
        )
        assert status.text.strip() == "200"
        body = visible(browser, f"{LIST} .live-responses-table .microlight")
        assert '"emp_name": "Ada Lovelace"' in body.text
        # The schema documents the /v1 paths; the Authorize dialog signed in at /v1/auth/token.
        request_url = visible(browser, f"{LIST} .request-url pre")
        assert request_url.text.startswith(f"{base}/v1/employees/?")

        # The picture in the README: the signed-in page and the list's answer in one view.
        for tag in ("auth", "users"):
            click(browser, f"#operations-tag-{tag}")
        browser.execute_script(
            "document.body.style.zoom = '0.7';"
            f"document.querySelector('{LIST} .parameters-container').style.display = 'none';"
            # The curl line would show the bearer token; the request URL is enough.
            f"for (const e of document.querySelectorAll('{LIST} .curl-command')) e.remove();"
            f"for (const e of document.querySelectorAll('{LIST} h4'))"
            "  if (e.textContent === 'Curl') e.remove();"
            "window.scrollTo(0, 0)"
        )
        target = (
            ROOT / "docs" / "swagger-ui.png"
            if os.environ.get("UPDATE_SCREENSHOT") == "1"
            else tmp_path / "swagger-ui.png"
        )
        target.parent.mkdir(exist_ok=True)
        assert browser.save_screenshot(str(target))
        assert Path(target).stat().st_size > 10_000

        # Nothing the page wanted was refused by its policy or missing offline.
        errors = [entry["message"] for entry in browser.get_log("browser")]
        assert not [m for m in errors if "Content Security Policy" in m or "ERR_" in m], errors


def test_redoc_renders_every_operation_offline(browser, tmp_path):
    with running_server(tmp_path) as base:
        paths = httpx.get(f"{base}/openapi.json").json()["paths"].values()
        operation_ids = {operation["operationId"] for item in paths for operation in item.values()}
        browser.get(f"{base}/redoc")
        assert visible(browser, "h1").text == "Employee Records API (1.0.0)"
        sections = "[data-section-id^='operation/']"
        rendered = WebDriverWait(browser, 10).until(
            lambda driver: (
                {
                    element.get_attribute("data-section-id").removeprefix("operation/")
                    for element in driver.find_elements(By.CSS_SELECTOR, sections)
                }
                or None
            )
        )
        assert rendered == operation_ids
        # Optional parameters are shown without a null alternative.
        listing = browser.find_element(
            By.CSS_SELECTOR, "[data-section-id='operation/list_employees']"
        )
        assert "City" in listing.text and "null" not in listing.text
        # Nothing refused by the page policy or missing offline: ReDoc's logo (from its
        # vendor's CDN) is left out of the bundle the service serves.
        messages = [entry["message"] for entry in browser.get_log("browser")]
        assert messages == [], messages
