"""The Prefect UI: a person starts a release from the deployment page and watches it complete.

The browser is Debian's headless Chromium (`apt-get install chromium`) driven by Playwright;
Playwright's own browser downloads are never used.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest
from playwright.sync_api import Page, expect
from prefect.client.orchestration import get_client

from tests.e2e.conftest import SANDBOX, SANDBOX_FRONTEND, code, new_version, read, served_version
from tests.support.browser import chromium, new_page, screenshot_on_failure

pytestmark = [pytest.mark.e2e, SANDBOX]

UI = os.environ.get("PREFECT_API_URL", "http://127.0.0.1:4200/api").removesuffix("/api")
FINAL_STATE = re.compile(r"^(Completed|Failed|Crashed|Cancelled)$")


@pytest.fixture
def browser_page() -> Iterator[Page]:
    with chromium() as browser:
        yield new_page(browser)


def deployment_id(name: str) -> UUID:
    with get_client(sync_client=True) as client:
        return client.read_deployment_by_name(name).id


def start_custom_run(page: Page, deployment: UUID, version: str, source: str) -> None:
    """Run → Custom run, with `version` given as a string (the field is `str | int | None`) and
    the folder of that version's code as `source`."""
    page.goto(f"{UI}/deployments/deployment/{deployment}")
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_text("Custom run", exact=True).click()
    for name, value in (("version", version), ("source", source)):
        field = page.locator(".schema-form-property").filter(
            has=page.get_by_text(re.compile(rf"^{name}( \(Optional\))?$"))
        )
        field.get_by_role("button", name="str", exact=True).click()  # its type: a string
        field.get_by_role("textbox").fill(value)
    page.get_by_role("button", name="Submit").click()


def open_new_run(page: Page) -> UUID:
    """Follow the toast's View run to the flow run page; the id is in its address.

    The UI mounts its toast container twice and the last copy is the one on top.
    """
    page.get_by_role("button", name="View run").last.click()
    page.wait_for_url(re.compile(r"/runs/flow-run/[0-9a-f-]{36}"))
    return UUID(re.search(r"/runs/flow-run/([0-9a-f-]{36})", page.url).group(1))


def final_state_shown(page: Page, timeout: float) -> str:
    """The state badge in the run page's heading, once it shows a final state (the page polls)."""
    badge = page.locator("header").get_by_text(FINAL_STATE)
    expect(badge).to_be_visible(timeout=timeout * 1000)
    return badge.inner_text()


def test_release_started_from_the_deployment_page_completes(browser_page: Page, tmp_path: Path):
    version = new_version("ui")
    deployment = deployment_id("release/sandbox")

    with screenshot_on_failure(browser_page, tmp_path / "ui.png"):
        start_custom_run(browser_page, deployment, version, code(version))
        run_id = open_new_run(browser_page)
        assert final_state_shown(browser_page, timeout=300) == "Completed"

    run = read(run_id)
    assert run.deployment_id == deployment
    assert run.state.is_completed(), run.state
    assert {"version": version, "environment": "sandbox"}.items() <= run.parameters.items()
    assert served_version(SANDBOX_FRONTEND) == version
