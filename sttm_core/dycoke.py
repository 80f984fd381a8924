"""DyCoke's temporal token merging (Tao et al., "DyCoke: Dynamic Compression of Tokens for Fast
Video Large Language Models", stage 1), at a token budget.

Frames go in groups of 4. Its first pass pairs frames (0, 1), (2, 3); its second compares frame
2 with frame 0. So in each group frame f is compared with frame f & (f - 1) (its index with the
lowest set bit cleared: 1 -> 0, 2 -> 0, 3 -> 2), patch by patch at the same place (cosine,
fp32). A group's first frame stays whole; each later frame keeps its least similar patches and
the others join the token of the patch they were compared with (following it if that one
joined an earlier frame's). DyCoke's code drops those patches; here they are merged (plain
means), so every patch has a token and a merged token sits at its first patch, as STTM's.
The budget: every later frame keeps the same number of patches (the remainder to the earliest),
so the video keeps round(keep_ratio * T*H*W) tokens; below the first frames' share (1/4 of the
video) DyCoke cannot go, and keeps that floor.
Shape legend: T frames, H x W patch grid, C channels, F later frames, P = T*H*W.
"""
from __future__ import annotations

import logging

import torch
from torch import Tensor

from .merge import MergeResult
from .patch_groups import budget_count, follow_parents, result_from_groups
from .quadtree import cosine_to_each

log = logging.getLogger(__name__)

GROUP_FRAMES = 4  # DyCoke: pairs, then quadruples


def compared_frame(T: int, group_frames: int = GROUP_FRAMES, device=None) -> Tensor:
    """[T] the frame each frame is compared with (a group's first frame: itself)."""
    t = torch.arange(T, device=device)
    local = t % group_frames
    return t - local + (local & (local - 1))


def dycoke(features: Tensor, keep_ratio: float, *, group_frames: int = GROUP_FRAMES,
           keep_every_frame: bool = False) -> MergeResult:
    """DyCoke's temporal merging of features [T, H, W, C] to keep_ratio of the patches.
    keep_every_frame: every later frame keeps at least one patch of its own."""
    T, H, W, C = features.shape
    HW = H * W
    ref = compared_frame(T, group_frames, features.device)          # [T]
    later = (ref != torch.arange(T, device=features.device)).nonzero().flatten()  # [F]
    parent = torch.arange(T * HW, device=features.device).view(T, HW)
    if len(later):
        flat = features.reshape(T, HW, C)
        similarity = cosine_to_each(flat[later].reshape(-1, 1, C),
                                    flat[ref[later]].reshape(-1, C))[:, 0].view(-1, HW)  # [F, HW]
        keep = _kept_per_frame(budget_count(keep_ratio, T * HW) - (T - len(later)) * HW,
                               len(later), HW, 1 if keep_every_frame else 0)  # [F]
        rank = similarity.argsort(dim=1, stable=True).argsort(dim=1)  # [F, HW] 0: least similar
        joins = rank >= keep[:, None]                                  # [F, HW]
        parent[later] = torch.where(joins, parent[ref[later]], parent[later])
    return result_from_groups(features, follow_parents(parent.flatten()), "dycoke")


def _kept_per_frame(spare: int, frames: int, HW: int, least: int) -> Tensor:
    """[frames] patches each later frame keeps: `spare` shared evenly, the remainder to the
    earliest frames, each between `least` and HW."""
    if spare < frames * least:
        log.info("DyCoke keeps every group's first frame whole: the budget is below that floor")
    base, extra = divmod(max(spare, 0), frames)
    keep = torch.full((frames,), base)
    keep[:extra] += 1
    return keep.clamp(least, HW)
