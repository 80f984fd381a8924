"""`sttm-studio export`: the lab as a static site (sttm_viz.export).

core: two bundled examples exported; the files, their sizes, and that each payload (merge
evidence, notes, frames) and budget table is what the app's server sends for that video.
model: a tiny random-weight model's layer-k features, computed by the exporter as the app does.
browser: the export served by a plain static file server (python -m http.server, no Python
code of ours behind it), driven in Debian's Chromium as tests/test_browser.py drives the app.
"""
import base64
import json
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from sttm_core import VideoTokenMerger
from sttm_core.examples import examples_dir
from sttm_core.pixels import pixel_patch_features
from sttm_core.video import load_video
from sttm_core.models.registry import paper_presets
from sttm_viz import guide
from sttm_viz.export import export
from sttm_viz.payload import budget_table

FRAMES = 8
NAMES = ["fast_motion", "static"]
WEB = Path(__file__).resolve().parents[1] / "sttm_viz" / "web"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Two bundled examples exported with pixel features (what a machine without weights has)."""
    out = tmp_path_factory.mktemp("site")
    done = export(out, frames=FRAMES, only=NAMES)
    return out, done


def app_payload(path: Path, frames: int = FRAMES, engine=None) -> tuple[dict, object]:
    """What the app's `load` sends for this video (handlers.load's payload), and the session."""
    from sttm_viz import handlers
    from sttm_viz.session import Controls, Engine, Session

    session = Session(engine or Engine(None, "test"))
    return handlers.load(session, str(path), frames, Controls())["lab"], session


def page_config(out: Path) -> dict:
    text = (out / "index.html").read_text(encoding="utf-8")
    raw = re.search(r'<script id="sttm-config" type="application/json">(.*?)</script>', text, re.S)
    return json.loads(raw.group(1).replace("<\\/", "</"))


# --- core ---------------------------------------------------------------------------------------

@pytest.mark.core
def test_the_site_has_the_page_scripts_and_every_video(site):
    out, done = site
    assert [v.name for v in done] == NAMES
    for name in ["index.html", "README.md", "web/static.js", "web/lab.css",
                 "videos/static/tables.json", "videos/static/uniform.json"]:
        assert (out / name).is_file(), name
    for path in [*WEB.glob("*.js"), WEB / "lab.css"]:  # every module the entry imports, copied
        if path.name != "gradio.js":  # the app's bridge: not the static page's
            assert (out / "web" / path.name).read_bytes() == path.read_bytes(), path.name
    html = (out / "index.html").read_text(encoding="utf-8")
    assert re.findall(r"<script[^>]*src=[^>]*>", html) == [
        '<script type="module" src="web/static.js">']  # the entry; it imports the rest
    assert "__CONFIG__" not in html and "__SCRIPTS__" not in html
    for v in done:
        folder = out / "videos" / v.name
        frames = sorted(folder.glob("frame_*.jpg"))
        assert len(frames) == v.token_frames == FRAMES
        assert all(f.read_bytes()[:2] == b"\xff\xd8" for f in frames)  # JPEG
        size = sum(f.stat().st_size for f in folder.iterdir())
        assert size == v.bytes and 20_000 < size < 1_000_000  # 8 examples stay far under 20 MB


@pytest.mark.core
def test_the_payload_is_what_the_app_sends(site):
    out, _ = site
    for name in NAMES:
        path = examples_dir() / f"{name}.mp4"
        ours = json.loads((out / "videos" / name / "payload.json").read_text())
        theirs, _ = app_payload(path)
        assert ours["evidence"] == theirs["evidence"]
        assert ours["id"] == name
        for key in set(theirs) - {"id", "frames"}:
            assert ours[key] == theirs[key], key
        # the frames: the same JPEG bytes the app sends as data URLs
        assert ours["frames"] == [f"videos/{name}/frame_{t:03d}.jpg" for t in range(FRAMES)]
        for t, url in enumerate(theirs["frames"]):
            jpeg = base64.b64decode(url.split(",", 1)[1])
            assert (out / ours["frames"][t]).read_bytes() == jpeg


@pytest.mark.core
def test_budget_tables_cover_every_root_and_temporal_setting(site):
    out, _ = site
    message = json.loads((out / "videos" / "fast_motion" / "tables.json").read_text())
    assert message["video"] == "fast_motion" and message["tokens"] is None
    merger = pixel_merger("fast_motion")
    keys = [(t["root"], t["temporal"]) for t in message["tables"]]
    assert sorted(keys) == sorted((r, tt) for r in range(merger.num_levels) for tt in (True, False))
    table = next(t for t in message["tables"] if (t["root"], t["temporal"]) == (1, True))
    assert table == json.loads(json.dumps(budget_table(merger, 1, True)))


@pytest.mark.core
def test_uniform_pooling_tokens_at_every_budget(site):
    from sttm_core import STTMConfig
    from sttm_core.methods import reduce_tokens
    from sttm_viz.payload import BUDGETS, tokens_json

    out, _ = site
    u = json.loads((out / "videos" / "static" / "uniform.json").read_text())
    assert u["video"] == "static" and u["budgets"] == BUDGETS and len(u["set"]) == len(BUDGETS)
    assert len(u["sets"]) < len(BUDGETS)  # each distinct grid once
    merger = pixel_merger("static")
    for k in (0, 25, 45, len(BUDGETS) - 1):
        result = reduce_tokens(merger, STTMConfig(method="uniform", keep_ratio=BUDGETS[k]))
        assert u["sets"][u["set"][k]] == tokens_json(result)


@pytest.mark.core
def test_the_page_words_come_from_python(site):
    from sttm_viz.protocol import METHOD_MENU, page_protocol

    out, _ = site
    config = page_config(out)
    presets = guide.presets(paper_presets()[1])  # pixels: LLaVA-OneVision-7B's, said so
    assert config["protocol"] == json.loads(json.dumps(page_protocol(presets)))  # the app's
    protocol = config["protocol"]
    assert protocol["controls"]["tauS"]["info"] == guide.HELP["tau_s"]
    assert protocol["labels"]["example"] == guide.LABELS["example"]
    assert protocol["menu"] == METHOD_MENU and protocol["modes"] == guide.MODES
    assert protocol["presets"] == {k: list(v) for k, v in presets.items()}
    assert "LLaVA-OneVision-7B" in config["preset_note"]
    assert set(config["absent_methods"]) == {"FastV", "FrameFusion", "ToMe per frame",  # server-made
                                             "ToMe per snippet", "ToMe per video", "DyCoke",
                                             "Joint octree"}
    assert [v["title"] for v in config["videos"]] == ["Fast motion", "Static scene"]
    for name in ("Chat", "Time to first token", "QA accuracy"):
        assert "needs a model" in config["model_panels"][name]
    static = (WEB / "static.js").read_text() + (WEB / "static.html").read_text()
    for text in [*guide.HELP.values(), config["preset_note"], *presets, "Uniform pooling"]:
        assert text not in static  # written once, in Python
    readme = (out / "README.md").read_text()
    assert readme.startswith("---\n") and "\nsdk: static\n" in readme
    assert "\napp_file: index.html\n" in readme


@pytest.mark.core
def test_the_command_exports_a_given_video(tmp_path, capsys):
    from sttm_viz.app import main

    video = tmp_path / "my clip.mp4"
    shutil.copyfile(examples_dir() / "static.mp4", video)
    main(["export", str(tmp_path / "out"), str(video), "--frames", "2", "--no-examples"])
    assert re.match(r"wrote .*out: 1 videos", capsys.readouterr().out)
    payload = json.loads((tmp_path / "out/videos/my_clip/payload.json").read_text())
    assert payload["video"] == "my clip.mp4" and payload["example"] is None
    assert [v["title"] for v in page_config(tmp_path / "out")["videos"]] == ["my clip.mp4"]
    with pytest.raises(SystemExit, match="no such video"):
        main(["export", str(tmp_path / "out2"), str(tmp_path / "missing.mp4")])


def pixel_merger(name: str, frames: int = FRAMES) -> VideoTokenMerger:
    clip = load_video(examples_dir() / f"{name}.mp4", frames)
    return VideoTokenMerger(pixel_patch_features(clip.frames))


# --- model --------------------------------------------------------------------------------------

@pytest.mark.model
def test_a_models_features_are_exported_as_the_app_computes_them(tmp_path, tiny_checkpoints):
    from sttm_core.models.checkpoints import load_model
    from sttm_viz.session import Engine

    checkpoint = str(tiny_checkpoints["tiny-llava-onevision"])
    export(tmp_path, model=checkpoint, frames=4, only=["fast_motion"])
    ours = json.loads((tmp_path / "videos/fast_motion/payload.json").read_text())
    theirs, _ = app_payload(examples_dir() / "fast_motion.mp4", 4,
                            Engine(load_model(checkpoint, device="cpu")))
    assert ours["source"] == theirs["source"] and ours["source"].startswith("layer-2 hidden")
    assert ours["evidence"] == theirs["evidence"]
    assert "needs a model" in page_config(tmp_path)["model_panels"]["Chat"]


# --- browser ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def site_url(site):
    """The export behind `python -m http.server` on 127.0.0.1: a plain static file server."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind",
                               "127.0.0.1", "--directory", str(site[0])],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url, timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(10)


