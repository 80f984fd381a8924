"""Golden outputs of the official STTM code, so parity with it can be rerun without that code.

    python tests/support/make_official_golden.py --official /path/to/STTM   # github HYUNJS/STTM

Imports the official merge, `quadtree_build_video` (token_merging_utils/quadtree_builder.py;
needs einops), from the checkout at run time (nothing of it is copied here: the script runs
itself again with the checkout on PYTHONPATH) and runs it on
  merge cases  GRIDS x 1 and 6 frames x 3 seeds x every root level x tauS in SPATIAL (1.01 =
               off) x tauT in TEMPORAL (None = off; it takes -1.0 for that, any value <= 0 is
               off there); 1 frame: tauT 0.6 and off only. Plus head_dim=4 and area weighting
               (its weighted_avg=True) at two threshold pairs; where its weighted pooling
               fails (a level with exactly one odd side) the case is counted, not stored.
  model cases  the layer-k hidden states of tiny random LLaVA-OneVision and Qwen2-VL models
               (support/golden.py: MODEL_CASES, prefill), cut out of the sequence
               and laid out "(T H W) C -> T C H W" as its LLM patches do before that call.
               The whole layer-k input is stored with it: the tiny models' random weights
               depend on the torch build (torch 2.13's nn.init.trunc_normal_ draws other
               numbers than 2.11's: SigLIP's patch embedding), so the test feeds the stored
               input to layer k instead of trusting the model to recompute it.
It writes tests/data/official_golden.pt.xz and official_golden_models.pt.xz (checked by
tests/test_official_golden.py and tests/test_official_golden_models.py) and prints a table,
with whether merge_video_tokens gives the same tokens (boxes, num_patches, features to 1e-5).
About 12 minutes on 2 CPU cores, most of it the official all-pairs search on 6 x 36 x 64;
--models-only rewrites only the model file (under a minute).

Features are not stored: golden_features (support/golden.py) draws integers scaled
by powers of two, so the test rebuilds the same bits anywhere; a sha256 per video checks that.

File format: xz-compressed torch.save of a dict (torch.load(..., weights_only=True) reads it).
official_golden.pt.xz:
  official     {"repo", "commit", "function"}
  channels     C of every video
  videos       [{"T", "H", "W", "seed", "noise", "sha256"}], sha256 of the fp32 features' bytes
  cases        [{"video", "root_level", "spatial_threshold", "temporal_threshold" (None: off),
                 "head_dim" (None: off), "area_weighted", "output"}]
  offsets      [m + 1] int64: output j is rows offsets[j]:offsets[j+1] below; cases with the
               same official output share it
  boxes        [M, 5] int16 (t, y0, x0, y1, x1) as the official code returns them
  num_patches  [M] int32
  features     [M, C] float32
official_golden_models.pt.xz:
  official; torch: the torch version that computed the hidden states; models {"<name>@<k>":
  {"start": first video token, "grid": (T, H, W),
   "hidden": [L, D] fp32 layer k's whole input; rows start:start+T*H*W are what the official
             merge got,
   "positions": [P, L] int64 the position ids layer k got (Qwen2-VL: (t, h, w), P = 3;
             LLaVA: 0..L-1, P = 1),
   "cases": {(name, k, tauS, tauT, root_level): {"boxes", "num_patches", "features" (the
             official merge's output), "positions": [P, L'] the merged sequence's ids by the
             official patches' rule (support/golden.py: official_positions)}}}}
"""
from __future__ import annotations

import argparse
import hashlib
import io
import lzma
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
from golden import (DATA, MODEL_CASES, golden_features, layer_positions,  # support/golden.py
                    official_positions, prefill, sha256)

from sttm_core import STTMConfig, merge_video_tokens, pyramid_sizes

GRIDS = [(14, 14), (13, 13), (27, 27), (12, 20), (36, 64), (16, 9), (8, 14), (7, 5), (3, 3),
         (2, 5)]  # square, odd, non-square; 16x9 and 8x14 have levels with one odd side
FRAMES = (1, 6)
NOISE = {0: 0.5, 1: 1.0, 2: 2.0}  # seed -> patch noise: from much merging to little
CHANNELS = 8
SPATIAL = (1.01, 0.95, 0.8, 0.5, -1.0)  # 1.01: off; -1: every root node stays whole
TEMPORAL = (0.9, 0.6, 0.3, 0.05, None)  # None: off
OPTIONS = ({"head_dim": 4}, {"area_weighted": True})  # each at these two threshold pairs:
OPTION_THRESHOLDS = ((0.8, 0.6), (0.5, 0.3))


