"""A real browser on the running app: load an example, move τS, the overlay changes.

Headless Debian Chromium (/usr/bin/chromium, installed by .ci/run) driven by Playwright. The
app runs without a model (pixel features), which is what a fresh machine without weights shows.
A screenshot is saved to $STTM_SCREENSHOT_DIR (default: the test's tmp dir).
"""
import os
import shutil
from pathlib import Path

import pytest

from sttm_viz.session import Engine

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [pytest.mark.browser, pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="needs Debian's chromium (apt-get install chromium); .ci/run installs it")]

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def app_url(serve):
    return serve(Engine(None, "browser test without a model."))


def token_map_src(page) -> str:
    image = page.locator("#token-map img")
    image.wait_for(state="visible", timeout=60_000)
    return image.get_attribute("src")


def test_moving_tau_s_changes_the_overlay(app_url, tmp_path):
    from playwright.sync_api import sync_playwright

    shots = Path(os.environ.get("STTM_SCREENSHOT_DIR", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(app_url)
        examples = page.locator("#examples button")  # thumbnails, sorted by file name
        examples.first.wait_for(timeout=60_000)
        examples.nth(6).click()  # static.mp4 fills the video input
        page.get_by_role("button", name="Load video").click()
        before = token_map_src(page)
        tau_s = page.get_by_label("τS spatial threshold", exact=False).locator(
            "xpath=ancestor::*[contains(@class,'block')][1]").locator("input[type=number]")
        tau_s.fill("0.3")
        tau_s.press("Enter")
        page.wait_for_function(
            "(before) => { const i = document.querySelector('#token-map img');"
            " return i && i.src !== before; }", arg=before, timeout=60_000)
        after = token_map_src(page)
        page.screenshot(path=str(shots / "sttm_studio.png"), full_page=True)
        browser.close()
    assert after != before
    assert (shots / "sttm_studio.png").stat().st_size > 10_000
