"""The spatial search as decisions: for each quadtree node and root level, the τS interval in
which it is a token, so re-thresholding is a filter rather than a second search.

A visited node stops iff its lowest child similarity `high` is >= τS; leaves always stop
(high = +inf). From a root level r a node of level l >= r is therefore a token iff every
ancestor between r and it split (its high < τS) and it stops itself:
    low_r(node) < τS <= high(node),   low_r = the largest high of its ancestors at r..l-1
(-inf on level r itself). All values are the engine's fp32 similarities, and τS is compared in
fp32 as torch compares a Python float with an fp32 tensor. τS off (None or > 1) keeps exactly
the leaves.
Shape legend: T frames, H x W leaf grid, h x w a level's grid, M nodes per frame.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .evidence import MergeEvidence
from .quadtree import Axis


@dataclass
class SpatialIntervals:
    """Each node's τS interval (low_r, high] per root level r, and the geometry a filter needs.
    Node ids are the evidence's: (level l, row i, col j) of a frame is offsets[l] + i * w_l + j."""

    offsets: list[int]   # node id of each level's first node; the last entry is M
    high: Tensor         # [T, M] fp32 lowest child similarity (+inf on leaves)
    low: list[Tensor]    # per root level r: [T, M - offsets[r]] fp32, nodes of levels >= r
    level: Tensor        # [M] level of each node
    box: Tensor          # [M, 4] (y0, x0, y1, x1) in leaf patches, y1/x1 exclusive
    parent: Tensor       # [M] node id of the parent (-1 on level 0)
    order: Tensor        # [M] node ids sorted by (y0, x0), coarser first on a tie

    def tokens(self, spatial_threshold: float | None, root_level: int) -> Tensor:
        """[T, M] bool: the nodes that are tokens at this setting (nodes above the root never)."""
        off = spatial_threshold is None or spatial_threshold > 1
        tau = torch.tensor(torch.inf if off else spatial_threshold, dtype=torch.float32)
        first = self.offsets[root_level]
        inside = (self.low[root_level] < tau) & (tau <= self.high[:, first:])  # [T, M - first]
        return torch.cat([torch.zeros_like(self.high[:, :first], dtype=torch.bool), inside], 1)


def spatial_intervals(ev: MergeEvidence) -> SpatialIntervals:
    """Every node's τS interval for every root level, from a video's merge evidence."""
    T = ev.grid[0]
    device = ev.pair_similarity.device
    rows = Axis.build([h for h, _ in ev.sizes], device)
    cols = Axis.build([w for _, w in ev.sizes], device)
    highs = [ev.min_child_similarity(l).flatten(1) for l in range(len(ev.sizes) - 1)]  # [T, h*w]
    highs.append(torch.full((T, ev.sizes[-1][0] * ev.sizes[-1][1]), torch.inf, device=device))
    parents = [_parent_index(rows, cols, ev.sizes, l) for l in range(len(ev.sizes))]
    low = [_lows_from(root, highs, parents) for root in range(len(ev.sizes))]
    offsets = ev.offsets
    level, box, parent = _geometry(rows, cols, ev.sizes, offsets, parents)
    order = torch.argsort((box[:, 0] * ev.grid[2] + box[:, 1]) * len(ev.sizes) + level)
    return SpatialIntervals(offsets, torch.cat(highs, 1), low, level, box, parent, order)


def _parent_index(rows: Axis, cols: Axis, sizes, level: int) -> Tensor:
    """[h_l * w_l] raster index of each node's parent in the level above (level 0: itself)."""
    w_up = sizes[max(level - 1, 0)][1]
    return (rows.parent[level][:, None] * w_up + cols.parent[level][None, :]).flatten()


def _lows_from(root: int, highs: list[Tensor], parents: list[Tensor]) -> Tensor:
    """[T, nodes of levels >= root] largest high among each node's ancestors below the root."""
    lows = [torch.full_like(highs[root], -torch.inf)]
    for level in range(root + 1, len(highs)):
        up = parents[level]  # [h_l * w_l]
        lows.append(torch.maximum(lows[-1][:, up], highs[level - 1][:, up]))
    return torch.cat(lows, 1)


def _geometry(rows: Axis, cols: Axis, sizes, offsets: list[int], parents: list[Tensor]):
    """(level [M], box [M, 4], parent id [M]) of one frame's nodes."""
    level, box, parent = [], [], []
    for l, (h, w) in enumerate(sizes):
        i = torch.arange(h, device=parents[l].device)[:, None].expand(h, w).flatten()
        j = torch.arange(w, device=parents[l].device)[None, :].expand(h, w).flatten()
        level.append(torch.full((h * w,), l, device=i.device))
        box.append(torch.stack([rows.start[l][i], cols.start[l][j], rows.end[l][i],
                                cols.end[l][j]], dim=1))
        parent.append(parents[l] + offsets[l - 1] if l else torch.full_like(i, -1))
    return torch.cat(level), torch.cat(box), torch.cat(parent)


__all__ = ["SpatialIntervals", "spatial_intervals"]
