"""Token reductions that are not STTM, to compare it with at the same budget.

Each returns a MergeResult, so the runtime, the app and the sweeps treat them like STTM
(sttm_core.methods lists every reduction):
  uniform_pooling    every frame average-pooled to one coarser grid (the paper's pooling
                     baseline), sized to the budget
  drop_by_attention  FastV's selection: keep the patches the last prompt token attends to
                     most, drop the rest (token_map == -1 where dropped)
Shape legend: T frames, H x W patch grid, C channels, N kept tokens.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .merge import OFF, MergeResult


def uniform_pooling(features: Tensor, keep_ratio: float) -> MergeResult:
    """Average-pool every frame to one coarser grid h x w near keep_ratio (the paper's pooling
    baseline): h*w / (H*W) close to the budget, the aspect ratio kept (a point of budget
    weighs as much as a tenth of aspect). Rows (columns) are split into h (w) contiguous bins
    of near-equal size, so the pooled tokens tile each frame. features [T, H, W, C]."""
    T, H, W, C = features.shape
    h, w = min(((h, w) for h in range(1, H + 1) for w in range(1, W + 1)),
               key=lambda s: abs(s[0] * s[1] / (H * W) - keep_ratio) + 0.1 * abs(s[0] / H - s[1] / W))
    device = features.device
    row_bin = torch.arange(H, device=device) * h // H  # [H] pooled row of each patch row
    col_bin = torch.arange(W, device=device) * w // W  # [W]
    t = torch.arange(T, device=device)[:, None, None]
    token_map = (t * h + row_bin[None, :, None]) * w + col_bin[None, None, :]  # [T, H, W]
    flat = token_map.flatten()
    sums = torch.zeros(T * h * w, C, device=device).index_add_(
        0, flat, features.reshape(-1, C).float())
    counts = torch.bincount(flat, minlength=T * h * w)
    y0, y1 = _bin_edges(row_bin, h)
    x0, x1 = _bin_edges(col_bin, w)
    i, j = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device),
                          indexing="ij")
    boxes = torch.stack([t.expand(T, h, w), y0[i].expand(T, h, w), x0[j].expand(T, h, w),
                         y1[i].expand(T, h, w), x1[j].expand(T, h, w)], dim=-1).reshape(-1, 5)
    return MergeResult(
        features=(sums / counts[:, None]).to(features.dtype), boxes=boxes, num_patches=counts,
        token_map=token_map, spatial_boxes=boxes,
        spatial_to_token=torch.arange(T * h * w, device=device), spatial_threshold=OFF,
        temporal_threshold=OFF, root_level=None, temporal_mode=None, method="uniform")


def _bin_edges(bins: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """First and one-past-last patch index of each of n contiguous bins. bins: [L] sorted."""
    starts = torch.searchsorted(bins, torch.arange(n, device=bins.device))
    ends = torch.cat([starts[1:], starts.new_tensor([len(bins)])])
    return starts, ends


def drop_by_attention(features: Tensor, attention: Tensor, keep_ratio: float, *,
                      keep_every_frame: bool = False) -> MergeResult:
    """FastV's selection. features [T, H, W, C], attention [T, H, W] (what each patch receives
    from the last prompt token). Keeps the top round(keep_ratio * T*H*W) patches in order.
    keep_every_frame: each frame's most attended patch is kept whatever its rank (at least T
    patches), the rest of the budget goes by rank (models with a timestamp before each frame)."""
    T, H, W, C = features.shape
    keep = max(1, round(keep_ratio * T * H * W))
    scores = attention.flatten()
    if keep_every_frame:
        keep = max(keep, T)
        best = attention.reshape(T, -1).argmax(1) + torch.arange(T, device=scores.device) * H * W
        scores = scores.float().index_fill(0, best, torch.inf)
    kept = scores.topk(keep).indices.sort().values  # [N] raster order
    token_map = torch.full((T * H * W,), -1, dtype=torch.long, device=features.device)
    token_map[kept] = torch.arange(keep, device=features.device)
    t, rest = kept // (H * W), kept % (H * W)
    y, x = rest // W, rest % W
    boxes = torch.stack([t, y, x, y + 1, x + 1], dim=1)
    return MergeResult(
        features=features.reshape(-1, C)[kept], boxes=boxes,
        num_patches=torch.ones(keep, dtype=torch.long, device=features.device),
        token_map=token_map.view(T, H, W), spatial_boxes=boxes,
        spatial_to_token=torch.arange(keep, device=features.device),
        spatial_threshold=OFF, temporal_threshold=OFF, root_level=None, temporal_mode=None,
        method="fastv")
