"""Synthetic feature videos with the structure real ones have: smooth in space, drifting in time."""
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
