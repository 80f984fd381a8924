"""The lab's lesson (issue #18), in a real browser at 1400x900: nothing traps a visitor, the first
view teaches both halves of the merge (τT's carry-over and where in the decoder STTM acts), the
words say what they mean, every text is readable (contrast >= 4.5:1 measured on the rendered
page), the map and every control work by keyboard, the palette survives colour blindness, and
the keep-ratio curves stay put while a slider moves.

Two apps: pixels without a model (a 14x14 grid) and a tiny random Qwen2-VL (a 4x4-ish grid, not
14x14; it must say its answers are meaningless). `STTM_SCREENSHOT_DIR=docs python -m pytest
tests/test_lesson.py -k first_view_with` makes the README's first view on a model
(docs/app_first_view_model.png; the one without a model is tests/test_phone.py's).
"""
import itertools
import os
import re
from pathlib import Path

import pytest

from sttm_core.examples import examples_dir
from sttm_core.models.checkpoints import load_model
from sttm_viz import guide
from sttm_viz.handlers import METHOD_MENU, reply_note
from sttm_viz.session import Engine
from support.page import CHROMIUM

pytestmark = [pytest.mark.browser, pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="needs Debian's chromium (apt-get install chromium); .ci/run installs it")]

VIEWPORT = {"width": 1400, "height": 900}
MAX_PIXELS = 28 * 28 * 15  # the tiny Qwen2-VL's frames: a grid far from 14x14
MIN_CONTRAST = 4.5         # WCAG AA for normal text
READ_TEXTS = ["#sttm-controls .info-text", "#sttm-controls [data-testid=block-info]",
              ".sttm-hint", ".sttm-hist-note", ".sttm-step small", ".sttm-plot-note",
              ".sttm-settings", ".sttm-example", ".sttm-carried", ".sttm-layers-text",
              ".sttm-legend", ".sttm-preset-keep", ".sttm-frame-label", "#sttm-header p"]


@pytest.fixture(scope="module")
def pixels_url(serve):
    return serve(Engine(None, "started with --no-model."), 16)


@pytest.fixture(scope="module")
def model_url(serve, tiny_checkpoints):
    loaded = load_model(str(tiny_checkpoints["tiny-qwen2-vl"]), device="cpu",
                        max_pixels=MAX_PIXELS)
    return serve(Engine(loaded), 8)


def open_page(browser, url, example=None):
    """The app as it opens (the first example loads by itself without a model); with a model,
    `example` is picked. Page errors are collected in page.errors."""
    page = browser.new_page(viewport=VIEWPORT)
    page.errors = []
    page.on("pageerror", lambda err: page.errors.append(err))
    page.goto(url)
    if example:
        page.wait_for_function("() => window.STTM && STTM.app", timeout=60_000)
        pick(page, "#sttm-example", example)
    wait_tokens(page)
    # the page's own functions, for the checks below (the bridge imports any page module)
    page.evaluate("async () => Object.assign(STTM, await STTM.module('merge.js'),"
                  " await STTM.module('draw.js'))")
    return page


def wait_tokens(page):
    page.wait_for_function("() => window.STTM && STTM.app.tokens && STTM.app.ev"
                           " && !STTM.app.loadingNote", timeout=120_000)


def pick(page, elem_id: str, option: str):
    page.locator(f"{elem_id} input").first.click()
    page.get_by_role("option", name=option, exact=True).click()


def toasts(page) -> list[str]:
    return page.locator(".toast-body.error").all_inner_texts()


# --- 1. every method x mode x root grid, then load, chat, score -------------------------------

def walk_every_setting(page) -> int:
    """Every method, every mode it allows, every root grid it allows, through the page's own
    controls; after each the page shows tokens (or says why it waits) and nothing failed."""
    walked = 0
    open_folded(page)
    for method in METHOD_MENU:
        pick(page, "#sttm-method", method)
        page.wait_for_function("(m) => STTM.app.labels[STTM.app.settings.method] === m", arg=method)
        for mode in guide.MODES:
            radio = page.locator("#sttm-mode label", has_text=mode).locator("input")
            if radio.is_disabled():  # a baseline keeps the budget: the radio says so
                if not radio.is_checked():
                    continue
            else:
                radio.check()
            roots = page.locator("#sttm-root input")
            for k in range(roots.count()):
                if not roots.nth(k).is_disabled():
                    roots.nth(k).check()
                page.wait_for_timeout(150)
                walked += 1
                assert not toasts(page), (method, mode, toasts(page))
                assert 0 <= page.evaluate("STTM.app.settings.tauS") <= 1
                for tau in ("#sttm-tau-s", "#sttm-tau-t"):
                    assert 0 <= float(page.locator(f"{tau} input[type=number]").input_value()) <= 1
    pick(page, "#sttm-method", "STTM")
    page.locator("#sttm-mode label", has_text="Thresholds").locator("input").check()
    return walked


