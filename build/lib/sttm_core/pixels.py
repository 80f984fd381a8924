"""Per-patch pixel features: a model-free stand-in for a video LLM's layer-k features.

With no model at hand (offline, no weights) the app and the sweeps still merge something
real: each patch becomes its downsampled pixels, centred on the video's mean patch so that
cosine similarity tells colours and textures apart (raw pixels are all positive and would
all look alike).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


GRID = (14, 14)  # LLaVA-OneVision's tokens per frame: what the app and the sweeps use


def pixel_patch_features(frames: np.ndarray, grid: tuple[int, int] = GRID,
                         patch_pixels: int = 4) -> Tensor:
    """frames [T, H_img, W_img, 3] uint8 -> features [T, H, W, 3 * p * p] fp32 for a patch grid
    (H, W) = grid, each patch resized to p x p pixels (p = patch_pixels)."""
    H, W = grid
    if H < 1 or W < 1:
        raise ValueError(f"grid must be at least 1x1 patches, got {grid}")
    p = patch_pixels
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255
    x = F.interpolate(x, size=(H * p, W * p), mode="area")   # [T, 3, H*p, W*p]
    T = x.shape[0]
    patches = x.view(T, 3, H, p, W, p).permute(0, 2, 4, 1, 3, 5).reshape(T, H, W, 3 * p * p)
    return patches - patches.mean(dim=(0, 1, 2), keepdim=True)
