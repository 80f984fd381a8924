"""Merge time and peak memory of merge_video_tokens; optionally side by side with the official code.

    python benchmarks/merge.py                       # CPU, and CUDA when present
    python benchmarks/merge.py --official ~/STTM     # also time a checkout of github HYUNJS/STTM
    python benchmarks/merge.py --json

Features are synthetic but shaped like real ones (smooth in space, drifting in time; the noise
level sets how much merges), at the paper's thresholds tauS=0.8, tauT=0.6, root_level=1.
Each case runs in a fresh subprocess so peak memory (CUDA: max allocated; CPU: resident-set
high-water mark) is that case's alone, reported above the input features themselves.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from sttm_core import merge_video_tokens

SHAPES = [(128, 14, 14, 3584), (16, 36, 64, 1024)]  # (T, H, W, C)
NOISE = {"smooth": 1.0, "typical": 1.5, "noisy": 2.5}  # patch noise: sets how much merges
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def synthetic_features(T, H, W, C, noise, seed=0, dtype=torch.float32):
    """[T, H, W, C]: smooth fields at 1/8, 1/4 and 1/2 of the grid (objects and parts), each
    drifting over time, plus per-patch noise; `noise` sets how much merges. Written frame by
    frame into one tensor, so building it adds little to the memory high-water mark."""
    g = torch.Generator().manual_seed(seed)
    scales = [(max(2, H // k), max(2, W // k)) for k in (8, 4, 2)]
    fields = [torch.randn(1, C, h, w, generator=g) for h, w in scales]
    video = torch.empty(T, H, W, C, dtype=dtype)
    for t in range(T):
        fields = [f + 0.3 * torch.randn(f.shape, generator=g) for f in fields]
        frame = sum(F.interpolate(f, (H, W), mode="bilinear", align_corners=False) for f in fields)
        frame = frame + noise * torch.randn(1, C, H, W, generator=g)
        video[t] = frame[0].permute(1, 2, 0)
    return video


def official_merge():
    """The official quadtree_build_video from a local checkout (never vendored here): the
    parent process puts the checkout on this process's PYTHONPATH."""
    from token_merging_utils.quadtree_builder import quadtree_build_video

    def run(x):  # its layout is [T, C, H, W]
        return quadtree_build_video(x.permute(0, 3, 1, 2), 0.8, 0.6, root_level=1)
    return run


def measure_one(shape, noise, dtype, device, impl, repeats, mode="official",
                official_path=None):
    x = synthetic_features(*shape, NOISE[noise], dtype=DTYPES[dtype]).to(device)
    run = official_merge() if impl == "official" else (
        lambda f: merge_video_tokens(f, 0.8, 0.6, 1, temporal_mode=mode))
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out = run(x)
    sync()
    peak = (torch.cuda.max_memory_allocated() if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) - base
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(x)
        sync()
        times.append(time.perf_counter() - start)
    tokens = out.num_tokens if impl == "ours" else out[0].shape[0]
    return dict(T=shape[0], H=shape[1], W=shape[2], C=shape[3], features=noise, dtype=dtype,
                device=device, impl=impl, keep_ratio=round(tokens / x[..., 0].numel(), 4),
                ms=round(1000 * statistics.median(times), 2), peak_mb=round(peak / 2**20, 1))


def run_case(case: dict, official_path):
    """One case in a fresh interpreter, so its peak memory is its own."""
    cmd = [sys.executable, __file__, "--one", json.dumps(case)]
    env = dict(os.environ)
    if official_path:
        checkout = str(Path(official_path).expanduser().resolve())
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [checkout, env.get("PYTHONPATH")]))
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode:
        return dict(case, error=done.stderr.strip().splitlines()[-1])
    return json.loads(done.stdout)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda", "all"], default="all")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--official", metavar="PATH", help="checkout of github HYUNJS/STTM to compare")
    parser.add_argument("--temporal-mode", default="official",
                        choices=["official", "components", "best_match"],
                        help="temporal grouping of merge_video_tokens (ours)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        case = json.loads(args.one)
        print(json.dumps(measure_one(official_path=args.official, **case)))
        return
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [d for d in devices if d == "cpu" or torch.cuda.is_available()]
    impls = ["ours", "official"] if args.official else ["ours"]
    rows = [run_case(dict(shape=list(shape), noise=noise, dtype=dtype, device=device, impl=impl,
                          repeats=args.repeats, mode=args.temporal_mode), args.official)
            for device in devices for shape in SHAPES for noise in NOISE for dtype in DTYPES
            for impl in impls]
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    header = f"{'device':6} {'T x H x W x C':>18} {'features':8} {'dtype':5} {'impl':8} " \
             f"{'keep':>6} {'ms':>9} {'peak MB':>8}"
    print(header)
    print("-" * len(header))
    for r in rows:
        shape = f"{r['T']}x{r['H']}x{r['W']}x{r['C']}" if "T" in r else "x".join(map(str, r["shape"]))
        if "error" in r:
            print(f"{r['device']:6} {shape:>18} {r['noise']:8} {r['dtype']:5} {r['impl']:8} "
                  f"error: {r['error']}")
            continue
        print(f"{r['device']:6} {shape:>18} {r['features']:8} {r['dtype']:5} {r['impl']:8} "
              f"{r['keep_ratio']:6.3f} {r['ms']:9.1f} {r['peak_mb']:8.1f}")


if __name__ == "__main__":
    main()
