"""Joint octree merging (the paper's Table 6): one spatio-temporal tree over (t, y, x) searched
coarse to fine, where STTM decomposes the merge into a quadtree per frame, then time.

Each coarser level halves T, H and W with ceil (2x2x2 children) down to a single node; on an
odd side the *first* frame/row/column is the partial block, as in the quadtree (its `Axis`).
A node's feature is the mean of its children (by patch count if area_weighted). The search
starts from a root level: a visited node is kept as ONE token iff its fp32 cosine similarity
to each of its present children is >= tau (the octree's one threshold); otherwise its children
are visited. Leaves are always kept. A token is a box of frames x rows x columns; the
MergeResult is made by patch_groups (each token the plain mean of its patches, which is its
node's feature wherever the blocks are full, and exactly so with area weights; spatial boxes
are the kept patches). `octree_for_budget` chooses tau per video for a keep ratio.
Shape legend: T frames, H x W patch grid, C channels, t x h x w a level's grid, P = T*H*W.
"""
from __future__ import annotations

import logging
import math
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import Tensor

from .budget import ABOVE_ANY_COSINE, BISECT_STEPS
from .merge import MergeResult, check_features, check_finite
from .patch_groups import budget_count, representatives, result_from_groups
from .quadtree import Axis, cosine_to_each
from .temporal import keep_every_frame as give_frames_a_token

log = logging.getLogger(__name__)


def octree_sizes(frames: int, height: int, width: int) -> list[tuple[int, int, int]]:
    """Grid (t, h, w) of each octree level, coarse -> fine: (1, 1, 1) first, the leaves last."""
    sizes = [(frames, height, width)]
    while sizes[0] != (1, 1, 1):
        sizes.insert(0, tuple(math.ceil(n / 2) for n in sizes[0]))
    return sizes


def pool_2x2x2(x: Tensor, area: Tensor | None = None) -> Tensor:
    """Average each node's 2x2x2 children; an odd side's first frame/row/column pools 1-wide
    blocks. x: [t, h, w, C] -> [ceil(t/2), ceil(h/2), ceil(w/2), C]; area [t, h, w]: weights."""
    pad = tuple(n % 2 if n > 1 else 0 for n in x.shape[:3])
    size = tuple(2 if n > 1 else 1 for n in x.shape[:3])  # a side of 1 stays 1

    def avg(v: Tensor) -> Tensor:  # [t, h, w, C] -> [t', h', w', C] through [1, C, t, h, w]
        pooled = F.avg_pool3d(v.permute(3, 0, 1, 2)[None], size, size, padding=pad,
                              count_include_pad=False)
        return pooled[0].permute(1, 2, 3, 0)

    if area is None:
        return avg(x)
    a = area.to(x.dtype)[..., None]  # [t, h, w, 1]
    return avg(x * a) / avg(a)