@pytest.fixture
def page(browser, site_url):
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    errors = []
    page.on("pageerror", lambda err: errors.append(err))
    page.goto(site_url)
    page.wait_for_function("() => window.STTM && STTM.app.tokens && STTM.app.ev", timeout=60_000)
    yield page
    assert not errors, errors
    page.close()


def shown_tokens(page) -> int:
    text = page.locator(".sttm-step[data-step='3']").inner_text()
    return int(re.search(r"([\d,]+)\s*tokens", text).group(1).replace(",", ""))


def set_number(page, elem_id: str, value: float):
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


@pytest.mark.browser
def test_static_map_and_tau_s_give_the_engines_tokens(page):
    merger = pixel_merger("fast_motion")
    canvas = page.locator("canvas.sttm-map")
    assert canvas.bounding_box()["width"] > 200
    assert canvas.get_attribute("data-tokens") == str(merger.merge(0.9, 0.9, 1).num_tokens)
    assert shown_tokens(page) == merger.merge(0.9, 0.9, 1).num_tokens
    set_number(page, "sttm-tau-s", 0.95)
    page.wait_for_function("() => STTM.app.settings.tauS === 0.95")
    assert shown_tokens(page) == merger.merge(0.95, 0.9, 1).num_tokens
    page.locator("#sttm-tau-s input[type=range]").press("ArrowLeft")  # drag it one step
    page.wait_for_function("() => STTM.app.settings.tauS === 0.94")
    assert shown_tokens(page) == merger.merge(0.94, 0.9, 1).num_tokens
    assert page.locator("#sttm-tau-s input[type=number]").input_value() == "0.94"
    assert "features: pixels" in page.inner_text(".sttm-settings")
    chains = page.locator("canvas.sttm-chains")  # the chains plot follows the same tokens
    assert chains.get_attribute("data-tokens") == str(merger.merge(0.94, 0.9, 1).num_tokens)
    for which in ("spatial", "temporal"):  # the histograms are drawn with their notes
        assert "%" in page.inner_text(f"#sttm-hist-{which} .sttm-hist-note")


