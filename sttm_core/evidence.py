"""The numbers STTM's thresholds test, for every node of a video's pyramid: its evidence.

A merge compares two kinds of cosine similarity with a threshold, and neither depends on the
thresholds or the root level:
  tauS  each quadtree node against each of its (up to 4) children; a node stops the search
        iff its smallest one is >= tauS
  tauT  each nested pair of nodes of consecutive frames (one box contains the other); a pair
        merges iff its similarity is >= tauT
`merge_evidence` computes all of them once per video (through the engine's own similarity
code), so anything that re-thresholds, e.g. the app's page, or a histogram of where a
threshold acts, reads them instead of the features.

Pairs are listed in one fixed order, the same for every pair of frames (t, t+1):
    for la in levels: for lb in levels:            # the earlier node's and the later node's level
        for n in level max(la, lb), raster order:  # the finer node of the pair
            earlier = n's ancestor at la (n itself if la is the finer), in frame t
            later   = n's ancestor at lb (n itself if lb is the finer), in frame t + 1
Node ids: a node (level l, row i, col j) of a frame is offsets[l] + i * w_l + j.
Shape legend: T frames, H x W leaf grid, h x w a level's grid, M nodes per frame, P pairs.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .merge import VideoTokenMerger
from .temporal import pair_similarity


@dataclass
class MergeEvidence:
    """Every similarity a threshold can test, for one video's features."""

    grid: tuple[int, int, int]        # (T, H, W)
    sizes: list[tuple[int, int]]      # each level's grid, coarse -> fine (leaf last)
    child_similarity: list[Tensor]    # per non-leaf level: [T, h, w, 4] fp32, one per child slot
    child_present: list[Tensor]       # per non-leaf level: [h, w, 4] bool, False: an absent child
    #   slot, which the official code fills with the level's top-left child (its value counts)
    pair_earlier: Tensor              # [P_f] node id in frame t of each pair (the order above)
    pair_later: Tensor                # [P_f] node id in frame t + 1
    pair_similarity: Tensor           # [T - 1, P_f] fp32
    keep_every_frame: bool = False    # the merge gives every frame a token (the merger's rule)

    @property
    def offsets(self) -> list[int]:
        """Node id of each level's first node; the last entry is M, nodes per frame."""
        counts = [h * w for h, w in self.sizes]
        return [sum(counts[:l]) for l in range(len(counts) + 1)]

    def min_child_similarity(self, level: int) -> Tensor:
        """[T, h, w] what tauS is compared with: each node's smallest child similarity."""
        return self.child_similarity[level].amin(dim=-1)


def merge_evidence(merger: VideoTokenMerger) -> MergeEvidence:
    """All child and nested-pair similarities of a video's pyramid (a VideoTokenMerger holds
    it), computed with the very code a merge uses, so a threshold compared with them decides
    exactly as `merger.merge` does."""
    pyramid = merger.pyramid
    T = pyramid.grid[0]
    sizes = list(pyramid.sizes)
    child, present = [], []
    for level, (h, w) in enumerate(sizes[:-1]):
        t, i, j = (a.flatten() for a in torch.meshgrid(
            *(torch.arange(n, device=pyramid.levels[0].device) for n in (T, h, w)), indexing="ij"))
        child.append(pyramid.child_similarities(level, t, i, j).view(T, h, w, 4))
        present.append(pyramid.child_slots(level, i[:h * w], j[:h * w])[2].view(h, w, 4))
    earlier, later = nested_pairs(merger)
    sims = torch.zeros(max(T - 1, 0), len(earlier), device=earlier.device)
    if T > 1:
        nodes = torch.cat([lv.flatten(1, 2) for lv in pyramid.levels], dim=1)  # [T, M, C]
        M = nodes.shape[1]
        frames = torch.arange(T - 1, device=earlier.device)[:, None] * M  # [T-1, 1]
        sims = pair_similarity(nodes.flatten(0, 1), (frames + earlier).flatten(),
                               (frames + M + later).flatten(), merger.head_dim).view(T - 1, -1)
    return MergeEvidence(tuple(pyramid.grid), sizes, child, present, earlier, later, sims,
                         merger.keep_every_frame)


def nested_pairs(merger: VideoTokenMerger) -> tuple[Tensor, Tensor]:
    """(earlier, later) node ids [P_f] of every nested pair of two frames, in the module's
    order (the same for every pair of consecutive frames)."""
    pyramid = merger.pyramid
    sizes = pyramid.sizes
    counts = [h * w for h, w in sizes]
    offsets = [sum(counts[:l]) for l in range(len(counts))]
    device = pyramid.levels[0].device
    earlier, later = [], []
    for la in range(len(sizes)):
        for lb in range(len(sizes)):
            fine = max(la, lb)
            h, w = sizes[fine]
            i = torch.arange(h, device=device)[:, None].expand(h, w).flatten()
            j = torch.arange(w, device=device)[None, :].expand(h, w).flatten()
            for level, out in ((la, earlier), (lb, later)):
                ai, aj = _ancestor(pyramid.rows, fine, level, i), _ancestor(pyramid.cols, fine, level, j)
                out.append(offsets[level] + ai * sizes[level][1] + aj)
    return torch.cat(earlier), torch.cat(later)


def _ancestor(axis, level: int, up_to: int, index: Tensor) -> Tensor:
    """Index at level `up_to` (<= level) of the ancestor of nodes `index` of `level` on one
    axis (parent links, one level at a time)."""
    for l in range(level, up_to, -1):
        index = axis.parent[l][index]
    return index


__all__ = ["MergeEvidence", "merge_evidence", "nested_pairs"]
