"""The page's JavaScript in the real Chromium: a blank page with sttm_viz/web's modules, to
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


ORIGIN = "http://sttm.page"  # sttm_viz/web, served to the page by Playwright (no server)
BLANK = "<!doctype html><html><body></body></html>"


def script_page(browser, *modules: str):
    """A blank page with the named ES modules of sttm_viz/web imported (e.g. "merge.js"), their
    exports gathered on window.STTM (modules load over http: a file:// page may not import)."""
    page = browser.new_page()
    page.route(f"{ORIGIN}/**", _serve_web)
    page.goto(f"{ORIGIN}/blank.html")
    imports = "".join(f"Object.assign(window.STTM, await import('./{name}'));" for name in modules)
    page.add_script_tag(content=f"window.STTM = {{}}; {imports} window.sttmImported = true;",
                        type="module")
    page.wait_for_function("window.sttmImported === true", timeout=30_000)
    return page


def _serve_web(route):
    name = route.request.url[len(ORIGIN) + 1:].split("?")[0]
    if name == "blank.html":
        route.fulfill(body=BLANK, content_type="text/html")
    else:
        route.fulfill(path=str(WEB / name), content_type="text/javascript")


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
