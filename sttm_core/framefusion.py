"""FrameFusion (Fu et al., "FrameFusion: Combining Similarity and Importance for Video Token
Reduction on Large Visual Language Models"), at one merge layer and a token budget.

1. Similarity: each patch is compared with the patch at the same place in the previous frame
   (cosine, fp32). Those at or above SIMILARITY_FLOOR merge into it (a run of them along time
   becomes one token, the plain mean, at the run's first patch); when more qualify than the
   budget removes, only the most similar merge.
2. Importance: if still above the budget, the tokens with the least attention from the last
   prompt token (layer k-1, the mean over a token's patches) are dropped, as FastV drops them.
Kept tokens keep their original positions (FrameFusion selects the kept tokens' position
embeddings). FrameFusion spreads merging over several early layers against a FLOPs "cost" and
ranks by attention averaged over every query; here both steps act once, at layer k, on the
budget as a keep ratio, ranked by the last prompt token's row like FastV. Query-aware: the
video prefix cannot be reused across questions.
Shape legend: T frames, H x W patch grid, C channels, P = T*H*W patches.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .merge import MergeResult
from .patch_groups import budget_count, follow_parents, representatives, result_from_groups
from .quadtree import cosine_to_each

SIMILARITY_FLOOR = 0.6  # FrameFusion's similarity_lower_bound


def frame_fusion(features: Tensor, attention: Tensor, keep_ratio: float, *,
                 similarity_floor: float = SIMILARITY_FLOOR,
                 keep_every_frame: bool = False) -> MergeResult:
    """features [T, H, W, C], attention [T, H, W] (what each patch receives from the last
    prompt token). keep_every_frame: every frame keeps at least one token of its own (its
    least similar patch never merges; its most attended token is never dropped)."""
    T, H, W, C = features.shape
    P, HW = T * H * W, H * W
    target = budget_count(keep_ratio, P)
    similarity = torch.full((T, HW), -torch.inf, device=features.device)  # [T, HW]
    if T > 1:
        flat = features.reshape(T, HW, C)
        similarity[1:] = cosine_to_each(flat[1:].reshape(-1, 1, C),
                                        flat[:-1].reshape(-1, C))[:, 0].view(T - 1, HW)
        if keep_every_frame:
            similarity[torch.arange(1, T), similarity[1:].argmin(1)] = -torch.inf
    group = follow_parents(_merge_parents(similarity.flatten(), similarity_floor, P - target, HW))
    kept = None
    if int((representatives(group) == torch.arange(P, device=group.device)).sum()) > target:
        kept = _most_attended(group, attention.flatten().float(), target, HW, keep_every_frame)
    return result_from_groups(features, group, "framefusion", kept)


def _merge_parents(similarity: Tensor, floor: float, excess: int, HW: int) -> Tensor:
    """[P] parent of each patch: the same place one frame earlier where it merges, else itself.
    similarity [P] (-inf in the first frame)."""
    P = len(similarity)
    joins = similarity >= floor
    if int(joins.sum()) > excess:  # more similar patches than the budget removes: the most similar
        joins = torch.zeros_like(joins)
        joins[similarity.topk(max(excess, 0)).indices] = True
    parent = torch.arange(P, device=similarity.device)
    return torch.where(joins, parent - HW, parent)


def _most_attended(group: Tensor, attention: Tensor, target: int, HW: int,
                   keep_every_frame: bool) -> Tensor:
    """[P] bool: the `target` groups (marked at their representatives) whose patches receive
    the most attention on average; with keep_every_frame also each frame's best own group."""
    P = len(group)
    label = representatives(group)
    sums = torch.zeros(P, device=group.device).index_add_(0, label, attention)
    score = sums / torch.bincount(label, minlength=P).clamp_min(1)   # [P] at representatives
    is_rep = label == torch.arange(P, device=group.device)
    score = torch.where(is_rep, score, -torch.inf)
    if keep_every_frame:
        reps = is_rep.nonzero().flatten()
        order = reps[score[reps].argsort(descending=True, stable=True)]
        order = order[(order // HW).argsort(stable=True)]           # by frame, best first
        firsts = torch.ones(len(order), dtype=torch.bool, device=group.device)
        firsts[1:] = order[1:] // HW != order[:-1] // HW
        score[order[firsts]] = torch.inf
        target = max(target, int(firsts.sum()))
    kept = torch.zeros(P, dtype=torch.bool, device=group.device)
    kept[score.topk(target).indices] = True
    return kept