def open_folded(page):
    """Unfold "Your own video · frames · method · merge layer" (once)."""
    if not page.locator("#sttm-method").is_visible():
        page.get_by_text(re.compile("Your own video ·")).click()
        page.locator("#sttm-method").wait_for()


def reload_example(page):
    """The folded-away Load button: with no upload it loads the example again."""
    open_folded(page)
    page.locator("#sttm-load").click()
    page.wait_for_function("() => STTM.app.loadingNote === ''", timeout=120_000)
    wait_tokens(page)


def test_every_setting_round_trips_without_a_model(browser, pixels_url):
    page = open_page(browser, pixels_url)
    assert page.evaluate("[STTM.app.ev.H, STTM.app.ev.W]") == [14, 14]
    assert walk_every_setting(page) >= len(METHOD_MENU) + 7
    reload_example(page)
    assert not toasts(page) and not page.errors
    # FastV and FrameFusion say they need a model, not "ask in the Chat tab"
    pick(page, "#sttm-method", "FrameFusion")
    assert "needs a model" in page.inner_text(".sttm-wait")
    assert "Chat tab" not in page.inner_text(".sttm-wait")
    page.close()


def test_typed_thresholds_out_of_range_never_trap_the_page(browser, pixels_url):
    """1.5 and -3 typed into τS / τT (and a baseline that sets τS to -1 and back): the next
    load and the page's own requests still work, and every threshold shown stays in 0-1."""
    page = open_page(browser, pixels_url)
    open_folded(page)
    for typed in ("1.5", "-3"):
        for tau in ("#sttm-tau-s", "#sttm-tau-t"):
            box = page.locator(f"{tau} input[type=number]")
            box.fill(typed)
            box.press("Enter")
            page.wait_for_timeout(200)
        pick(page, "#sttm-method", "Temporal only")
        pick(page, "#sttm-method", "STTM")
        reload_example(page)
        assert not toasts(page), (typed, toasts(page))
        for tau in ("#sttm-tau-s", "#sttm-tau-t"):
            assert 0 <= float(page.locator(f"{tau} input[type=number]").input_value()) <= 1
        assert 0 <= page.evaluate("STTM.app.settings.tauS") <= 1
    assert not page.errors
    page.close()


def test_every_setting_round_trips_on_a_model_then_chats_and_scores(browser, model_url):
    page = open_page(browser, model_url, "Static scene")
    H, W = page.evaluate("[STTM.app.ev.H, STTM.app.ev.W]")
    assert (H, W) != (14, 14)
    walk_every_setting(page)
    reload_example(page)
    # the merge layer by keyboard: an arrow key re-runs the model up to the new layer
    layer = page.locator("#sttm-layer input[type=range]")
    layer.focus()
    layer.press("ArrowRight")
    page.wait_for_function("() => /layer-3 hidden states/.test(STTM.app.payload.source)",
                           timeout=120_000)
    assert "layers 0–2 read all" in page.inner_text(".sttm-layers")
    # chat and score: each answer says the weights are random
    page.get_by_role("tab", name="Chat").click()
    page.get_by_placeholder("Ask about the video…").fill("What is shown? A. a car B. a cat")
    page.get_by_role("button", name="Send").click()
    page.get_by_text(re.compile("of the video's tokens kept")).wait_for(timeout=120_000)
    assert "has random weights" in page.inner_text("#sttm-chat")
    page.get_by_role("tab", name="QA accuracy").click()
    page.get_by_role("button", name=re.compile("Score the current setting")).click()
    page.get_by_text(re.compile("chance 25%")).wait_for(timeout=180_000)
    assert page.get_by_text(re.compile("has random weights")).count() >= 2
    assert not toasts(page) and not page.errors
    page.close()


# --- 2. the first view teaches both halves ----------------------------------------------------

def shots(tmp_path) -> Path:
    path = Path(os.environ.get("STTM_SCREENSHOT_DIR") or tmp_path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def screenshot(page, path: Path) -> Path:
    from PIL import Image

    page.mouse.move(0, 0)
    page.wait_for_timeout(1500)  # the keep-ratio curves are drawn once the page is idle
    page.screenshot(path=str(path))
    Image.open(path).convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE).save(
        path, optimize=True)
    return path