def official_merge():
    """quadtree_build_video of the checkout on PYTHONPATH, as run(x [T, H, W, C], case) ->
    (features [N, C], num_patches [N], boxes [N, 5])."""
    from token_merging_utils.quadtree_builder import quadtree_build_video

    def run(x, case):  # its layout is [T, C, H, W]; a clone, as it may divide in place
        tau_t = case["temporal_threshold"]
        return quadtree_build_video(
            x.clone().permute(0, 3, 1, 2), case["spatial_threshold"],
            -1.0 if tau_t is None else tau_t, root_level=case["root_level"],
            weighted_avg=case["area_weighted"], head_dim=case["head_dim"])
    return run


def merge_cases(T: int, H: int, W: int):
    for root in range(len(pyramid_sizes(H, W))):
        base = dict(root_level=root, head_dim=None, area_weighted=False)
        for tau_s in SPATIAL:
            for tau_t in TEMPORAL if T > 1 else (0.6, None):
                yield dict(base, spatial_threshold=tau_s, temporal_threshold=tau_t)
        for tau_s, tau_t in OPTION_THRESHOLDS:
            for option in OPTIONS:
                yield dict(base, spatial_threshold=tau_s, temporal_threshold=tau_t, **option)


def ours_same(x, case, features, num_patches, boxes, errors: dict,
              temporal_mode: str = "official") -> bool:
    """Does merge_video_tokens give the official tokens? Its errors are counted in `errors`."""
    try:
        result = merge_video_tokens(x, case["spatial_threshold"], case["temporal_threshold"],
                                    case["root_level"], temporal_mode=temporal_mode,
                                    head_dim=case["head_dim"],
                                    area_weighted=case["area_weighted"])
    except Exception as err:  # reported in the summary, not hidden
        message = f"merge_video_tokens: {type(err).__name__}: {str(err).splitlines()[0]}"
        errors[message] = errors.get(message, 0) + 1
        return False
    return (torch.equal(result.boxes, boxes.long())
            and torch.equal(result.num_patches, num_patches.long())
            and torch.allclose(result.features, features, rtol=0, atol=1e-5))


def golden_merges(run) -> tuple[dict, list[dict], dict]:
    """Run every merge case; returns (golden dict, one summary row per grid and frame count,
    errors raised: "who: message" -> count)."""
    videos, cases, outputs, seen, rows, errors = [], [], [], {}, [], {}
    for (H, W) in GRIDS:
        for T in FRAMES:
            row = dict(grid=f"{H}x{W}", T=T, levels=len(pyramid_sizes(H, W)), cases=0,
                       failed=0, same=0, keep=[], temporal=0, components_differ=0,
                       start=time.perf_counter())
            for seed, noise in NOISE.items():
                x = golden_features(T, H, W, CHANNELS, seed, noise)
                videos.append(dict(T=T, H=H, W=W, seed=seed, noise=noise, sha256=sha256(x)))
                for case in merge_cases(T, H, W):
                    try:
                        features, num_patches, boxes = run(x, case)
                    except RuntimeError as err:  # e.g. weighted pooling, one odd side
                        message = f"official: {str(err).splitlines()[0]}"
                        errors[message] = errors.get(message, 0) + 1
                        row["failed"] += 1
                        continue
                    key = hashlib.sha1(b"".join(
                        t.numpy().tobytes() for t in (features, num_patches, boxes))).digest()
                    if key not in seen:
                        seen[key] = len(outputs)
                        outputs.append((features, num_patches, boxes))
                    cases.append(dict(case, video=len(videos) - 1, output=seen[key]))
                    row["same"] += ours_same(x, case, features, num_patches, boxes, errors)
                    row["cases"] += 1
                    if T > 1 and case["temporal_threshold"] is not None:  # does the official
                        row["temporal"] += 1  # union-find's early stop change the tokens?
                        row["components_differ"] += not ours_same(
                            x, case, features, num_patches, boxes, {}, "components")
                    row["keep"].append(len(features) / (T * H * W))
            row["seconds"] = time.perf_counter() - row.pop("start")
            rows.append(row)
            print(f"  {row['grid']:>6} T={T}: {row['cases']} cases, {row['seconds']:.0f} s",
                  file=sys.stderr)
    sizes = torch.tensor([0] + [len(f) for f, _, _ in outputs])
    golden = dict(channels=CHANNELS, videos=videos, cases=cases, offsets=sizes.cumsum(0),
                  boxes=torch.cat([b for _, _, b in outputs]).to(torch.int16),
                  num_patches=torch.cat([n for _, n, _ in outputs]).to(torch.int32),
                  features=torch.cat([f for f, _, _ in outputs]).float())
    return golden, rows, errors


