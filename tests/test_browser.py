"""A real browser on the running app, as a newcomer sees it at 1400x900.

Headless Debian Chromium (/usr/bin/chromium, installed by .ci/run) driven by Playwright. Most
tests run the app without a model (pixel features: what a machine without weights shows); the
stale-readout test runs a tiny random-weight model. Screenshots go to $STTM_SCREENSHOT_DIR
(default: the test's tmp dir); `STTM_SCREENSHOT_DIR=docs python -m pytest tests/test_browser.py`
makes the README's.
"""
import os
import re
from pathlib import Path

import numpy as np
import pytest

from sttm_core import VideoTokenMerger
from sttm_core.examples import examples_dir
from sttm_core.models.checkpoints import load_model
from sttm_core.pixels import pixel_patch_features
from sttm_core.video import load_video
from sttm_viz.session import Engine
from support.page import CHROMIUM

pytestmark = [pytest.mark.browser, pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="needs Debian's chromium (apt-get install chromium); .ci/run installs it")]

FRAMES = 8
VIEWPORT = {"width": 1400, "height": 900}


@pytest.fixture(scope="module")
def app_url(serve):
    return serve(Engine(None, "browser test without a model."), FRAMES)


@pytest.fixture
def page(browser, app_url):
    """The app as it opens: the first example loads by itself (no model)."""
    page = browser.new_page(viewport=VIEWPORT)
    errors = []
    page.on("pageerror", lambda err: errors.append(err))
    page.goto(app_url)
    wait_tokens(page)
    yield page
    assert not errors, errors
    page.close()


def wait_tokens(page):
    page.wait_for_function("() => window.STTM && STTM.app.tokens && STTM.app.ev", timeout=60_000)


