"""Spatial half of STTM: a quadtree pyramid per frame and the coarse-to-fine token search.

The pyramid is built once for a video's features; every threshold and root level afterwards
only reads the small per-node similarity maps it recorded, so re-merging is cheap.

Geometry (the official implementation's): from the leaf grid (H, W) the sides are halved with
ceil until one side reaches 2. On an odd side the *first* row/column of a level is the 1-wide
partial block, so for a child axis of length n with o = n % 2:
    parent of child r       = (r + o) // 2
    children of parent i    = rows max(2i - o, 0) .. 2i + 1 - o
Shape legend: T frames, H x W leaf grid, h x w a level's grid, C channels, S spatial tokens.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

# Vector norms in this range keep every fp32 sum of a cosine far from overflow and underflow;
# outside it (features of scale 1e20 or 1e-12, or a norm of 0, which may be squares that
# underflowed) vectors are rescaled first. The lower end is also the norm floor that makes
# an all-zero vector's similarity 0.
NORM_RANGE = (2.0 ** -40, 2.0 ** 40)


def pyramid_sizes(height: int, width: int) -> list[tuple[int, int]]:
    """Grid size of each quadtree level, coarse -> fine; the last one is (height, width)."""
    sizes = [(height, width)]
    h, w = height, width
    while h != 2 and w != 2 and (h, w) != (1, 1):  # a 1x1 grid never reaches 2
        h, w = math.ceil(h / 2), math.ceil(w / 2)
        sizes.insert(0, (h, w))
    return sizes


def cosine_to_each(items: Tensor, refs: Tensor, head_dim: int | None = None) -> Tensor:
    """fp32 cosine similarity of items to their reference vector (averaged over heads of
    size head_dim if given), independent of the vectors' scale.
    items [n, k, C], refs [n, C] -> [n, k]

    A batched matmul reads each vector once and writes no [n, k, C] temporaries (unless some
    norm is out of NORM_RANGE: then all vectors are rescaled, see `unit_max_abs`).
    """
    items, refs = items.float(), refs.float()
    if head_dim is not None:  # heads join the batch: [n * nh, k, hd] and [n * nh, hd]
        n, heads = items.shape[0], items.shape[-1] // head_dim  # n may be 0: no pairs
        items = items.unflatten(-1, (heads, head_dim)).transpose(1, 2).flatten(0, 1)
        refs = refs.unflatten(-1, (heads, head_dim)).flatten(0, 1)
        return cosine_to_each(items, refs).unflatten(0, (n, heads)).mean(dim=1)
    item_norms, ref_norms = items.norm(dim=-1), refs.norm(dim=-1, keepdim=True)  # [n, k], [n, 1]
    if not _in_range(item_norms, ref_norms):
        items, refs = unit_max_abs(items), unit_max_abs(refs)
        item_norms, ref_norms = items.norm(dim=-1), refs.norm(dim=-1, keepdim=True)
    dots = torch.bmm(items, refs[:, :, None])[..., 0]  # [n, k]
    floor = NORM_RANGE[0]
    return dots / (item_norms.clamp_min(floor) * ref_norms.clamp_min(floor))


def _in_range(*norms: Tensor) -> bool:
    low, high = NORM_RANGE
    return bool(torch.stack([((n >= low) & (n <= high)).all() for n in norms]).all())  # 1 sync


def unit_max_abs(x: Tensor) -> Tensor:
    """x [..., C] fp32 with each vector scaled by a power of 2 so its max |entry| lies in
    [0.5, 1); an all-zero vector stays zero.

    A power of 2 scales exactly, so a cosine of rescaled vectors is bit-identical to the
    plain one wherever that one neither overflows nor underflows fp32.
    """
    max_abs = torch.maximum(x.amax(dim=-1, keepdim=True), -x.amin(dim=-1, keepdim=True))
    _, exponent = torch.frexp(max_abs)  # max_abs = m * 2^exponent, m in [0.5, 1)
    # clamped so 2^-exponent stays finite: only denormal-sized vectors end up below 0.5
    scale = torch.ldexp(torch.ones_like(max_abs), -exponent.clamp_min(-126))
    return x * scale


@dataclass
class Axis:
    """One axis (rows or columns) of the pyramid; lists are per level, coarse -> fine."""

    start: list[Tensor]    # [n_l] first leaf index a node covers
    end: list[Tensor]      # [n_l] one past its last leaf index
    parent: list[Tensor]   # [n_l] index of its parent in the level above (level 0: itself)
    ancestor: list[Tensor]  # [n_leaf] the level-l node that covers each leaf index
    children: list[Tensor]  # [n_l, 2] its children in the level below, -1 where absent

    @classmethod
    def build(cls, lengths: list[int], device) -> "Axis":
        """lengths: the axis length at each level, coarse -> fine."""
        leaf = torch.arange(lengths[-1], device=device)
        start, end, parent, ancestor, children = [leaf], [leaf + 1], [], [leaf], []
        for n in reversed(lengths[1:]):  # child length n -> parent length ceil(n / 2)
            odd = n % 2
            parent.insert(0, (torch.arange(n, device=device) + odd) // 2)
            first = 2 * torch.arange(math.ceil(n / 2), device=device) - odd  # -1: absent
            children.insert(0, torch.stack([first, first + 1], dim=1))
            start.insert(0, start[0][first.clamp_min(0)])
            end.insert(0, end[0][first + 1])
            ancestor.insert(0, parent[0][ancestor[0]])
        parent.insert(0, torch.arange(lengths[0], device=device))
        return cls(start, end, parent, ancestor, children)

    def node(self, level: int, first: Tensor, stop: Tensor) -> Tensor:
        """[n] index of the level's node spanning leaves first..stop-1 exactly, -1 if none."""
        starts = self.start[level]
        i = torch.searchsorted(starts, first).clamp_max(len(starts) - 1)
        exact = (starts[i] == first) & (self.end[level][i] == stop)
        return i.where(exact, -1)