def golden_models(run) -> tuple[dict, list[dict]]:
    """The official merge on each model's layer-k video hidden states, laid out as its LLM
    patches lay them out: hidden[:, start:start + T*H*W] -> "(T H W) C -> T C H W"; stored
    with layer k's whole input and the merged sequence's positions by its rule."""
    import einops

    models, rows = {}, []
    for name, k, tau_s, tau_t, root in MODEL_CASES:
        key = f"{name}@{k}"
        if key not in models:
            model, hidden, _ = prefill(name, STTMConfig.all_tokens(merge_layer=k))
            span = model.sttm.prefill.spans[0]
            T, H, W = span.grid
            models[key] = dict(start=span.start, grid=(T, H, W), cases={},
                               hidden=hidden.clone(), positions=layer_positions(model, len(hidden)),
                               keep=model.sttm.adapter.position_mode == "keep")
        entry = models[key]
        (T, H, W), start = entry["grid"], entry["start"]
        video = einops.rearrange(entry["hidden"][start:start + T * H * W], "(T H W) C -> T C H W",
                                 T=T, H=H)
        case = dict(spatial_threshold=tau_s, temporal_threshold=tau_t, root_level=root,
                    head_dim=None, area_weighted=False)
        features, num_patches, boxes = run(video.permute(0, 2, 3, 1), case)
        entry["cases"][(name, k, tau_s, tau_t, root)] = dict(
            boxes=boxes.to(torch.int16), num_patches=num_patches.to(torch.int32),
            features=features.float(), positions=official_positions(
                entry["positions"], start, (T, H, W), boxes, entry["keep"]))
        same = ours_same(video.permute(0, 2, 3, 1), case, features, num_patches, boxes, {})
        rows.append(dict(case=f"{name} k={k} tauS={tau_s} tauT={tau_t} root={root}",
                         grid=f"{T}x{H}x{W}", keep=len(features) / (T * H * W), same=same))
    for entry in models.values():
        del entry["keep"]  # in the positions already
    return dict(torch=str(torch.__version__), models=models), rows


def save(data: dict, path: Path) -> int:
    buffer = io.BytesIO()
    torch.save(data, buffer)
    path.write_bytes(lzma.compress(buffer.getvalue(), preset=9 | lzma.PRESET_EXTREME))
    return path.stat().st_size


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", metavar="PATH", required=True, type=Path,
                        help="checkout of github HYUNJS/STTM")
    parser.add_argument("--out", type=Path, default=DATA, help="folder for the golden files")
    parser.add_argument("--models-only", action="store_true",
                        help="rewrite only official_golden_models.pt.xz (the model cases)")
    args = parser.parse_args()
    path = args.official.expanduser().resolve()
    if os.environ.get("STTM_OFFICIAL") != str(path):  # again, with the checkout importable
        env = dict(os.environ, STTM_OFFICIAL=str(path), PYTHONPATH=os.pathsep.join(
            filter(None, [str(path), os.environ.get("PYTHONPATH")])))
        sys.exit(subprocess.run([sys.executable, __file__, *sys.argv[1:]], env=env).returncode)
    commit = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "unknown"
    official = dict(repo="github.com/HYUNJS/STTM", commit=commit,
                    function="token_merging_utils.quadtree_builder.quadtree_build_video")
    torch.set_num_threads(1)  # as the tests run (tests/conftest.py)
    run = official_merge()
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.models_only:
        report_merges(run, official, args.out)
    models, rows = golden_models(run)
    size = save(dict(official=official, **models), args.out / "official_golden_models.pt.xz")
    print(f"{'model case':<56} {'T x H x W':>9} {'keep':>5} same tokens")
    for r in rows:
        print(f"{r['case']:<56} {r['grid']:>9} {r['keep']:5.3f} {r['same']}")
    print(f"\n{len(rows)} model cases (torch {torch.__version__}); {size / 1e6:.2f} MB")


def report_merges(run, official: dict, out: Path) -> None:
    """Write official_golden.pt.xz and print its table."""
    golden, rows, errors = golden_merges(run)
    size = save(dict(official=official, **golden), out / "official_golden.pt.xz")
    print(f"official {official['commit'][:12]}: merge cases, {CHANNELS} channels, "
          "3 seeds per grid\n")
    print(f"{'grid':>6} {'T':>2} {'levels':>6} {'cases':>6} {'failed':>6} {'keep min-max':>12} "
          f"{'same tokens':>11}")
    for r in rows:
        print(f"{r['grid']:>6} {r['T']:>2} {r['levels']:>6} {r['cases']:>6} {r['failed']:>6} "
              f"{min(r['keep']):5.3f}-{max(r['keep']):5.3f} {r['same']:>5} / {r['cases']}")
    total, same = sum(r["cases"] for r in rows), sum(r["same"] for r in rows)
    print(f"\n{total} cases ({sum(r['failed'] for r in rows)} the official code failed on), "
          f"{len(golden['offsets']) - 1} distinct outputs, {len(golden['boxes'])} tokens; "
          f"merge_video_tokens same on {same} / {total}; {size / 1e6:.2f} MB")
    print(f"temporal_mode='components' gives other tokens on "
          f"{sum(r['components_differ'] for r in rows)} of the {sum(r['temporal'] for r in rows)}"
          " cases with temporal merging")
    for message, count in errors.items():
        print(f"raised on {count} cases: {message}")
    print()


if __name__ == "__main__":
    main()