class OctreePyramid:
    """Every octree level of a video's features and each node's smallest similarity to its
    children, computed once; `search` then takes any tau and root level."""

    def __init__(self, features: Tensor, head_dim: int | None = None, area_weighted: bool = False):
        check_features(features, head_dim)
        self.grid = tuple(features.shape[:3])
        self.sizes = octree_sizes(*self.grid)
        self.head_dim = head_dim
        self.axes = [Axis.build([s[d] for s in self.sizes], features.device) for d in range(3)]
        self.levels = [features]  # coarse -> fine, [t_l, h_l, w_l, C]
        for level in range(self.num_levels - 2, -1, -1):
            area = self.area(level + 1) if area_weighted else None
            self.levels.insert(0, pool_2x2x2(self.levels[0], area))
        check_finite(features, self.levels[0])
        self.min_child_sim = [self._min_child_sim(level) for level in range(self.num_levels - 1)]

    @property
    def num_levels(self) -> int:
        return len(self.sizes)

    def area(self, level: int) -> Tensor:
        """[t_l, h_l, w_l] leaf patches under each node of a level."""
        t, h, w = (axis.end[level] - axis.start[level] for axis in self.axes)
        return t[:, None, None] * h[None, :, None] * w[None, None, :]

    def _min_child_sim(self, level: int) -> Tensor:
        """[t_l, h_l, w_l] fp32 smallest cosine similarity of each node to its present children
        (up to 8; an absent slot counts as similar)."""
        ts, hs, ws = (axis.children[level] for axis in self.axes)  # [n_d, 2] each, -1: absent
        t = ts[:, None, None, :, None, None]                        # [t_l, 1, 1, 2, 1, 1]
        i = hs[None, :, None, None, :, None]                        # [1, h_l, 1, 1, 2, 1]
        j = ws[None, None, :, None, None, :]                        # [1, 1, w_l, 1, 1, 2]
        t, i, j = torch.broadcast_tensors(t, i, j)                  # [t_l, h_l, w_l, 2, 2, 2]
        present = ((t >= 0) & (i >= 0) & (j >= 0)).flatten(3)       # [t_l, h_l, w_l, 8]
        children = self.levels[level + 1][t.clamp_min(0), i.clamp_min(0), j.clamp_min(0)]
        nodes = self.levels[level]
        sims = cosine_to_each(children.flatten(0, 2).flatten(1, 3), nodes.flatten(0, 2),
                              self.head_dim).view(present.shape)
        return sims.where(present, torch.inf).amin(dim=-1)

    def search(self, tau: float | None, root_level: int) -> list[Tensor]:
        """Coarse-to-fine search from root_level (>= 0). Returns, per level from the root down,
        a [t_l, h_l, w_l] mask of the nodes kept as tokens (tau None or > 1: every leaf)."""
        device = self.levels[0].device
        if tau is None or tau > 1:
            return [torch.zeros(s, dtype=torch.bool, device=device)
                    for s in self.sizes[root_level:-1]] + [torch.ones(self.grid, dtype=torch.bool,
                                                                     device=device)]
        visited = torch.ones(self.sizes[root_level], dtype=torch.bool, device=device)
        kept = []
        for level in range(root_level, self.num_levels - 1):
            stop = visited & (self.min_child_sim[level] >= tau)
            kept.append(stop)
            split = visited & ~stop  # -> its children on the next level
            pt, ph, pw = (axis.parent[level + 1] for axis in self.axes)
            visited = split[pt][:, ph][:, :, pw]
        kept.append(visited)  # leaves are always kept
        return kept

    def count(self, tau: float | None, root_level: int) -> int:
        """Tokens at a tau, without making them."""
        return int(sum(mask.sum() for mask in self.search(tau, root_level)))

    def token_of_patch(self, kept: list[Tensor]) -> Tensor:
        """[T, H, W] a token id (not yet in order) per leaf patch: its one kept ancestor's."""
        token_map, offset = None, 0
        for level, mask in zip(range(self.num_levels - len(kept), self.num_levels), kept):
            ids = torch.full(mask.shape, -1, dtype=torch.long, device=mask.device)
            n = int(mask.sum())
            ids[mask] = torch.arange(offset, offset + n, device=mask.device)
            offset += n
            at, ah, aw = (axis.ancestor[level] for axis in self.axes)
            at_leaf = ids[at][:, ah][:, :, aw]
            token_map = at_leaf if token_map is None else torch.maximum(token_map, at_leaf)
        return token_map

    def child_count(self, level: int) -> Tensor:
        """[t_l, h_l, w_l] present children of each node of a non-leaf level (1 to 8)."""
        t, h, w = ((axis.children[level] >= 0).sum(dim=1) for axis in self.axes)
        return t[:, None, None] * h[None, :, None] * w[None, None, :]


def octree_merge(pyramid: OctreePyramid, tau: float | None, root_level: int,
                 kept: list[Tensor] | None = None, *,
                 keep_every_frame: bool = False) -> MergeResult:
    """The octree's tokens at tau from root_level (or the masks `kept` of such a search), as a
    MergeResult (tokens by first frame, then top-left). keep_every_frame: a frame none of whose
    tokens starts in it gets its first (top-left) patch back as a token of its own."""
    kept = pyramid.search(tau, root_level) if kept is None else kept
    group = pyramid.token_of_patch(kept).flatten()  # [P]
    if keep_every_frame:
        T, H, W = pyramid.grid
        frame = torch.arange(T, device=group.device).repeat_interleave(H * W)
        group = give_frames_a_token(representatives(group), frame, T)
    used = None if tau is None or tau > 1 else float(tau)
    return replace(result_from_groups(pyramid.levels[-1], group, "octree"),
                   spatial_threshold=used, temporal_threshold=used)


