"""How fast the app's page answers a control, measured in a real browser.

    python benchmarks/app_latency.py                  # 32 frames x 14x14, pixels and a tiny model
    python benchmarks/app_latency.py --moves 40 --json
    python benchmarks/app_latency.py --phone --cpu-throttle 4 --no-model   # a mid-range phone

The app runs in this process (no model: per-patch pixel features; then a random-weight
LLaVA-OneVision whose token grid is 14x14 per frame, so the page merges a model's layer-k
hidden states), and headless Chromium (Playwright, the system /usr/bin/chromium) clicks the
controls as a user does: tauS, tauT and the budget sliders at random places on their tracks,
the root grid's options, the frame slider of the player. Each move is timed in the page from the
pointer going down to the frame painted after the token map, the readout and the inspector show
the new value (two animation frames after the page's state matches the control). Moves start
once the server is idle (it computes the budget tables in the background after a load). Printed:
the median and the 90th percentile per control, in ms.

--phone: a 390x844 touch screen (is_mobile, has_touch) and a finger instead of a mouse: each
slider move is a touch drag from the thumb to a random place, timed from the finger's move to
the paint (a drag's step, as a phone user feels it); the root grid is tapped. --cpu-throttle N:
Chromium's own CPU throttling (DevTools' Emulation.setCPUThrottlingRate), N times slower page
JavaScript and painting; 4 is what DevTools calls a mid-tier mobile device.
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import socket
import statistics
import tempfile
import time
from pathlib import Path

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
EXAMPLE = "Fast motion"

# in the page: remember when the pointer went down (or a finger moved) and how many renders
# had happened
PROBE = """() => {
  window.__t0 = 0; window.__r0 = 0;
  const mark = () => { window.__t0 = performance.now(); window.__r0 = STTM.app.renders; };
  document.addEventListener('pointerdown', mark, true);
  document.addEventListener('touchmove', mark, {capture: true, passive: true});
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


def settle(limit_s: float = 300.0) -> None:
    """Wait until this process (the app's server) is idle: after a video loads it computes the
    budget tables in the background, which would otherwise compete with the browser for the
    CPU while the moves are timed."""
    until = time.monotonic() + limit_s
    while time.monotonic() < until:
        cpu = time.process_time()
        time.sleep(1.0)
        if time.process_time() - cpu < 0.05:
            return


def click_track(page, selector: str, rng: random.Random) -> None:
    box = page.locator(selector).bounding_box()
    x = box["x"] + box["width"] * rng.uniform(0.03, 0.97)
    page.mouse.click(x, box["y"] + box["height"] / 2)


def drag_track(page, selector: str, rng: random.Random) -> None:
    """A finger on the slider's thumb, moved to a random place on its track, lifted (CDP touch
    events: what a phone's screen sends)."""
    track = page.locator(selector)
    track.scroll_into_view_if_needed()
    box = track.bounding_box()
    lo, hi, value = (float(v) for v in track.evaluate("(r) => [r.min, r.max, r.value]"))
    y = box["y"] + box["height"] / 2
    x0 = box["x"] + box["width"] * (value - lo) / ((hi - lo) or 1)
    x1 = box["x"] + box["width"] * rng.uniform(0.03, 0.97)
    cdp = page.context.new_cdp_session(page)
    touch = lambda kind, x: cdp.send("Input.dispatchTouchEvent", {  # noqa: E731
        "type": kind, "touchPoints": [] if kind == "touchEnd" else [{"x": x, "y": y}]})
    touch("touchStart", x0)
    page.wait_for_timeout(50)
    touch("touchMove", x1)
    touch("touchEnd", x1)
    cdp.detach()


def time_moves(page, moves: int, seed: int = 0, phone: bool = False) -> dict:
    rng = random.Random(seed)
    page.evaluate(PROBE)
    out = {}
    slide = drag_track if phone else click_track

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
        measure(name, lambda e=elem: slide(page, f"#{e} input[type=range]", rng),
                SLIDER_MATCHES.format(id=elem, key=name),
                f"() => document.querySelector('#{elem} input[type=range]').value")
    roots = page.locator("#sttm-root label")
    count = roots.count()
    measure("root", lambda: roots.nth(rng.randrange(count)).tap() if phone
            else roots.nth(rng.randrange(count)).click(),
            "() => { const c = document.querySelector('#sttm-root input:checked');"
            " return c && STTM.app.settings.root === c.value; }",
            "() => document.querySelector('#sttm-root input:checked').value")
    measure("frame", lambda: slide(page, ".sttm-frame", rng),
            "() => Number(document.querySelector('.sttm-frame').value) === STTM.app.view.frame"
            " && document.querySelector('canvas.sttm-map').dataset.frame == STTM.app.view.frame",
            "() => document.querySelector('.sttm-frame').value")
    page.get_by_label("Token budget").check()
    page.wait_for_function("() => STTM.app.current && STTM.app.current.kind === 'merge'",
                           timeout=300_000)  # the budget table, once per video
    measure("budget", lambda: slide(page, "#sttm-budget input[type=range]", rng),
            "() => Number(document.querySelector('#sttm-budget input[type=range]').value)"
            " === STTM.app.settings.budget && STTM.app.current.kind === 'merge'",
            "() => document.querySelector('#sttm-budget input[type=range]').value")
    page.get_by_label("Thresholds").check()
    return {name: dict(median_ms=round(statistics.median(t), 1),
                       p90_ms=round(sorted(t)[int(0.9 * (len(t) - 1))], 1), moves=len(t))
            for name, t in out.items()}


PHONE = dict(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True,
             device_scale_factor=2)
DESKTOP = dict(viewport={"width": 1400, "height": 900})


def run(engine, frames: int, moves: int, load_example: bool, phone: bool = False,
        cpu_throttle: float = 1.0) -> dict:
    from playwright.sync_api import sync_playwright

    demo, url = serve(engine, frames)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_context(**(PHONE if phone else DESKTOP)).new_page()
            if cpu_throttle != 1:  # the page's main thread N times slower, as DevTools does it
                page.context.new_cdp_session(page).send("Emulation.setCPUThrottlingRate",
                                                        {"rate": cpu_throttle})
            page.goto(url)
            page.wait_for_function("() => window.STTM && STTM.app", timeout=60_000)
            if load_example:  # with a model the page waits for the user to pick a video
                page.locator("#sttm-example input").click()
                page.get_by_role("option", name=EXAMPLE).click()
            page.wait_for_function("() => STTM.app.tokens && STTM.app.ev", timeout=600_000)
            T, H, W = page.evaluate("[STTM.app.ev.T, STTM.app.ev.H, STTM.app.ev.W]")
            settle()
            result = dict(grid=f"{T}x{H}x{W}", source=page.evaluate("STTM.app.payload.source"),
                          controls=time_moves(page, moves, phone=phone))
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
    parser.add_argument("--phone", action="store_true",
                        help="390x844 touch screen; sliders dragged by a finger")
    parser.add_argument("--cpu-throttle", type=float, default=1.0, metavar="N",
                        help="Chromium CPU throttling rate (4: a mid-range phone)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from sttm_viz.session import Engine

    device = dict(phone=args.phone, cpu_throttle=args.cpu_throttle)
    rows = {"pixel features": run(Engine(None, "benchmark", max_frames=max(args.frames, 64)),
                                  args.frames, args.moves, load_example=False, **device)}
    if not args.no_model:
        rows["tiny model, layer-2 features"] = run(tiny_model_engine(args.frames), args.frames,
                                                   args.moves, load_example=True, **device)
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    how = (f"{'390x844 touch, a finger drags' if args.phone else '1400x900, a mouse clicks'}"
           f"{f', CPU throttled {args.cpu_throttle:g}x' if args.cpu_throttle != 1 else ''}")
    print(f"browser ({how}): a control moves -> token map, readout and inspector painted (ms), "
          f"{args.moves} moves per control")
    names = list(next(iter(rows.values()))["controls"])
    print(f"{'features':32} {'grid':10} " + " ".join(f"{n + ' med/p90':>17}" for n in names))
    for label, r in rows.items():
        cells = " ".join(f"{c['median_ms']:>8.0f}/{c['p90_ms']:<8.0f}" for c in r["controls"].values())
        print(f"{label:32} {r['grid']:10} {cells}")


if __name__ == "__main__":
    main()