def shots(tmp_path) -> Path:
    """Where screenshots go: $STTM_SCREENSHOT_DIR (e.g. docs), else the test's tmp dir."""
    path = Path(os.environ.get("STTM_SCREENSHOT_DIR") or tmp_path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_screenshot(page, path: Path) -> Path:
    """A 1400x900 screenshot as a small PNG (256 colours are plenty for a UI)."""
    from PIL import Image

    page.mouse.move(0, 0)  # no tooltip over the picture
    page.wait_for_timeout(100)
    page.screenshot(path=str(path))
    image = Image.open(path).convert("RGB")
    image.quantize(256, method=Image.Quantize.FASTOCTREE).save(path, optimize=True)
    return path


def pixel_merger(name: str) -> VideoTokenMerger:
    clip = load_video(examples_dir() / f"{name}.mp4", FRAMES)
    return VideoTokenMerger(pixel_patch_features(clip.frames))


def set_slider(page, elem_id: str, value: float):
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def pick_example(page, title: str):
    page.locator("#sttm-example input").click()
    page.get_by_role("option", name=title).click()


def shown_tokens(page) -> int:
    return int(re.search(r"([\d,]+)\s*tokens", page.locator(".sttm-step[data-step='3']")
                         .inner_text()).group(1).replace(",", ""))


def click_map(page, fx=0.3, fy=0.4):
    box = page.locator("canvas.sttm-map").bounding_box()
    page.mouse.click(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy)


def test_map_controls_and_readout_fit_one_screen(page):
    """The map, every threshold control, their histograms and the readout, without scrolling."""
    for selector in ["canvas.sttm-map", ".sttm-pipeline", ".sttm-inspector", ".sttm-player",
                     ".sttm-legend", "#sttm-tau-s", "#sttm-tau-t", "#sttm-root", "#sttm-mode",
                     "#sttm-hist-spatial canvas", "#sttm-hist-temporal canvas", "#sttm-example"]:
        box = page.locator(selector).first.bounding_box()
        assert box is not None, selector
        assert box["x"] >= 0 and box["y"] >= 0, selector
        assert box["x"] + box["width"] <= VIEWPORT["width"], selector
        assert box["y"] + box["height"] <= VIEWPORT["height"], selector
    assert page.evaluate("window.scrollY") == 0
    # the readout counts are merge_video_tokens' on the same (pixel) features
    r = pixel_merger("fast_motion").merge(0.9, 0.9, 1)
    assert shown_tokens(page) == r.num_tokens
    assert "τS 0.90 · τT 0.90 · root grid 4×4 · features: pixels" in page.inner_text(".sttm-settings")


def test_clicking_a_token_shows_why(page):
    click_map(page)
    inspector = page.locator(".sttm-inspector")
    inspector.locator(".sttm-trail .sttm-path-row.this").first.wait_for()
    text = inspector.inner_text()
    frame = page.evaluate("STTM.app.view.frame") + 1  # the page opens where τT carries over
    assert re.match(rf"Token \d+: a \d+×\d+ box of frame {frame}\b", text)
    assert "Why this box (τS 0.900)" in text and "Across frames (τT 0.900)" in text
    # the decision trail from the root grid down: every box above the token split (its lowest
    # similarity to a quarter < τS in fp32), the token's own box stays one (>= τS) or is a
    # single patch; its τS interval holds 0.9
    tau = float(np.float32(0.9))
    rows = inspector.locator(".sttm-trail .sttm-path-row")
    assert rows.count()
    for r in range(rows.count()):
        row, own = rows.nth(r), r == rows.count() - 1
        assert ("this" in row.get_attribute("class")) == own
        assert ("split" in row.inner_text()) == (not own)
        cell = row.locator(".sttm-low")
        if cell.count():
            assert (float(cell.get_attribute("data-value")) >= tau) == own
            assert ("pass" in cell.get_attribute("class")) == own
        else:
            assert own and "single patch" in row.inner_text()
    interval = inspector.locator(".sttm-interval")
    assert float(interval.get_attribute("data-low")) < tau <= float(interval.get_attribute("data-high"))
    links = inspector.locator(".sttm-links .sttm-sim")
    assert links.count() > 0  # similarities to the next frame's nested boxes, against τT
    for k in range(links.count()):
        assert ("pass" in links.nth(k).get_attribute("class")) == (float(links.nth(k).inner_text()) >= 0.9)


def test_the_clicked_token_stays_highlighted(page):
    click_map(page)
    token = page.evaluate("STTM.app.selectedToken()")
    assert token >= 0
    frame = page.evaluate("STTM.app.view.frame")
    page.locator(".sttm-player button[data-act='next']").click()  # scrub: the selection holds
    assert page.evaluate("STTM.app.selectedToken()") == token
    assert page.evaluate("STTM.app.view.frame") == (frame + 1) % FRAMES
    # hovering its bar in the chains plot highlights a token on the map
    page.locator("canvas.sttm-chains").scroll_into_view_if_needed()
    box = page.locator("canvas.sttm-chains").bounding_box()
    for fy in [i / 40 for i in range(8, 40)]:
        page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * fy)
        if page.evaluate("STTM.app.view.hover") >= 0:
            break
    assert page.evaluate("STTM.app.view.hover") >= 0


def test_no_stale_view_after_a_setting_or_a_new_video(page):
    click_map(page)
    set_slider(page, "sttm-tau-s", 0.5)
    page.wait_for_function("() => STTM.app.settings.tauS === 0.5")
    r = pixel_merger("fast_motion").merge(0.5, 0.9, 1)
    assert shown_tokens(page) == r.num_tokens
    assert page.locator("canvas.sttm-map").get_attribute("data-tokens") == str(r.num_tokens)
    assert "τS 0.500" in page.inner_text(".sttm-inspector")  # the inspector follows the setting
    pick_example(page, "Static scene")
    page.wait_for_function("() => STTM.app.payload.video === 'static.mp4'", timeout=60_000)
    r = pixel_merger("static").merge(0.5, 0.9, 1)
    assert shown_tokens(page) == r.num_tokens
    assert "Click a token on the map" in page.inner_text(".sttm-inspector")  # cleared
    frame = page.evaluate("STTM.app.teachingFrame()")  # a new video opens where τT carries over
    assert frame >= 1 and page.evaluate("STTM.app.view.frame") == frame
    chains = page.locator("canvas.sttm-chains")  # the player's chains: this video, this setting
    assert chains.get_attribute("data-tokens") == str(r.num_tokens)
    assert chains.get_attribute("data-frame") == str(frame)
    assert "Static scene" in page.inner_text(".sttm-example")


