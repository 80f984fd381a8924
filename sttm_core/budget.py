"""A token budget as the knob: choose tauS and tauT so a merge keeps a target fraction of tokens.

The search (the paper leaves this open; this is our rule):
1. Split the budget between space and time in log space. With keep ratio r and spatial share
   s (default 0.5), spatial merging aims at r**s of the patches and temporal merging at the
   rest, r**(1 - s) of the spatial tokens: equal cuts from each at s = 0.5. A single frame,
   or temporal merging turned off, gives space the whole budget.
2. Bisect tauS on the spatial token count. Counting reads only the pyramid's per-node
   similarity maps (no features), so this costs nothing next to a merge.
3. Gather those spatial tokens and their nested pairs' similarities once (one "merge"), then
   bisect tauT on the group count, which only re-runs the union-find over the pairs.
4. If time cannot reach its share (too few similar pairs) or overshoots it, move the spatial
   target by the missing factor and repeat from 2; at most `max_merges` rounds.
The result lands within `tolerance` (default one percentage point) of the target, or says
why not: below what the coarsest merge can reach, or between two steps of a count that moves
in jumps (few frames, small grids).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .merge import MergeResult, VideoTokenMerger, check_root_level
from .reduction import OFF, check_temporal_mode, is_int, is_real

BISECT_STEPS = 24  # float bisection on [-1, 1]: resolution ~1e-7, below fp32 cosine noise
ABOVE_ANY_COSINE = 1.0001  # the bisection's upper end: at it nothing merges


@dataclass
class BudgetChoice:
    """Thresholds chosen for a keep ratio, and the merge they give."""

    spatial_threshold: float | None   # OFF: the budget needed no spatial merging
    temporal_threshold: float | None  # OFF: temporal merging off or not needed
    target: float       # the keep ratio asked for
    keep_ratio: float   # the keep ratio reached
    reached: bool       # within tolerance of the target
    reason: str         # why not, when not reached
    merges: int         # feature gathers + pair similarity passes the search took
    result: MergeResult


def thresholds_for_budget(features: Tensor | VideoTokenMerger, keep_ratio: float, *,
                          root_level: int = 1, temporal: bool = True, tolerance: float = 0.01,
                          spatial_share: float = 0.5, temporal_mode: str = "official",
                          max_merges: int = 4) -> BudgetChoice:
    """Choose tauS (and tauT unless temporal=False) so the merge keeps `keep_ratio` of the
    tokens. features: [T, H, W, C] or a VideoTokenMerger (its pyramid is reused)."""
    merger = features if isinstance(features, VideoTokenMerger) else VideoTokenMerger(features)
    _check_budget(keep_ratio, tolerance, spatial_share, max_merges)
    check_temporal_mode(temporal_mode)
    root_level = check_root_level(root_level, merger.pyramid.sizes)
    total = merger.pyramid.grid[0] * merger.pyramid.grid[1] * merger.pyramid.grid[2]
    target, slack = keep_ratio * total, tolerance * total
    use_time = temporal and merger.pyramid.grid[0] > 1
    if keep_ratio >= 1:
        result = merger.merge(OFF, OFF, root_level)
        return BudgetChoice(OFF, OFF, keep_ratio, 1.0, True, "", 1, result)

    spatial_target = target * (keep_ratio ** -(1 - spatial_share) if use_time else 1)
    best = None  # (miss, tau_s, tau_t, spatial tokens, their group labels)
    for merges in range(1, max_merges + 1):
        tau_s = _bisect(lambda tau: merger.pyramid.count(tau, root_level), spatial_target)
        spatial = merger.pyramid.tokens(merger.pyramid.search(tau_s, root_level))
        n = len(spatial.boxes)
        label, tau_t = torch.arange(n, device=spatial.boxes.device), OFF
        if use_time:
            pairs = merger.temporal_candidates(spatial)

            def labels_at(tau):
                return merger.temporal_labels(spatial, pairs, tau, temporal_mode)
            tau_t = _bisect(lambda tau: _num_groups(labels_at(tau)), target)
            label = labels_at(tau_t)
        count = _num_groups(label)
        if best is None or abs(count - target) < best[0]:
            best = (abs(count - target), tau_s, tau_t, spatial, label)
        if abs(count - target) <= slack:
            break
        # time could not take its share (or took too much): move the spatial target
        spatial_target *= target / count
    miss, tau_s, tau_t, spatial, label = best
    result = merger.finish(spatial, label, tau_s, tau_t, root_level, temporal_mode)
    tau_s, tau_t = result.spatial_threshold, result.temporal_threshold  # above 1: OFF
    reached = miss <= slack
    reason = "" if reached else _why_not(result, keep_ratio, merger, root_level, use_time,
                                         temporal_mode)
    return BudgetChoice(tau_s, tau_t, keep_ratio, result.keep_ratio, reached, reason, merges,
                        result)


def _num_groups(label: Tensor) -> int:
    """Groups in a labelling: tokens that are their own representative."""
    return int((label == torch.arange(len(label), device=label.device)).sum())


def _bisect(count_at, target: float) -> float:
    """Threshold in [-1, ABOVE_ANY_COSINE] whose count (non-decreasing in it) is nearest the
    target."""
    lo, hi = -1.0, ABOVE_ANY_COSINE
    if count_at(lo) >= target:
        return lo
    for _ in range(BISECT_STEPS):  # invariant: count(lo) < target <= count(hi)
        mid = (lo + hi) / 2
        if count_at(mid) < target:
            lo = mid
        else:
            hi = mid
    return lo if target - count_at(lo) < count_at(hi) - target else hi


def _why_not(result: MergeResult, keep_ratio: float, merger: VideoTokenMerger, root_level: int,
             use_time: bool, temporal_mode: str) -> str:
    floor = merger.merge(-1.0, -1.0 if use_time else OFF, root_level, temporal_mode).keep_ratio
    if keep_ratio < floor:
        return (f"the fewest tokens reachable at root_level={root_level} keep {floor:.1%} "
                f"(every root node whole{', every nested pair merged' if use_time else ''}); "
                "raise the budget or start from a coarser root level")
    return (f"the token count moves in steps here; the nearest setting keeps "
            f"{result.keep_ratio:.1%} for a target of {keep_ratio:.1%}")


def _check_budget(keep_ratio, tolerance, spatial_share, max_merges) -> None:
    # numpy scalars are numbers too; NaN fails every range test
    if not is_real(keep_ratio) or not 0 < keep_ratio <= 1:
        raise ValueError(f"keep_ratio={keep_ratio!r} must be a number in (0, 1], e.g. 0.3")
    if not is_real(tolerance) or not 0 <= tolerance < 1:
        raise ValueError(f"tolerance={tolerance!r} must be a number in [0, 1)")
    if not is_real(spatial_share) or not 0 <= spatial_share <= 1:
        raise ValueError(f"spatial_share={spatial_share!r} must be a number in [0, 1]")
    if not is_int(max_merges) or max_merges < 1:
        raise ValueError(f"max_merges={max_merges!r} must be a positive integer")