def pool_2x2(x: Tensor, area: Tensor | None = None) -> Tensor:
    """Average each node's 2x2 children; an odd side's first row/column pools 1-wide blocks.

    x: [T, h, w, C] -> [T, ceil(h/2), ceil(w/2), C]. With area [h, w] (patches per child) the
    average is weighted by it. The [T, C, h, w] view of x is channels-last, so no copy is made.
    """
    h, w = x.shape[1:3]
    pad = (h % 2, w % 2)

    def avg(v: Tensor) -> Tensor:  # [T, h, w, C] -> [T, h', w', C]
        pooled = F.avg_pool2d(v.permute(0, 3, 1, 2), 2, 2, padding=pad, count_include_pad=False)
        return pooled.permute(0, 2, 3, 1)

    if area is None:
        return avg(x)
    a = area.to(x.dtype)[None, :, :, None]  # [1, h, w, 1]
    return avg(x * a) / avg(a)


@dataclass
class SpatialTokens:
    """Per-frame multi-granular tokens, sorted by (t, y0, x0)."""

    features: Tensor   # [S, C] input dtype
    boxes: Tensor      # [S, 5] (t, y0, x0, y1, x1), leaf patch units, y1/x1 exclusive
    token_map: Tensor  # [T, H, W] index of the token each leaf patch belongs to

    @property
    def areas(self) -> Tensor:  # [S] patches per token
        b = self.boxes
        return (b[:, 3] - b[:, 1]) * (b[:, 4] - b[:, 2])