def assert_first_view_teaches(page, with_model: bool):
    frame = page.evaluate("STTM.app.view.frame")
    assert frame >= 1  # frame 1 has nothing to carry over
    carried = page.evaluate(f"STTM.carriedShare(STTM.app.tokens, {frame})")
    assert 0 < carried < 1 and page.evaluate(f"STTM.app.tokens.newPerFrame[{frame}]") > 0
    assert f"Frame {frame + 1}: {round(100 * carried)}% of its area is carried over" in \
        page.inner_text(".sttm-carried")
    assert f"frame {frame + 1} /" in page.inner_text(".sttm-frame-label")
    layers = page.inner_text(".sttm-layers")
    assert page.locator(".sttm-layers svg rect").count() >= 3
    if with_model:
        assert re.search(r"Inside .+ \(\d+ decoder layers\): layers 0–1 read all", layers)
    else:
        assert "pixels stand in for layer k's input" in layers
    assert "inside" in page.inner_text("#sttm-header p")
    for selector in [".sttm-carried", ".sttm-layers", "canvas.sttm-map", "#sttm-tau-t"]:
        box = page.locator(selector).first.bounding_box()
        assert box["y"] + box["height"] <= VIEWPORT["height"], selector


def test_first_view_without_a_model(browser, pixels_url, tmp_path):
    page = open_page(browser, pixels_url)
    assert_first_view_teaches(page, with_model=False)
    shot = screenshot(page, shots(tmp_path) / "app_first_view.png")
    assert 20_000 < shot.stat().st_size < 400_000
    page.close()


def test_first_view_with_a_model(browser, model_url, tmp_path):
    page = open_page(browser, model_url, "Fast motion")
    assert_first_view_teaches(page, with_model=True)
    screenshot(page, shots(tmp_path) / "app_first_view_model.png")
    page.close()


# --- 3. the words -----------------------------------------------------------------------------

def test_the_words_say_what_they_mean(browser, pixels_url):
    page = open_page(browser, pixels_url)
    steps = page.locator(".sttm-pipeline").inner_text()
    assert "of patches kept after τS" in steps and "of patches kept after τT" in steps
    assert "merged in each frame" not in steps
    assert "patches per box" in page.inner_text(".sttm-stage .sttm-legend")
    assert "cosine similarity" in page.inner_text("#sttm-tau-s")
    assert "cosine similarity" in page.inner_text(".sttm-inspector")
    assert "mean of its patches" in page.inner_text(".sttm-inspector")
    assert "quadtree" in page.inner_text("#sttm-root")
    assert "frame 0" not in page.inner_text(".sttm-example")
    # the presets on these features: what each keeps, as the page's own merge gives it
    keep = page.inner_text(".sttm-preset-keep")
    tokens = page.evaluate("Math.round(1000 * STTM.merge(STTM.app.ev, 0.85, 0.65, 1).numTokens"
                           " / (STTM.app.ev.T * STTM.app.ev.H * STTM.app.ev.W)) / 10")
    assert f"Paper 50% keeps {tokens:.1f}%" in keep and "pixels" in keep
    # a token bigger than its box says why (nested carry-over)
    page.evaluate("""() => { const tk = STTM.app.tokens, t = STTM.app.view.frame;
      for (let y = 0; y < tk.H; y++) for (let x = 0; x < tk.W; x++) {
        const k = (t * tk.H + y) * tk.W + x, n = tk.tokenMap[k], s = tk.spatialMap[k];
        const b = tk.spatialBoxes.subarray(5 * s, 5 * s + 5);
        if (n >= 0 && tk.numPatches[n] > (b[3] - b[1]) * (b[4] - b[2]))
          { STTM.app.setView({selected: {t, y, x}}); return; } } }""")
    assert "nested carry-over" in page.inner_text(".sttm-inspector")
    page.close()


class _Reply:
    ttft_s, cache_reused, tokens_before, tokens_after, keep_ratio = 0.5, True, 209, 78, 0.09


def test_the_chat_note_has_one_denominator_per_number():
    note = reply_note(_Reply())
    assert "prefill 209 → 78 tokens (video and question)" in note
    assert "9% of the video's tokens kept" in note and "(9% of video tokens)" not in note


# --- 4. readable by everyone ------------------------------------------------------------------

