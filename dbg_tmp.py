import sys, time
sys.path.insert(0, "benchmarks"); sys.path.insert(0, "tests")
from app_latency import serve, CHROMIUM, FLAGS
from sttm_viz.session import Engine
from playwright.sync_api import sync_playwright
demo, url = serve(Engine(None, "bench", max_frames=64), 32)
with sync_playwright() as p:
    b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
    page = b.new_page(viewport={"width": 1400, "height": 900})
    page.goto(url)
    page.wait_for_function("() => window.STTM && STTM.app && STTM.app.tokens", timeout=60_000)
    print(page.evaluate("""() => {
      const app = STTM.app, out = {};
      const time = (f, n=20) => { const t0 = performance.now(); for (let i = 0; i < n; i++) f(i); return (performance.now() - t0) / n; };
      out.merge = time((i) => STTM.merge(app.ev, 0.8 + i * 0.005, 0.9, 1));
      out.control = time((i) => app.control({tauS: 0.8 + i * 0.005}));
      const views = app.views;
      out.perView = views.map((v) => time(() => v.render(app, 'view'), 10));
      return JSON.stringify(out);
    }"""))
    b.close()
demo.close()
