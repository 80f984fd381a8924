"""A MergeResult from patch-level groups: the form of the paper's baselines (ToMe, DyCoke,
FrameFusion), whose tokens are sets of patches that need not be boxes.

Each patch carries a group id; a group becomes one token whose feature is the plain mean of its
patches (what ToMe's size-weighted averages of averages come to) and whose representative is
its first patch in raster order (earliest frame, then top-left), where the merged sequence puts
it. A group may also be dropped (FrameFusion's pruning): its patches map to -1, as FastV's do.
spatial_boxes are the 1x1 boxes of the kept patches (the groups are not boxes).
Shape legend: T frames, H x W patch grid, C channels, P = T*H*W patches, N tokens.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .merge import OFF, MergeResult


def representatives(group: Tensor) -> Tensor:
    """[P] the first patch (smallest raster index) of each patch's group; group: [P] any ids
    in 0..P-1."""
    P = len(group)
    index = torch.arange(P, device=group.device)
    first = torch.full((P,), P, device=group.device).scatter_reduce_(0, group, index, "amin")
    return first[group]


def follow_parents(parent: Tensor) -> Tensor:
    """[P] root of each patch in a forest of parent pointers (a root points at itself);
    pointer jumping: log(depth) rounds, each one gather."""
    while not torch.equal(parent, parent[parent]):
        parent = parent[parent]
    return parent


def result_from_groups(features: Tensor, group: Tensor, method: str,
                       kept: Tensor | None = None) -> MergeResult:
    """features [T, H, W, C]; group [P] group id of each patch (raster order); kept [P] bool
    over patches, read at each group's representative (None: every group is a token).
    Tokens in the order of their representatives; features in the input dtype (fp32 sums)."""
    T, H, W, C = features.shape
    device = features.device
    label = representatives(group)                                  # [P]
    index = torch.arange(label.numel(), device=device)
    is_token = label == index
    if kept is not None:
        is_token &= kept
    token_of_rep = torch.cumsum(is_token, 0) - 1                     # [P] at representatives
    token_of = torch.where(is_token[label], token_of_rep[label], -1)  # [P] -1: dropped
    n = int(is_token.sum())
    alive = token_of >= 0
    sums = torch.zeros(n, C, device=device).index_add_(
        0, token_of[alive], features.reshape(-1, C)[alive].float())
    counts = torch.bincount(token_of[alive], minlength=n)            # [N]
    spatial_boxes = _unit_boxes(index[alive], H, W)                  # [S, 5] the kept patches
    return MergeResult(
        features=(sums / counts[:, None]).to(features.dtype),
        boxes=_unit_boxes(index[is_token], H, W), num_patches=counts,
        token_map=token_of.view(T, H, W), spatial_boxes=spatial_boxes,
        spatial_to_token=token_of[alive], spatial_threshold=OFF, temporal_threshold=OFF,
        root_level=None, temporal_mode=None, method=method)


def _unit_boxes(patches: Tensor, H: int, W: int) -> Tensor:
    """[n, 5] (t, y, x, y+1, x+1) of raster patch indices [n]."""
    t, rest = patches // (H * W), patches % (H * W)
    y, x = rest // W, rest % W
    return torch.stack([t, y, x, y + 1, x + 1], dim=1)


def budget_count(keep_ratio: float, total: int) -> int:
    """Tokens a keep ratio asks for: round(keep_ratio * total), at least 1."""
    return max(1, round(keep_ratio * total))
