"""τS intervals: a node is a token exactly when τS lies in its interval for the root level, so
filtering the intervals gives the search's tokens, bit for bit, in the engine's order."""
import random

import pytest
import torch

from sttm_core import VideoTokenMerger
from sttm_core.decisions import spatial_intervals
from sttm_core.evidence import merge_evidence
from support.videos import smooth_features

pytestmark = pytest.mark.core

GRIDS = [(3, 14, 14), (2, 7, 9), (3, 5, 3), (1, 6, 6), (2, 1, 1), (4, 2, 5), (5, 11, 6),
         (2, 3, 16)]
TAUS_S = [-1.0, 0.3, 0.8, 0.95, 0.99, 1.0, 1.0 + 1e-9, 1.5, None]


def edges(ev, seed):
    """τS right at some child similarities (and a hair either side, which fp32 rounds back)."""
    rng = random.Random(seed)
    sims = torch.cat([torch.zeros(0)] + [c.flatten() for c in ev.child_similarity])
    picked = [float(sims[rng.randrange(len(sims))]) for _ in range(8)] if len(sims) else []
    return [v + d for v in picked for d in (0.0, 1e-9, -1e-9)]


def searched(merger, tau_s, root):
    """[T, M] the nodes the engine's search keeps, in evidence node ids."""
    masks = merger.pyramid.search(tau_s, root)
    T = merger.pyramid.grid[0]
    above = [torch.zeros(T, h * w, dtype=torch.bool) for h, w in merger.pyramid.sizes[:root]]
    return torch.cat(above + [m.flatten(1) for m in masks], 1)


@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_interval_filter_is_the_search(grid, dtype):
    merger = VideoTokenMerger(smooth_features(*grid, C=12, seed=sum(grid), noise=0.4, dtype=dtype))
    ev = merge_evidence(merger)
    intervals = spatial_intervals(ev)
    for tau_s in TAUS_S + edges(ev, seed=grid[1]):
        for root in range(merger.num_levels):
            assert torch.equal(intervals.tokens(tau_s, root), searched(merger, tau_s, root)), \
                (tau_s, root)


@pytest.mark.parametrize("grid", GRIDS)
def test_order_lists_tokens_as_the_engine_does(grid):
    """Tokens taken in `order`, frame by frame, are the engine's spatial boxes in its order."""
    merger = VideoTokenMerger(smooth_features(*grid, C=8, seed=2))
    intervals = spatial_intervals(merge_evidence(merger))
    for tau_s in (0.5, 0.9, 0.99, None):
        for root in range(merger.num_levels):
            mask = intervals.tokens(tau_s, root)[:, intervals.order]  # [T, M] in order
            t, k = mask.nonzero(as_tuple=True)
            boxes = torch.cat([t[:, None], intervals.box[intervals.order[k]]], 1)
            want = merger.merge(tau_s, None, root).spatial_boxes
            assert torch.equal(boxes, want), (tau_s, root)


def test_geometry_is_the_pyramids():
    merger = VideoTokenMerger(smooth_features(2, 7, 9, C=4))
    intervals = spatial_intervals(merge_evidence(merger))
    p = merger.pyramid
    offsets = intervals.offsets
    for node in range(offsets[-1]):
        level = int(intervals.level[node])
        i, j = divmod(node - offsets[level], p.sizes[level][1])
        box = [p.rows.start[level][i], p.cols.start[level][j], p.rows.end[level][i],
               p.cols.end[level][j]]
        assert intervals.box[node].tolist() == [int(v) for v in box]
        parent = int(intervals.parent[node])
        if level == 0:
            assert parent == -1
        else:
            pi, pj = int(p.rows.parent[level][i]), int(p.cols.parent[level][j])
            assert parent == offsets[level - 1] + pi * p.sizes[level - 1][1] + pj

