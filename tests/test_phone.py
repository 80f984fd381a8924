"""The app on a phone: 390x844, touch, in headless Debian Chromium (as tests/test_browser.py).

The map comes first at full width, tauS and tauT right under it, nothing is wider than the
screen, and a finger dragging tauS re-merges and repaints the map. `STTM_SCREENSHOT_DIR=docs
python -m pytest tests/test_phone.py -k readme` makes the README's three first-view pictures.
"""
import os
from pathlib import Path

import pytest

from sttm_viz.session import Engine
from support.page import CHROMIUM

pytestmark = [pytest.mark.browser, pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="needs Debian's chromium (apt-get install chromium); .ci/run installs it")]

PHONE = dict(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True,
             device_scale_factor=2)
SLACK = 12  # px of margin the page may keep on each side of the full-width map

# every visible element of the page whose box sticks out of the screen, left or right
OUTSIDE = """(width) => Array.from(document.querySelectorAll('.gradio-container *')).filter(
  (e) => {
  const r = e.getBoundingClientRect();
  return r.width > 0 && r.height > 0 && (r.left < -1 || r.right > width + 1)
    && getComputedStyle(e).visibility !== 'hidden';
}).map((e) => `${e.tagName}.${e.className}#${e.id} ${e.getBoundingClientRect().right}`)"""


@pytest.fixture(scope="module")
def app_url(serve):
    return serve(Engine(None, "started with --no-model."), 16)


@pytest.fixture
def phone(browser, app_url):
    """The app as a phone opens it: the first example loads by itself."""
    context = browser.new_context(**PHONE)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda err: errors.append(err))
    page.goto(app_url)
    page.wait_for_function("() => window.STTM && STTM.app.tokens && STTM.app.ev", timeout=60_000)
    yield page
    assert not errors, errors
    context.close()


def box(page, selector):
    b = page.locator(selector).first.bounding_box()
    assert b is not None, selector
    return b


def touch_drag(page, x0, x1, y, steps=8):
    """A finger on the screen at (x0, y), moved to (x1, y), lifted: real touch events (CDP)."""
    cdp = page.context.new_cdp_session(page)
    send = lambda kind, x: cdp.send("Input.dispatchTouchEvent", {  # noqa: E731
        "type": kind, "touchPoints": [] if kind == "touchEnd" else [{"x": x, "y": y}]})
    send("touchStart", x0)
    for k in range(1, steps + 1):
        send("touchMove", x0 + (x1 - x0) * k / steps)
        page.wait_for_timeout(16)
    send("touchEnd", x1)
    cdp.detach()


def test_map_first_full_width_with_the_thresholds_under_it(phone):
    width, height = PHONE["viewport"]["width"], PHONE["viewport"]["height"]
    the_map = box(phone, "canvas.sttm-map")
    assert the_map["x"] <= SLACK and the_map["x"] + the_map["width"] >= width - SLACK
    assert the_map["y"] < height / 3  # only the title and the example picker above it
    below = the_map["y"] + the_map["height"]
    for selector in [".sttm-pipeline", ".sttm-inspector", "#sttm-mode", "#sttm-root",
                     ".sttm-tabs", "#sttm-tau-s", "#sttm-tau-t"]:
        assert box(phone, selector)["y"] >= below, selector  # the map comes first
    tau_s, tau_t = box(phone, "#sttm-tau-s"), box(phone, "#sttm-tau-t")
    assert tau_s["y"] < below + 200 and tau_s["y"] + tau_s["height"] <= height  # first screen
    assert tau_t["y"] < below + height
    assert tau_s["y"] < tau_t["y"] < box(phone, ".sttm-pipeline")["y"]


def test_nothing_wider_than_the_screen(phone):
    width = PHONE["viewport"]["width"]
    the_map = box(phone, "canvas.sttm-map")
    phone.touchscreen.tap(the_map["x"] + the_map["width"] * 0.3,
                          the_map["y"] + the_map["height"] * 0.4)
    phone.locator(".sttm-inspector .sttm-trail").first.wait_for()  # a token's full inspector
    inspector = box(phone, ".sttm-inspector")
    assert inspector["x"] >= 0 and inspector["x"] + inspector["width"] <= width
    phone.locator(".sttm-tabs button[data-tab=grid]").click()  # the other panel too
    phone.wait_for_timeout(300)
    assert phone.evaluate("document.documentElement.scrollWidth") <= width
    assert phone.evaluate(OUTSIDE, width) == []


def test_a_finger_drags_tau_s(phone):
    track = box(phone, "#sttm-tau-s input[type=range]")
    phone.evaluate(f"window.scrollTo(0, {track['y'] - 300})")
    track = box(phone, "#sttm-tau-s input[type=range]")
    tokens = phone.locator("canvas.sttm-map").get_attribute("data-tokens")
    renders, scrolled = phone.evaluate("[STTM.app.renders, window.scrollY]")
    y = track["y"] + track["height"] / 2
    x = track["x"] + track["width"] * 0.9  # the thumb at 0.9
    touch_drag(phone, x, track["x"] + track["width"] * 0.5, y)
    phone.wait_for_function("() => STTM.app.settings.tauS < 0.7")
    value = float(phone.locator("#sttm-tau-s input[type=range]").input_value())
    assert phone.evaluate("STTM.app.settings.tauS") == value
    phone.wait_for_function(f"() => STTM.app.renders > {renders}")
    assert phone.locator("canvas.sttm-map").get_attribute("data-tokens") != tokens  # repainted
    # the finger moved the slider, not the page
    assert phone.evaluate("[window.scrollX, window.scrollY]") == [0, scrolled]


def save_png(page, path: Path) -> Path:
    """The first view as a small PNG (256 colours are plenty for a UI)."""
    from PIL import Image

    page.screenshot(path=str(path))
    Image.open(path).convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE).save(
        path, optimize=True)
    return path


@pytest.mark.parametrize("name, context", [
    ("app_phone.png", PHONE),
    ("app_1280x720.png", dict(viewport={"width": 1280, "height": 720})),
    ("app_1400x900.png", dict(viewport={"width": 1400, "height": 900}))])
def test_readme_first_views(browser, app_url, tmp_path, name, context):
    """The view the app opens on, as the README shows it (no model, 16 frames)."""
    page = browser.new_context(**context).new_page()
    page.goto(app_url)
    page.wait_for_function("() => window.STTM && STTM.app.tokens && STTM.app.ev", timeout=60_000)
    page.wait_for_timeout(1500)  # the keep-ratio curves are drawn when the page is idle
    out = Path(os.environ.get("STTM_SCREENSHOT_DIR") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    shot = save_png(page, out / name)
    page.context.close()
    assert 20_000 < shot.stat().st_size < 400_000