@pytest.mark.browser
def test_static_inspector_opens_on_a_click(page):
    box = page.locator("canvas.sttm-map").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.4)
    inspector = page.locator(".sttm-inspector")
    inspector.locator(".sttm-trail").first.wait_for()
    frame = page.evaluate("STTM.app.view.frame") + 1  # it opens where τT carries over
    assert re.match(rf"Token \d+: a \d+×\d+ box of frame {frame}\b", inspector.inner_text())
    assert "Why this box (τS 0.900)" in inspector.inner_text()


@pytest.mark.browser
def test_static_budget_mode_reaches_the_budget(page):
    from sttm_core import STTMConfig
    from sttm_core.methods import reduce_tokens

    tau_s = page.locator("#sttm-tau-s input[type=range]")
    assert not page.locator("#sttm-budget").is_visible() and not tau_s.is_disabled()
    page.get_by_label("Token budget").check()
    page.wait_for_function("() => STTM.app.current.kind === 'merge' && "
                           "STTM.app.current.source === 'budget'", timeout=30_000)
    assert page.locator("#sttm-budget").is_visible() and tau_s.is_disabled()
    total = FRAMES * 14 * 14
    assert abs(shown_tokens(page) / total - 0.30) <= 0.01
    page.wait_for_function("() => /set by the budget: \\d\\.\\d{3}/.test("
                           "document.querySelector('#sttm-tau-s .sttm-info').textContent)")
    set_number(page, "sttm-budget", 0.5)
    page.wait_for_function("() => STTM.app.settings.budget === 0.5")
    assert abs(shown_tokens(page) / total - 0.50) <= 0.01
    current = page.evaluate("STTM.app.current")  # the thresholds shown are the table's
    assert float(page.locator("#sttm-tau-s input[type=number]").input_value()) == current["tauS"]
    merger = pixel_merger("fast_motion")
    assert shown_tokens(page) == merger.merge(current["tauS"], current["tauT"], 1).num_tokens
    page.get_by_label("Merge across frames (τT)").uncheck()  # another table: temporal off
    page.wait_for_function("() => STTM.app.current.tauT === null")
    assert abs(shown_tokens(page) / total - 0.50) <= 0.01
    page.locator("#sttm-method select").select_option("Temporal only")  # a baseline's table
    page.wait_for_function("() => STTM.app.current.kind === 'merge' && "
                           f"STTM.app.current.root === {merger.num_levels - 1}")  # no quadtree
    current = page.evaluate("STTM.app.current")
    assert abs(shown_tokens(page) / total - current["keep"]) < 1e-5
    assert page.locator("#sttm-mode input").first.is_disabled()  # baselines keep the budget
    page.locator("#sttm-method select").select_option("Uniform pooling")  # precomputed tokens
    page.wait_for_function("() => STTM.app.current.kind === 'served'")
    uniform = reduce_tokens(merger, STTMConfig(method="uniform", keep_ratio=0.5))
    assert shown_tokens(page) == uniform.num_tokens
    assert "Uniform pooling at 50%" in page.inner_text(".sttm-settings")
    set_number(page, "sttm-budget", 0.2)
    page.wait_for_function("() => STTM.app.current.kind === 'served' && STTM.app.served.budget === 0.2")
    uniform = reduce_tokens(merger, STTMConfig(method="uniform", keep_ratio=0.2))
    assert shown_tokens(page) == uniform.num_tokens
    page.locator("#sttm-method select").select_option("STTM")
    page.get_by_label("Thresholds").check()
    page.wait_for_function("() => !document.querySelector('#sttm-tau-s input[type=range]').disabled")