def test_budget_mode_and_baselines_disable_what_does_not_apply(page):
    tau_s = page.locator("#sttm-tau-s input[type=range]")
    tau_t = page.locator("#sttm-tau-t input[type=range]")
    assert not tau_s.is_disabled() and not page.locator("#sttm-budget").is_visible()
    page.get_by_label("Merge across frames (τT)").uncheck()
    page.wait_for_function("() => document.querySelector('#sttm-tau-t input[type=range]').disabled")
    assert "off: merging across frames is off" in page.inner_text("#sttm-tau-t")
    page.get_by_label("Merge across frames (τT)").check()
    page.get_by_label("Token budget").check()
    page.wait_for_function("() => STTM.app.current.kind === 'merge'", timeout=120_000)
    assert tau_s.is_disabled() and tau_t.is_disabled() and page.locator("#sttm-budget").is_visible()
    page.wait_for_function("() => /set by the budget.*: \\d\\.\\d{3}/.test("
                           "document.querySelector('#sttm-tau-s').innerText)")
    assert "at a 30% budget → τS" in page.inner_text(".sttm-settings")
    page.get_by_label("Thresholds").check()
    page.wait_for_function("() => !document.querySelector('#sttm-tau-s input[type=range]').disabled")
    page.locator(".label-wrap", has_text="Your own video").click()  # a baseline: the method
    page.locator("#sttm-method input").click()
    page.get_by_role("option", name="Uniform pooling").click()
    page.wait_for_function("() => STTM.app.current.kind === 'served'", timeout=60_000)
    assert tau_s.is_disabled() and tau_t.is_disabled()
    assert "not used: Uniform pooling keeps the budget" in page.inner_text("#sttm-tau-s")
    assert page.locator("#sttm-mode input").first.is_disabled()
    assert "every frame average-pooled to one" in page.inner_text(".sttm-settings")


def pick_method(page, label: str):
    page.locator("#sttm-method input").click()
    page.get_by_role("option", name=label, exact=True).click()


def test_a_baseline_and_back_leaves_every_server_call_working(page):
    """Issue #18, 1 (the −1 trap): "Temporal only" wrote its budget's τS (−1: no spatial
    merging) into the τS slider; back on STTM every server call then failed with "Value -1 is
    less than minimum value 0.0" and the loading banner stayed up."""
    tau_s = page.locator("#sttm-tau-s input[type=number]")
    page.locator(".label-wrap", has_text="Your own video").click()
    pick_method(page, "Temporal only")
    page.wait_for_function("() => STTM.app.current.kind === 'merge'"
                           " && STTM.app.current.source === 'budget'", timeout=120_000)
    page.wait_for_function("() => /τS not used/.test("
                           "document.querySelector('#sttm-tau-s').innerText)")
    page.wait_for_timeout(300)  # any slider update the page sends has arrived
    assert 0 <= float(tau_s.input_value()) <= 1
    pick_method(page, "STTM")
    page.wait_for_function("() => STTM.app.settings.method === 'sttm'")
    assert 0 <= float(tau_s.input_value()) <= 1
    pick_example(page, "Static scene")
    page.wait_for_function("() => STTM.app.payload.video === 'static.mp4'", timeout=60_000)
    page.wait_for_function("() => !STTM.app.loadingNote")
    assert not page.locator(".toast-body.error").count(), page.locator(".toast-body").all_inner_texts()
    assert 0 <= page.evaluate("STTM.app.settings.tauS") <= 1


def test_one_frame_loads_plays_and_inspects(page):
    """Frames = 1: one token frame; the scrubber has a single position, the inspector says
    there is nothing to merge in time, the readout is merge_video_tokens' on that frame."""
    page.locator(".label-wrap", has_text="Your own video").click()
    set_slider(page, "sttm-frames", 1)
    page.locator("#sttm-load").click()
    page.wait_for_function("() => STTM.app.payload.frames_sampled === 1", timeout=60_000)
    assert page.evaluate("STTM.app.ev.T") == 1
    assert page.locator("input.sttm-frame").get_attribute("max") == "0"
    assert "frame 1 / 1" in page.inner_text(".sttm-frame-label")
    page.locator(".sttm-player button[data-act='next']").click()
    assert page.evaluate("STTM.app.view.frame") == 0
    clip = load_video(examples_dir() / "fast_motion.mp4", 1)
    assert shown_tokens(page) == VideoTokenMerger(pixel_patch_features(clip.frames)).merge(
        0.9, 0.9, 1).num_tokens
    click_map(page)
    page.locator(".sttm-inspector .sttm-ins-head").wait_for()
    assert "a single frame, nothing to merge in time" in page.inner_text(".sttm-inspector")