def octree_for_budget(pyramid: OctreePyramid, keep_ratio: float, root_level: int, *,
                      keep_every_frame: bool = False) -> MergeResult:
    """The octree merge that keeps round(keep_ratio * P) tokens: tau bisected to the largest
    count below the target, then `split_least_similar` (one node's step can be a whole
    subtree); below the root level's node count (every root node whole) it keeps that floor.
    The result reports the bisected tau."""
    target = budget_count(keep_ratio, math.prod(pyramid.grid))
    if target >= math.prod(pyramid.grid):  # every patch a token
        return octree_merge(pyramid, None, root_level, keep_every_frame=keep_every_frame)
    lo, hi = -1.0, ABOVE_ANY_COSINE
    if pyramid.count(lo, root_level) >= target:
        log.info("octree: keep_ratio=%g is below the root nodes of level %d %s; keeping them",
                 keep_ratio, root_level, pyramid.sizes[root_level])
    else:
        for _ in range(BISECT_STEPS):  # invariant: count(lo) < target <= count(hi)
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if pyramid.count(mid, root_level) < target else (lo, mid)
    kept = split_least_similar(pyramid, pyramid.search(lo, root_level), root_level, target)
    return octree_merge(pyramid, lo, root_level, kept, keep_every_frame=keep_every_frame)


def split_least_similar(pyramid: OctreePyramid, kept: list[Tensor], root_level: int,
                        target: int) -> list[Tensor]:
    """Split kept nodes, the least similar to their children first, while that brings the
    count nearer the target: where one node's split adds a whole subtree at the bisected tau,
    the count lands within one split (<= 7 tokens) of the target. In rounds: each splits the
    longest run of candidates (all levels, by similarity) that stays within the target."""
    kept = [mask.clone() for mask in kept]
    count = sum(int(mask.sum()) for mask in kept)
    while count < target:
        k, node, sim, added = _split_candidates(pyramid, kept, root_level)  # [n] each
        if not len(sim):  # only leaves left
            break
        order = sim.argsort(stable=True)
        k, node, added = k[order], node[order], added[order]
        take = int((added.cumsum(0) <= target - count).sum())
        if take == 0 and int(added[0]) - (target - count) > target - count:
            break  # one more split overshoots by more than it misses
        take = max(take, 1)
        for level_k in k[:take].unique().tolist():
            split = torch.zeros_like(kept[level_k]).flatten()
            split[node[:take][k[:take] == level_k]] = True
            split = split.view(kept[level_k].shape)
            pt, ph, pw = (axis.parent[root_level + level_k + 1] for axis in pyramid.axes)
            kept[level_k] &= ~split
            kept[level_k + 1] |= split[pt][:, ph][:, :, pw]
        count += int(added[:take].sum())
    return kept


def _split_candidates(pyramid: OctreePyramid, kept: list[Tensor], root_level: int):
    """(mask index k [n], flat node index [n], similarity to children [n], tokens a split adds
    [n]) of the kept non-leaf nodes."""
    ks, nodes, sims, added = [], [], [], []
    for k, mask in enumerate(kept[:-1]):
        level = root_level + k
        flat = mask.flatten().nonzero().flatten()
        ks.append(torch.full_like(flat, k))
        nodes.append(flat)
        sims.append(pyramid.min_child_sim[level].flatten()[flat])
        added.append(pyramid.child_count(level).flatten()[flat] - 1)
    if not ks:
        empty = torch.zeros(0, dtype=torch.long, device=kept[0].device)
        return empty, empty, empty.float(), empty
    return torch.cat(ks), torch.cat(nodes), torch.cat(sims), torch.cat(added)
