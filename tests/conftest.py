import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import settings

# Property tests draw the same examples on every run, so CI never fails by chance;
# HYPOTHESIS_PROFILE=explore searches afresh with 10x the examples.
settings.register_profile("deterministic", derandomize=True, deadline=None)
settings.register_profile("explore", max_examples=600, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/ helpers: reference, videos

# Tiny models run in milliseconds; a second intra-op thread only adds scheduling noise here.
torch.set_num_threads(1)

TINY = ["tiny-llava-onevision", "tiny-qwen2-vl", "tiny-qwen2.5-vl"]


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory):
    """Random-weight checkpoints of each family, saved once and loaded via from_pretrained."""
    from sttm_core.models.checkpoints import build_random_checkpoint

    root = tmp_path_factory.mktemp("checkpoints")
    return {name: build_random_checkpoint(name, root / name) for name in TINY}


@pytest.fixture(params=TINY)
def tiny(request, tiny_checkpoints):
    """A freshly loaded tiny model of one family (sdpa attention)."""
    from sttm_core.models.checkpoints import load_model

    return load_model(str(tiny_checkpoints[request.param]), device="cpu")


def random_frames(T=8, H=84, W=140, seed=0):
    """[T, H, W, 3] uint8 frames: smooth colour blobs that drift, so merging has something to do."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:H, 0:W] / max(H, W)
    frames = []
    for t in range(T):
        phase = rng.normal(size=3) * 0.2 + t * 0.05
        frame = np.stack([np.sin(4 * x + phase[c]) * np.cos(3 * y - phase[c]) for c in range(3)], -1)
        frames.append(((frame + 1) * 127.5).astype(np.uint8))
    return np.stack(frames)