# the contrast of each element's text against what is behind it (WCAG 2 relative luminance);
# opacity multiplies down the tree
CONTRASTS = """(selectors) => {
  const rgba = (c) => { const m = c.match(/[\\d.]+/g).map(Number); return [m[0], m[1], m[2], m.length > 3 ? m[3] : 1]; };
  const lum = ([r, g, b]) => { const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
  const background = (el) => { for (let e = el; e; e = e.parentElement) {
      const c = rgba(getComputedStyle(e).backgroundColor); if (c[3] > 0.5) return c; } return [255, 255, 255, 1]; };
  const alpha = (el) => { let a = 1; for (let e = el; e; e = e.parentElement) a *= Number(getComputedStyle(e).opacity); return a; };
  const out = [];
  for (const sel of selectors) for (const el of document.querySelectorAll(sel)) {
    for (const t of [el, ...el.querySelectorAll('*')]) {
      if (!t.childNodes.length || ![...t.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim())) continue;
      if (!t.getClientRects().length) continue;
      const bg = background(t), fg = rgba(getComputedStyle(t).color), a = fg[3] * alpha(t);
      const mix = fg.slice(0, 3).map((v, i) => v * a + bg[i] * (1 - a));
      const [l1, l2] = [lum(mix), lum(bg)].sort((x, y) => y - x);
      out.push([sel, t.textContent.trim().slice(0, 40), (l1 + 0.05) / (l2 + 0.05)]);
    } }
  return out; }"""


def test_every_explaining_text_has_contrast(browser, pixels_url):
    page = open_page(browser, pixels_url)
    page.wait_for_timeout(1000)
    measured = page.evaluate(CONTRASTS, READ_TEXTS)
    assert {sel for sel, _, _ in measured} >= set(READ_TEXTS) - {".sttm-preset-keep"}
    low = [(sel, text, round(c, 2)) for sel, text, c in measured if c < MIN_CONTRAST]
    assert not low, low
    page.close()


def test_the_map_works_by_keyboard_with_a_focus_ring(browser, pixels_url):
    page = open_page(browser, pixels_url)
    for _ in range(60):  # Tab through the page to the map, as a keyboard user does
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.classList.contains('sttm-map')"):
            break
    assert page.evaluate("document.activeElement.classList.contains('sttm-map')")
    ring = page.evaluate("(() => { const s = getComputedStyle(document.activeElement);"
                         " return [s.outlineStyle, parseFloat(s.outlineWidth)]; })()")
    assert ring[0] != "none" and ring[1] >= 2, ring
    start = page.evaluate("STTM.app.view.cursor")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowDown")
    assert page.evaluate("STTM.app.view.cursor") == {"y": start["y"] + 1, "x": start["x"] + 1}
    page.keyboard.press("Enter")
    assert re.match(r"Token \d+: a \d+×\d+ box of frame", page.inner_text(".sttm-inspector"))
    frame = page.evaluate("STTM.app.view.frame")
    page.keyboard.press(".")
    assert page.evaluate("STTM.app.view.frame") == frame + 1
    # every control of the page has a focus ring too (the τS slider's range)
    page.locator("#sttm-tau-s input[type=range]").focus()
    page.keyboard.press("ArrowLeft")
    page.wait_for_function("() => STTM.app.settings.tauS === 0.89")
    ring = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert ring != "none"
    page.close()


# Machado, Oliveira & Fernandes (2009), severity 1: what a dichromat sees of an sRGB colour
CVD = {"protanopia": [[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216],
                      [-0.003882, -0.048116, 1.051998]],
       "deuteranopia": [[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413],
                        [-0.011820, 0.042940, 0.968881]],
       "tritanopia": [[1.255528, -0.076749, -0.178779], [-0.078411, 0.930809, 0.147602],
                      [0.004733, 0.691367, 0.303900]]}


def _lab(rgb):
    """sRGB (0-255) -> CIELAB (D65)."""
    lin = [((v / 255 + 0.055) / 1.055) ** 2.4 if v / 255 > 0.04045 else v / 255 / 12.92
           for v in rgb]
    xyz = [sum(m * c for m, c in zip(row, lin)) for row in
           [[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]]
    f = [(v / w) ** (1 / 3) if v / w > 0.008856 else 7.787 * v / w + 16 / 116
         for v, w in zip(xyz, [0.9505, 1.0, 1.089])]
    return [116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])]


def _seen(rgb, matrix):
    lin = [((v / 255 + 0.055) / 1.055) ** 2.4 if v / 255 > 0.04045 else v / 255 / 12.92
           for v in rgb]
    out = [min(1, max(0, sum(m * c for m, c in zip(row, lin)))) for row in matrix]
    return [255 * (1.055 * v ** (1 / 2.4) - 0.055 if v > 0.0031308 else 12.92 * v) for v in out]


