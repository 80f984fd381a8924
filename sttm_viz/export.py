"""`sttm-studio export OUT_DIR [VIDEO…] [--model ID] [--frames N]`: the lab as a static site.

Flow: videos (the bundled examples, then any given) -> a Session of an Engine (pixels, or the
model's layer-k features, computed here exactly as the app computes them) -> per video its
page payload (sttm_viz.payload.video_payload: merge evidence, notes), its frames as JPEG files
the budget tables of every root level with temporal merging on and off and the uniform-pooling
baseline's tokens at every budget (what the app's server sends on request) -> index.html (sttm_viz/web/static.html with the page's words, from
sttm_viz.guide and the method menu, as JSON), the page's scripts and style copied from
sttm_viz/web, and a README.md with a static Space's front matter.

OUT_DIR/
  index.html  README.md  web/{unionfind,merge,words,draw,app,lab,plots,static}.js  web/lab.css
  videos/<name>/payload.json   video_payload(...) with frames as file paths, id = <name>
  videos/<name>/tables.json    {"video": <name>, "tables": [budget_table, ...], "tokens": null}
  videos/<name>/<baseline>.json  (EXPORTED_BASELINES: uniform) {"video", "budgets": [B], "set": [B]
                               index into "sets": [tokens_json]}
  videos/<name>/frame_000.jpg  one per token frame, the same JPEG bytes the app sends

Any static file server serves it; the page's bridge (web/static.js) plays Gradio's role.
"""
from __future__ import annotations

import argparse
import base64
import html
import json
import logging
import re
import shutil
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from sttm_core.methods import METHODS, parse

from .protocol import METHOD_MENU

log = logging.getLogger(__name__)

DEFAULT_FRAMES = 16       # the app's default frames per video
DEFAULT_LAYER = 2         # the paper's merge layer
STATIC_FILES = ["static.js"]   # the static page's entry module and bridge (imports the others)
# the server-made baselines an export carries, their tokens at every budget of the slider
# (<method>.json per video; the page finds them under the video's `served`)
EXPORTED_BASELINES = ("uniform",)
# the menu's methods the static page cannot show: query-aware ones need a model and a question;
# the paper's other baselines would need their tokens at every budget exported
SERVER_ONLY = {name: "needs a model and a question" if METHODS[name].query_aware else
               "its tokens come from a server (only uniform pooling's are exported)"
               for name in METHOD_MENU.values()
               if not METHODS[name].thresholded and name not in EXPORTED_BASELINES}


@dataclass
class Exported:
    """One exported video: its folder name, title in the picker, file sizes."""
    name: str
    title: str
    token_frames: int
    bytes: int


def main(argv=None) -> None:
    """The CLI: parse, export, print one result line."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        done = export(args.out_dir, args.videos, model=args.model, frames=args.frames,
                      layer=args.layer, device=args.device, examples=not args.no_examples)
    except (ValueError, RuntimeError) as err:
        sys.exit(f"sttm-studio export: {err}")
    total = sum(v.bytes for v in done)
    print(f"wrote {args.out_dir}: {len(done)} videos, {total / 1e6:.1f} MB of video data; "
          f"serve it with any static file server, e.g. python -m http.server -d {args.out_dir}")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="sttm-studio export",
                                     description="Write the lab as a static site (no server).")
    parser.add_argument("out_dir", type=Path, help="folder to write (created if missing)")
    parser.add_argument("videos", nargs="*", type=Path, help="more videos, after the examples")
    parser.add_argument("--model", default=None,
                        help="hub id or local path: merge its layer-k features (default: pixels)")
    parser.add_argument("--device", default=None, help="cuda / cpu, for --model")
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES, help="frames per video")
    parser.add_argument("--layer", type=int, default=DEFAULT_LAYER, help="merge layer k")
    parser.add_argument("--no-examples", action="store_true",
                        help="only the given videos, not the 8 bundled examples")
    return parser.parse_args(argv)


def export(out_dir, videos=(), *, model: str | None = None, frames: int = DEFAULT_FRAMES,
           layer: int = DEFAULT_LAYER, device: str | None = None, examples: bool = True,
           only: list[str] | None = None) -> list[Exported]:
    """Write the static lab to out_dir; `only`: these bundled examples (by name), not all."""
    engine = _engine(model, device)
    out = Path(out_dir)
    sources = _sources(engine, videos, examples, only)
    if not sources:
        raise ValueError("nothing to export: no examples and no videos given")
    try:
        done = [_export_video(engine, name, title, path, frames, layer, out / "videos" / name)
                for name, title, path in sources]
    finally:
        engine.background.shutdown(wait=False, cancel_futures=True)
    _write_site(out, engine, done, frames)
    log.info("exported %d videos to %s", len(done), out)
    return done


def _engine(model: str | None, device: str | None):
    """The Engine every exported video's Session shares: a model, or none (pixels)."""
    from .session import Engine

    if model is None:
        return Engine(None, "this static lab has no server and no model.")
    from sttm_core import ModelLoadError, UnsupportedModelError, load_model

    try:
        return Engine(load_model(model, device=device))
    except (ModelLoadError, UnsupportedModelError) as err:
        raise RuntimeError(str(err).splitlines()[0]) from err


