"""How fast the app answers a slider move: re-merge the cached features + redraw every view.

    python benchmarks/app_remerge.py                 # 32 frames, 14x14 patches, C=896 and pixels
    python benchmarks/app_remerge.py --frames 64 --json

A slider move in the app runs `Session.merge` (a re-merge of the cached layer-k features, no
model call) and `sttm_viz.ui.views` (the readout, the token map, the frame grid, the chains
plot and the per-frame plot).
This times exactly that, on a bundled example video, for the model-free pixel features and for
synthetic features as wide as llava-onevision-qwen2-0.5b's hidden states (C=896).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

from merge import synthetic_features  # benchmarks/merge.py, beside this script
from sttm_core import VideoTokenMerger
from sttm_core.examples import examples_dir
from sttm_viz.session import Engine, Session, Settings
from sttm_viz.ui import views

MOVES = [Settings(spatial_threshold=s, temporal_threshold=t) for s, t in
         [(0.8, 0.6), (0.7, 0.5), (0.9, 0.7), (0.6, 0.4)]] + [
         Settings(use_budget=True, keep_ratio=r) for r in (0.5, 0.3, 0.15)]


def time_moves(session: Session) -> dict:
    merge_s, draw_s = [], []
    for settings in MOVES:
        start = time.perf_counter()
        session.apply(settings)
        merged = time.perf_counter()
        views(session, 0, "granularity")  # exactly what the app redraws
        merge_s.append(merged - start)
        draw_s.append(time.perf_counter() - merged)
    total = [m + d for m, d in zip(merge_s, draw_s)]
    return dict(merge_ms=round(1000 * statistics.median(merge_s), 1),
                draw_ms=round(1000 * statistics.median(draw_s), 1),
                total_ms=round(1000 * statistics.median(total), 1),
                worst_total_ms=round(1000 * max(total), 1))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--video", default=str(examples_dir() / "static.mp4"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    session = Session(Engine(None, "benchmark", max_frames=args.frames))
    session.load(args.video, args.frames, Settings())
    rows = {"pixel features (C=48)": time_moves(session)}
    session.merger = VideoTokenMerger(synthetic_features(args.frames, 14, 14, 896, 1.5))
    rows["hidden-state-like (C=896)"] = time_moves(session)
    if args.json:
        print(json.dumps(dict(frames=args.frames, grid="14x14", rows=rows), indent=1))
        return
    print(f"{args.frames} frames x 14x14 patches; median over {len(MOVES)} slider moves")
    print(f"{'features':28} {'re-merge ms':>12} {'redraw ms':>10} {'total ms':>9} {'worst ms':>9}")
    for name, r in rows.items():
        print(f"{name:28} {r['merge_ms']:12.1f} {r['draw_ms']:10.1f} {r['total_ms']:9.1f} "
              f"{r['worst_total_ms']:9.1f}")


if __name__ == "__main__":
    main()