class QuadtreePyramid:
    """All quadtree levels of a video's features and each node's similarity to its children.

    Built once (one pass of pooling and similarities over the features); `search` and `tokens`
    then take any threshold and root level without touching the features again.
    """

    def __init__(self, features: Tensor, head_dim: int | None = None, area_weighted: bool = False):
        T, H, W, C = features.shape
        self.grid = (T, H, W)
        self.sizes = pyramid_sizes(H, W)
        device = features.device
        self.rows = Axis.build([h for h, _ in self.sizes], device)
        self.cols = Axis.build([w for _, w in self.sizes], device)
        self.head_dim = head_dim
        self.levels = [features]  # coarse -> fine, [T, h_l, w_l, C]
        for level in range(len(self.sizes) - 2, -1, -1):
            area = self.area(level + 1) if area_weighted else None
            self.levels.insert(0, pool_2x2(self.levels[0], area))
        self._min_child_sim: dict[int, Tensor] = {}  # per non-leaf level, NaN = not computed

    def min_child_sim(self, level: int, nodes: Tensor) -> Tensor:
        """[T, h_l, w_l] fp32 smallest cosine similarity of each node to its children, filled
        in for `nodes` ([T, h_l, w_l] bool) on first need: a search touches only the nodes it
        visits, and later searches reuse what earlier ones computed."""
        sims = self._min_child_sim.setdefault(
            level, torch.full(nodes.shape, torch.nan, device=nodes.device))
        todo = nodes & sims.isnan()
        if todo.any():
            t, i, j = todo.nonzero(as_tuple=True)
            sims[t, i, j] = self._similarity_to_children(level, t, i, j)
        return sims

    def _similarity_to_children(self, level: int, t: Tensor, i: Tensor, j: Tensor) -> Tensor:
        """[n] smallest similarity of nodes (t, i, j) of a level to their up to 4 children."""
        return self.child_similarities(level, t, i, j).amin(dim=1)

    def child_slots(self, level: int, i: Tensor, j: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(rows, cols, present), each [n, 4]: the child compared in each of the 4 slots of
        nodes (i, j) of a level, in the order (top-left, top-right, bottom-left, bottom-right).

        The official code points an edge node's absent child slots at the level's top-left
        child (0, 0), so such nodes must be similar to it too; reproduced for its tokens."""
        rows = self.rows.children[level][i][:, :, None].expand(-1, 2, 2)  # [n, 2, 2]
        cols = self.cols.children[level][j][:, None, :].expand(-1, 2, 2)
        present = (rows >= 0) & (cols >= 0)
        rows, cols = rows.where(present, 0), cols.where(present, 0)
        return rows.flatten(1), cols.flatten(1), present.flatten(1)

    def child_similarities(self, level: int, t: Tensor, i: Tensor, j: Tensor) -> Tensor:
        """[n, 4] fp32 cosine similarity of nodes (t, i, j) of a level to each child slot
        (`child_slots`; absent slots hold the official code's stand-in child)."""
        rows, cols, _ = self.child_slots(level, i, j)
        children = self.levels[level + 1][t[:, None], rows, cols]  # [n, 4, C]
        return cosine_to_each(children, self.levels[level][t, i, j], self.head_dim)

    @property
    def num_levels(self) -> int:
        return len(self.sizes)

    def area(self, level: int) -> Tensor:
        """[h_l, w_l] leaf patches under each node of a level."""
        heights = self.rows.end[level] - self.rows.start[level]
        widths = self.cols.end[level] - self.cols.start[level]
        return heights[:, None] * widths[None, :]

    def search(self, spatial_threshold: float | None, root_level: int) -> list[Tensor]:
        """Coarse-to-fine search. Returns, per level from the root down, a [T, h_l, w_l] mask of
        the nodes kept as tokens: a visited node stops iff it is similar to all its children
        (cosine >= spatial_threshold; None turns spatial merging off)."""
        T = self.grid[0]
        h, w = self.sizes[root_level]
        visited = torch.ones(T, h, w, dtype=torch.bool, device=self.levels[0].device)
        kept = []
        if spatial_threshold is None or spatial_threshold > 1:  # off: every leaf is a token
            empty = [torch.zeros(T, *self.sizes[l], dtype=torch.bool, device=visited.device)
                     for l in range(root_level, self.num_levels - 1)]
            return empty + [torch.ones(T, *self.sizes[-1], dtype=torch.bool, device=visited.device)]
        for level in range(root_level, self.num_levels - 1):
            stop = visited & (self.min_child_sim(level, visited) >= spatial_threshold)
            kept.append(stop)
            split = visited & ~stop  # [T, h_l, w_l] -> its children on the next level
            visited = split[:, self.rows.parent[level + 1]][:, :, self.cols.parent[level + 1]]
        kept.append(visited)  # leaves are always kept
        return kept

    def count(self, spatial_threshold: float | None, root_level: int) -> int:
        """Number of spatial tokens at a threshold, without gathering any features."""
        return int(sum(mask.sum() for mask in self.search(spatial_threshold, root_level)))

    def tokens(self, kept: list[Tensor]) -> SpatialTokens:
        """The spatial tokens of a search's masks (root level down to the leaves)."""
        levels = range(self.num_levels - len(kept), self.num_levels)
        features, boxes = [], []
        for level, mask in zip(levels, kept):
            t, i, j = mask.nonzero(as_tuple=True)
            features.append(self.levels[level][t, i, j])
            boxes.append(torch.stack([t, self.rows.start[level][i], self.cols.start[level][j],
                                      self.rows.end[level][i], self.cols.end[level][j]], dim=1))
        features, boxes = torch.cat(features), torch.cat(boxes)  # [S, C], [S, 5]
        _, H, W = self.grid
        order = torch.argsort(boxes[:, 0] * (H * W) + boxes[:, 1] * W + boxes[:, 2])
        rank = torch.empty_like(order)
        rank[order] = torch.arange(len(order), device=order.device)
        return SpatialTokens(features[order], boxes[order], self._token_map(kept, levels, rank))

    def node_features(self, boxes: Tensor) -> Tensor:
        """[S, C] the pooled feature of the node with each box [S, 5] (t, y0, x0, y1, x1), e.g.
        the spatial tokens of a merge of other features of the same video.

        A box found on several levels is one node with a single child there (an odd grid's
        corner), whose pooled value is that child's (to rounding, with area weights), so the
        coarsest match is taken."""
        t, y0, x0, y1, x1 = boxes.t().contiguous()  # [S] each
        out = torch.empty(len(boxes), self.levels[0].shape[-1], dtype=self.levels[0].dtype,
                          device=boxes.device)
        found = torch.zeros(len(boxes), dtype=torch.bool, device=boxes.device)
        for level in range(self.num_levels):
            i, j = self.rows.node(level, y0, y1), self.cols.node(level, x0, x1)
            hit = (i >= 0) & (j >= 0) & ~found
            out[hit] = self.levels[level][t[hit], i[hit], j[hit]]
            found |= hit
        if not bool(found.all()):
            raise ValueError("a box is not a node of this pyramid (another grid's merge?)")
        return out

    def _token_map(self, kept: list[Tensor], levels, rank: Tensor) -> Tensor:
        """[T, H, W] token index of each leaf patch: every patch has exactly one kept ancestor."""
        token_map, offset = None, 0
        for level, mask in zip(levels, kept):
            ids = torch.full(mask.shape, -1, dtype=torch.long, device=mask.device)
            n = int(mask.sum())
            ids[mask] = rank[offset:offset + n]
            offset += n
            at_leaf = ids[:, self.rows.ancestor[level]][:, :, self.cols.ancestor[level]]
            token_map = at_leaf if token_map is None else torch.maximum(token_map, at_leaf)
        return token_map