def _sources(engine, videos, examples: bool, only) -> list[tuple[str, str, Path]]:
    """(folder name, title, path) of each video: the bundled examples first, then the given."""
    from . import guide

    out, names = [], set()
    if examples:
        for e in guide.EXAMPLES:
            path = engine.examples_dir / f"{e.name}.mp4"
            if path.exists() and (only is None or e.name in only):
                out.append((e.name, e.title, path))
                names.add(e.name)
    for path in map(Path, videos):
        if not path.is_file():
            raise ValueError(f"no such video: {path}")
        name, k = _slug(path.stem), 2
        while name in names:
            name, k = f"{_slug(path.stem)}-{k}", k + 1
        names.add(name)
        out.append((name, path.name, path))
    return out


def _slug(stem: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_") or "video"


def _export_video(engine, name: str, title: str, path: Path, frames: int, layer: int,
                  folder: Path) -> Exported:
    """One video: features as the app computes them -> payload.json, frames, tables.json."""
    from . import handlers
    from .session import Controls, Session, UserError

    session = Session(engine)
    k = min(layer, max(engine.num_layers - 1, 0))
    try:
        video = session.load(str(path), frames, Controls(merge_layer=k))
    except UserError as err:
        raise ValueError(f"{path.name}: {err}") from err
    payload = handlers.page_payload(session, video)  # the app's own payload of this video
    folder.mkdir(parents=True, exist_ok=True)
    payload["id"] = name
    payload["frames"] = _write_frames(payload["frames"], folder, f"videos/{name}")
    _write_json(folder / "payload.json", payload)
    _write_json(folder / "tables.json", {"video": name, "tables": _tables(session), "tokens": None})
    for method in EXPORTED_BASELINES:
        _write_json(folder / f"{method}.json", {"video": name, **_served(session, method)})
    size = sum(f.stat().st_size for f in folder.iterdir())
    log.info("%s: %d token frames, %.0f kB", name, len(video.frames), size / 1e3)
    return Exported(name, title, len(video.frames), size)


def _write_frames(urls: list[str], folder: Path, prefix: str) -> list[str]:
    """JPEG data URLs (payload.frames_json) -> files; returns their paths from index.html."""
    paths = []
    for t, url in enumerate(urls):
        head, data = url.split(",", 1)
        assert head == "data:image/jpeg;base64", head
        (folder / f"frame_{t:03d}.jpg").write_bytes(base64.b64decode(data))
        paths.append(f"{prefix}/frame_{t:03d}.jpg")
    return paths


def _tables(session) -> list[dict]:
    """Budget tables of every root level, temporal merging on and off (session.budget_table,
    as handlers.sync asks for them): every budget-mode setting the page can reach."""
    levels = session.video.merger.num_levels
    with _torch_threads(1):  # the search is many small ops: one thread is faster (and polite)
        return [session.budget_table(root, temporal)
                for root in range(levels) for temporal in (True, False)]


def _served(session, method: str) -> dict:
    """A baseline's tokens at every budget of the slider (session.reduce, as handlers.sync
    sends them), each distinct token set once (uniform pooling: a few dozen grids, not 96)."""
    from .payload import BUDGETS, tokens_json
    from .session import Controls

    sets, index, seen = [], [], {}
    for budget in BUDGETS:
        tokens = tokens_json(session.reduce(Controls(method, parse(method, budget=budget))))
        key = json.dumps(tokens)
        if key not in seen:
            seen[key] = len(sets)
            sets.append(tokens)
        index.append(seen[key])
    return {"budgets": BUDGETS, "set": index, "sets": sets}


@contextmanager
def _torch_threads(n: int):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, separators=(",", ":")), encoding="utf-8")