def test_fresh_readouts_with_a_model(browser, serve, tiny_checkpoints):
    """With a model: TTFT and scores of the old video are cleared when another one loads."""
    loaded = load_model(str(tiny_checkpoints["tiny-llava-onevision"]), device="cpu")
    url = serve(Engine(loaded), 4)
    page = browser.new_page(viewport=VIEWPORT)
    page.goto(url)
    pick_example(page, "Static scene")
    wait_tokens(page)
    assert page.evaluate("STTM.app.payload.source").startswith("layer-2 hidden states")
    page.get_by_role("tab", name="Time to first token").click()
    page.get_by_role("button", name=re.compile("Measure TTFT")).click()
    page.get_by_text(re.compile("TTFT speed-up")).wait_for(timeout=120_000)
    page.get_by_role("tab", name="QA accuracy").click()
    page.get_by_role("button", name=re.compile("Score the current setting")).click()
    page.get_by_text(re.compile("chance 25%")).wait_for(timeout=180_000)
    pick_example(page, "Fast motion")
    page.wait_for_function("() => STTM.app.payload.video === 'fast_motion.mp4'", timeout=60_000)
    page.wait_for_timeout(500)
    assert not page.get_by_text(re.compile("chance 25%")).count()
    page.get_by_role("tab", name="Time to first token").click()
    assert not page.get_by_text(re.compile("TTFT speed-up")).count()
    page.close()


# a patch of frame t whose token started earlier (merged in time), as fractions of the map
CARRIED_PATCH = """(t) => { const tk = STTM.app.tokens;
  for (let y = tk.H - 1; y >= 0; y--) for (let x = tk.W - 1; x >= 0; x--) {
    const n = tk.tokenMap[(t * tk.H + y) * tk.W + x];
    if (n >= 0 && tk.first[n] < t) return [(x + 0.5) / tk.W, (y + 0.5) / tk.H];
  } return null; }"""


def test_readme_screenshots(browser, serve, tmp_path):
    """The README's pictures (16 frames, no model): the inspector on a box carried over in time
    beside the histograms of what τS and τT test; the budget mode on the needle."""
    url = serve(Engine(None, "started with --no-model."), 16)
    page = browser.new_page(viewport=VIEWPORT)
    page.goto(url)
    wait_tokens(page)
    out = shots(tmp_path)
    page.evaluate("STTM.app.setView({frame: 4})")
    fx, fy = page.evaluate(CARRIED_PATCH, 4)
    click_map(page, fx, fy)
    page.wait_for_function("() => /Carried over/.test(document.querySelector('.sttm-inspector').innerText)")
    page.wait_for_timeout(1500)  # the keep-ratio curves are drawn when the page is idle
    first = save_screenshot(page, out / "app_inspector.png")
    pick_example(page, "Needle: a word")
    page.wait_for_function("() => STTM.app.payload.video === 'needle_word.mp4'", timeout=60_000)
    page.get_by_label("Token budget").check()
    page.wait_for_function("() => STTM.app.current.kind === 'merge'", timeout=120_000)
    page.evaluate("STTM.app.setView({frame: 7})")
    page.locator(".sttm-tabs button[data-tab=grid]").click()
    page.wait_for_timeout(1500)
    second = save_screenshot(page, out / "app_budget.png")
    page.close()
    for shot in (first, second):
        assert 20_000 < shot.stat().st_size < 400_000


def test_a_lab_whose_scripts_do_not_load_says_so(browser, app_url):
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.route("**/gradio.js", lambda route: route.abort())
    page.goto(app_url)
    lab = page.locator("#sttm-lab")
    lab.get_by_text("The lab's scripts did not load").wait_for(timeout=60_000)
    assert "Reload the page" in lab.inner_text()
    page.close()