def test_box_sizes_survive_colour_blindness_and_carry_a_number(browser, pixels_url):
    page = open_page(browser, pixels_url)
    palette = page.evaluate("STTM.SIZE_PALETTE")
    rgb = [[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in palette]
    # neighbouring sizes, and any two of the five common ones (1 to 16 patches), stay apart as
    # a dichromat sees them (CIE76 ΔE > 20)
    pairs = {(k, k + 1) for k in range(len(rgb) - 1)} | set(itertools.combinations(range(5), 2))
    for name, matrix in CVD.items():
        seen = [_lab(_seen(c, matrix)) for c in rgb]
        for i, j in pairs:
            delta = sum((a - b) ** 2 for a, b in zip(seen[i], seen[j])) ** 0.5
            assert delta > 20, (name, palette[i], palette[j], delta)
    # the non-colour cue: each box large enough shows its patch count on the map
    counts = page.evaluate("""() => { const c = document.createElement('canvas'); c.width = 560; c.height = 560;
      return STTM.drawFrame(c.getContext('2d'), STTM.app.tokens, STTM.app.view.frame, 560, 560,
                            {step: 3, colourBy: 'size'}); }""")
    areas = page.evaluate("""() => { const tk = STTM.app.tokens, b = tk.spatialBoxes, out = [];
      for (let s = 0; s < tk.numSpatial; s++) if (b[5 * s] === STTM.app.view.frame)
        out.push(String((b[5 * s + 3] - b[5 * s + 1]) * (b[5 * s + 4] - b[5 * s + 2]))); return out; }""")
    assert sorted(counts) == sorted(areas)
    page.close()


# --- 5. the curves answer "how many will I keep" ----------------------------------------------

def test_curves_have_their_own_axis_and_stay_put_while_dragging(browser, pixels_url):
    page = open_page(browser, pixels_url)
    hist = page.locator("#sttm-hist-spatial canvas")
    page.wait_for_function("() => document.querySelector('#sttm-hist-spatial canvas')"
                           ".dataset.curve === '1'", timeout=20_000)
    lo = hist.get_attribute("data-lo")
    tau_s = page.locator("#sttm-tau-s input[type=range]")
    tau_s.focus()
    # one τS step: one merge and one paint of the lab; the x axis does not move
    page.evaluate("() => { STTM.__merges = STTM.app.merges; STTM.__renders = STTM.app.renders; }")
    page.keyboard.press("ArrowLeft")
    page.wait_for_function("() => STTM.app.settings.tauS === 0.89")
    page.wait_for_timeout(50)
    assert page.evaluate("STTM.app.merges - STTM.__merges") == 1
    assert page.evaluate("STTM.app.renders - STTM.__renders") == 1
    for _ in range(30):  # a drag down to 0.59: the x axis never re-ranges
        page.keyboard.press("ArrowLeft")
        assert hist.get_attribute("data-lo") == lo
    # once idle, the curves are redrawn by themselves: the lab is not painted again
    renders = page.evaluate("STTM.app.renders")
    page.wait_for_function("() => document.querySelector('#sttm-hist-temporal canvas')"
                           ".dataset.curve === '1'", timeout=20_000)
    page.wait_for_timeout(300)
    assert page.evaluate("STTM.app.renders") == renders
    page.close()


# --- 7. nothing stale or ambiguous ------------------------------------------------------------

def test_upload_clears_the_example_and_baselines_say_budget(browser, pixels_url):
    page = open_page(browser, pixels_url)
    open_folded(page)
    assert guide.LOAD_RULE.split(":")[0] in page.inner_text("#sttm-load-rule")
    page.locator("input[type=file]").first.set_input_files(
        str(examples_dir() / "static.mp4"))
    page.wait_for_function("() => !document.querySelector('#sttm-example input').value",
                           timeout=30_000)
    # a baseline keeps the budget: the mode radio says so, and STTM gets its own mode back
    pick(page, "#sttm-method", "Uniform pooling")
    budget = page.locator("#sttm-mode label", has_text="Token budget").locator("input")
    page.wait_for_function("() => document.querySelector('#sttm-mode input[value=\"Token budget\"]')"
                           "?.checked", timeout=10_000)
    assert budget.is_disabled()
    pick(page, "#sttm-method", "STTM")
    page.wait_for_function("() => document.querySelector('#sttm-mode input[value=\"Thresholds\"]')"
                           "?.checked && STTM.app.settings.mode === 'thresholds'", timeout=10_000)
    assert not toasts(page)
    page.close()
