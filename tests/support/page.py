"""The page's JavaScript in the real Chromium: a blank page with sttm_viz/web/*.js loaded, to
check what the app's page computes against sttm_core (Playwright, no server)."""
import json
import shutil
from contextlib import contextmanager
from pathlib import Path

WEB = Path(__file__).resolve().parents[2] / "sttm_viz" / "web"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@contextmanager
def chromium(viewport=(1400, 900)):
    """A Playwright browser on the system Chromium, closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()


def script_page(browser, *scripts: str):
    """A blank page with the named files of sttm_viz/web loaded (e.g. "merge.js")."""
    page = browser.new_page()
    page.set_content("<!doctype html><html><body></body></html>")
    for name in scripts:
        page.add_script_tag(path=str(WEB / name))
    return page


def merge_all(page, evidence: dict, settings: list) -> list[dict]:
    """The page's merge of each (tauS, tauT, root) setting, as plain lists."""
    return json.loads(page.evaluate(MERGE_ALL, [evidence, settings]))


# one JSON string back: Playwright's own serialisation of big nested arrays is slow
MERGE_ALL = """([raw, settings]) => {
  const ev = STTM.prepare(raw);
  return JSON.stringify(settings.map(([s, t, root]) => {
    const r = STTM.merge(ev, s, t, root);
    return {spatial_boxes: Array.from(r.spatialBoxes), spatial_to_token: Array.from(r.spatialToToken),
            boxes: Array.from(r.tokenBoxes), num_patches: Array.from(r.numPatches),
            token_map: Array.from(r.tokenMap)};
  }));
}"""