# --- the page -----------------------------------------------------------------------------------

def _write_site(out: Path, engine, done: list[Exported], frames: int) -> None:
    """index.html (the template with the page's words as JSON), the scripts, the README."""
    from .ui import WEB_FILES

    web = resources.files("sttm_viz") / "web"
    (out / "web").mkdir(parents=True, exist_ok=True)
    for name in [*WEB_FILES, *STATIC_FILES, "lab.css"]:
        with resources.as_file(web / name) as src:
            shutil.copyfile(src, out / "web" / name)
    config = page_config(engine, done, frames)
    text = json.dumps(config, ensure_ascii=False).replace("</", "<\\/")
    template = (web / "static.html").read_text(encoding="utf-8")
    scripts = "\n".join(f'<script type="module" src="web/{name}"></script>' for name in STATIC_FILES)
    page = (template.replace("__TITLE__", html.escape(f"{config['title']} — static lab"))
            .replace("__CONFIG__", text).replace("__SCRIPTS__", scripts))
    (out / "index.html").write_text(page, encoding="utf-8")
    (out / "README.md").write_text(space_readme(config), encoding="utf-8")


def page_config(engine, done: list[Exported], frames: int) -> dict:
    """Everything the static page shows in words, from Python (guide, the method menu)."""
    from . import guide
    from .protocol import page_protocol

    why = ("this is a static export (no server): run `sttm-studio` with a model for it"
           if not engine.has_model else
           "this is a static export of the model's features: the model itself is not here; "
           "run `sttm-studio` for it")
    return {
        "protocol": page_protocol(engine.presets),
        "title": guide.TITLE, "tagline": markdown_inline(guide.TAGLINE),
        "preset_note": engine.preset_note,
        "absent_methods": {label: f"{label}: {SERVER_ONLY[name]}; not in this static lab"
                           for label, name in METHOD_MENU.items() if name in SERVER_ONLY},
        "videos": [{"name": v.name, "title": v.title, "payload": f"videos/{v.name}/payload.json",
                    "tables": f"videos/{v.name}/tables.json",
                    "served": {m: f"videos/{v.name}/{m}.json" for m in EXPORTED_BASELINES}}
                   for v in done],
        "model_panels": {name: f"{name} needs a model — {why}."
                         for name in ("Chat", "Time to first token", "QA accuracy")},
        "fixed": f"{frames} frames per video and the features were fixed when this lab was "
                 "exported (`sttm-studio export`); your own video: export it the same way.",
    }


def markdown_inline(text: str) -> str:
    """**bold** and *italic* of the guide's texts as HTML (escaped otherwise)."""
    text = html.escape(text, quote=False)
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
    return re.sub(r"\*(.+?)\*", r"<i>\1</i>", text)


def space_readme(config: dict) -> str:
    """A Hugging Face static Space's README: front matter, then what this is."""
    names = ", ".join(v["title"] for v in config["videos"])
    return f"""---
title: STTM Studio static lab
emoji: 🧩
colorFrom: blue
colorTo: gray
sdk: static
app_file: index.html
pinned: false
short_description: See STTM token merging on videos, in the browser
---

# {config['title']} — a static lab

Made by `sttm-studio export`. The page re-merges each video's tokens in the browser from its
merge evidence (every similarity τS and τT test); no server computes anything. Videos: {names}.

Works here: the token map, player, inspector, histograms, chains, all frames, presets, and the
token-budget mode and the baselines (τS and τT for every budget, and the uniform pooling's
tokens, were computed when this site was exported). Absent: chat, time to first token and QA
scoring (they need a model) and FastV (it needs a model and a question).

Publish: create a Space with the static SDK and push this folder's files to it (this
README's front matter is what the Space reads), or serve the folder with any static file server.
"""


if __name__ == "__main__":
    main()