@pytest.mark.browser
def test_static_examples_presets_and_model_panels(page):
    page.locator("#sttm-example select").select_option(label="Static scene")
    page.wait_for_function("() => STTM.app.payload.id === 'static' && STTM.app.tokens")
    assert "Static scene" in page.inner_text(".sttm-example")
    assert shown_tokens(page) == pixel_merger("static").merge(0.9, 0.9, 1).num_tokens
    page.get_by_role("button", name=next(iter(guide.presets(paper_presets()[1])))).click()
    page.wait_for_function("() => STTM.app.settings.tauS === 0.85 && STTM.app.settings.tauT === 0.65")
    assert shown_tokens(page) == pixel_merger("static").merge(0.85, 0.65, 1).num_tokens
    assert page.locator("#sttm-tau-t input[type=number]").input_value() == "0.65"
    page.get_by_label("2×2").check()  # the root grid
    page.wait_for_function("() => STTM.app.current.root === 0")
    assert shown_tokens(page) == pixel_merger("static").merge(0.85, 0.65, 0).num_tokens
    panels = page.inner_text("#sttm-model-panels")
    assert "Chat needs a model" in panels and "QA accuracy needs a model" in panels
    assert page.locator("#sttm-method option[value='FastV']").is_disabled()
    assert "FastV: needs a model" in page.inner_text("#sttm-method")


@pytest.mark.browser
def test_static_page_on_a_phone(browser, site_url):
    """390x844 with touch: the map first at full width, τS and τT right under it, nothing
    wider than the screen; a tap on τS's slider moves it."""
    context = browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True,
                                  is_mobile=True)
    page = context.new_page()
    page.goto(site_url)
    page.wait_for_function("() => window.STTM && STTM.app.tokens && STTM.app.ev", timeout=60_000)
    boxes = {sel: page.locator(sel).first.bounding_box()
             for sel in ["canvas.sttm-map", "#sttm-tau-s", "#sttm-tau-t", ".sttm-pipeline"]}
    assert boxes["canvas.sttm-map"]["width"] >= 360
    assert boxes["canvas.sttm-map"]["y"] < boxes["#sttm-tau-s"]["y"] < boxes["#sttm-tau-t"]["y"]
    assert boxes["#sttm-tau-t"]["y"] < boxes[".sttm-pipeline"]["y"]
    assert boxes["#sttm-tau-s"]["y"] < 844  # τS is on the first screen
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    track = page.locator("#sttm-tau-s input[type=range]")
    track.scroll_into_view_if_needed()
    box = track.bounding_box()
    page.touchscreen.tap(box["x"] + box["width"] * 0.5, box["y"] + box["height"] / 2)
    page.wait_for_function("() => Math.abs(STTM.app.settings.tauS - 0.5) < 0.03")
    assert shown_tokens(page) == pixel_merger("fast_motion").merge(
        page.evaluate("STTM.app.settings.tauS"), 0.9, 1).num_tokens
    context.close()
