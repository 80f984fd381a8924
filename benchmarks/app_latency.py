"""How fast the app's page answers a control, measured in a real browser.

    python benchmarks/app_latency.py                  # 32 frames x 14x14, pixels and a tiny model
    python benchmarks/app_latency.py --moves 40 --json

The app runs in this process (no model: per-patch pixel features; then a random-weight
LLaVA-OneVision whose token grid is 14x14 per frame, so the page merges a model's layer-k
hidden states), and headless Chromium (Playwright, the system /usr/bin/chromium) clicks the
controls as a user does: tauS, tauT and the budget sliders at random places on their tracks,
the root grid's options, the frame slider of the player. Each move is timed in the page from the
pointer going down to the frame painted after the token map, the readout and the inspector show
the new value (two animation frames after the page's state matches the control). Printed:
the median and the 90th percentile per control, in ms.
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import socket
import statistics
import tempfile
from pathlib import Path

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
EXAMPLE = "Fast motion"

# in the page: remember when the pointer went down and how many renders had happened
PROBE = """() => {
  window.__t0 = 0; window.__r0 = 0;
  document.addEventListener('pointerdown', () => { window.__t0 = performance.now(); window.__r0 = STTM.app.renders; }, true);
}"""
# resolves with ms from pointer down to the paint after the page shows `check()`'s state
WAIT = """(check) => new Promise((resolve, reject) => {
  const ok = new Function('return (' + check + ')()');
  const until = performance.now() + 10000;
  const poll = () => {
    if (STTM.app.renders > window.__r0 && ok()) {
      requestAnimationFrame(() => requestAnimationFrame(() => resolve(performance.now() - window.__t0)));
    } else if (performance.now() > until) reject(new Error('no update: ' + check));
    else setTimeout(poll, 1);
  };
  poll();
})"""
SLIDER_MATCHES = """() => {{ const r = document.querySelector('#{id} input[type=range]');
  return Number(r.value) === STTM.app.settings.{key}; }}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(engine, frames: int) -> tuple[object, str]:
    from sttm_viz.ui import build_demo

    demo = build_demo(engine, default_frames=frames)
    port = free_port()
    demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True,
                        quiet=True)
    return demo, f"http://127.0.0.1:{port}/"


def click_track(page, selector: str, rng: random.Random) -> None:
    box = page.locator(selector).bounding_box()
    x = box["x"] + box["width"] * rng.uniform(0.03, 0.97)
    page.mouse.click(x, box["y"] + box["height"] / 2)


def time_moves(page, moves: int, seed: int = 0) -> dict:
    rng = random.Random(seed)
    page.evaluate(PROBE)
    out = {}

    def measure(name, act, check, value):
        """value: JS returning the control's value; a click that does not change it (on the
        thumb itself) is tried again elsewhere and not timed."""
        times = []
        while len(times) < moves:
            before = page.evaluate(value)
            act()
            if page.evaluate(value) == before:
                continue
            times.append(page.evaluate(WAIT, check))
            page.wait_for_timeout(rng.uniform(30, 120))  # a user's pace, not a burst
        out[name] = times

    for name, elem in [("tauS", "sttm-tau-s"), ("tauT", "sttm-tau-t")]:
        measure(name, lambda e=elem: click_track(page, f"#{e} input[type=range]", rng),
                SLIDER_MATCHES.format(id=elem, key=name),
                f"() => document.querySelector('#{elem} input[type=range]').value")
    roots = page.locator("#sttm-root label")
    count = roots.count()
    measure("root", lambda: roots.nth(rng.randrange(count)).click(),
            "() => { const c = document.querySelector('#sttm-root input:checked');"
            " return c && STTM.app.settings.root === c.value; }",
            "() => document.querySelector('#sttm-root input:checked').value")
    measure("frame", lambda: click_track(page, ".sttm-frame", rng),
            "() => Number(document.querySelector('.sttm-frame').value) === STTM.app.view.frame"
            " && document.querySelector('canvas.sttm-map').dataset.frame == STTM.app.view.frame",
            "() => document.querySelector('.sttm-frame').value")
    page.get_by_label("Token budget").check()
    page.wait_for_function("() => STTM.app.current && STTM.app.current.kind === 'merge'",
                           timeout=300_000)  # the budget table, once per video
    measure("budget", lambda: click_track(page, "#sttm-budget input[type=range]", rng),
            "() => Number(document.querySelector('#sttm-budget input[type=range]').value)"
            " === STTM.app.settings.budget && STTM.app.current.kind === 'merge'",
            "() => document.querySelector('#sttm-budget input[type=range]').value")
    page.get_by_label("Thresholds").check()
    return {name: dict(median_ms=round(statistics.median(t), 1),
                       p90_ms=round(sorted(t)[int(0.9 * (len(t) - 1))], 1), moves=len(t))
            for name, t in out.items()}


def run(engine, frames: int, moves: int, load_example: bool) -> dict:
    from playwright.sync_api import sync_playwright

    demo, url = serve(engine, frames)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(url)
            page.wait_for_function("() => window.STTM && STTM.app", timeout=60_000)
            if load_example:  # with a model the page waits for the user to pick a video
                page.locator("#sttm-example input").click()
                page.get_by_role("option", name=EXAMPLE).click()
            page.wait_for_function("() => STTM.app.tokens && STTM.app.ev", timeout=600_000)
            T, H, W = page.evaluate("[STTM.app.ev.T, STTM.app.ev.H, STTM.app.ev.W]")
            result = dict(grid=f"{T}x{H}x{W}", source=page.evaluate("STTM.app.payload.source"),
                          controls=time_moves(page, moves))
            browser.close()
    finally:
        demo.close()
    return result


def tiny_model_engine(frames: int):
    """A random-weight LLaVA-OneVision with a 14x14 token grid per frame (no download)."""
    from sttm_core.models.checkpoints import build_random_checkpoint, load_model
    from sttm_viz.session import Engine

    path = build_random_checkpoint("tiny-llava-onevision-14x14",
                                   Path(tempfile.mkdtemp(prefix="sttm_tiny_")))
    return Engine(load_model(str(path), device="cpu"), max_frames=max(frames, 64))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--moves", type=int, default=25, help="moves per control")
    parser.add_argument("--no-model", action="store_true", help="pixel features only")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from sttm_viz.session import Engine

    rows = {"pixel features": run(Engine(None, "benchmark", max_frames=max(args.frames, 64)),
                                  args.frames, args.moves, load_example=False)}
    if not args.no_model:
        rows["tiny model, layer-2 features"] = run(tiny_model_engine(args.frames), args.frames,
                                                   args.moves, load_example=True)
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"browser: release a control -> token map, readout and inspector painted (ms), "
          f"{args.moves} moves per control")
    names = list(next(iter(rows.values()))["controls"])
    print(f"{'features':32} {'grid':10} " + " ".join(f"{n + ' med/p90':>17}" for n in names))
    for label, r in rows.items():
        cells = " ".join(f"{c['median_ms']:>8.0f}/{c['p90_ms']:<8.0f}" for c in r["controls"].values())
        print(f"{label:32} {r['grid']:10} {cells}")


if __name__ == "__main__":
    main()
