"""Synthetic videos with the structure real ones have: smooth in space, drifting in time."""
import numpy as np
import torch
import torch.nn.functional as F


def smooth_features(T, H, W, C, seed=0, noise=0.3, drift=0.2, dtype=torch.float32):
    """[T, H, W, C]: a coarse random field upsampled per frame, plus patch noise; each frame's
    field drifts from the last, so similar nodes exist at every scale and across frames."""
    g = torch.Generator().manual_seed(seed)
    field = torch.randn(1, C, 4, 4, generator=g)
    frames = []
    for _ in range(T):
        field = field + drift * torch.randn(1, C, 4, 4, generator=g)
        frame = F.interpolate(field, (H, W), mode="bilinear", align_corners=False)
        frames.append(frame + noise * torch.randn(1, C, H, W, generator=g))
    return torch.cat(frames).permute(0, 2, 3, 1).contiguous().to(dtype)


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
