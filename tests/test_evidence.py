"""Merge evidence: every similarity a threshold tests, computed once per video, must be exactly
what the merge compares (bit for bit), and list every nested pair once."""
import itertools

import pytest
import torch

from sttm_core import VideoTokenMerger
from sttm_core.evidence import merge_evidence
from support.videos import smooth_features

pytestmark = pytest.mark.core

GRIDS = [(3, 14, 14), (2, 7, 9), (3, 5, 3), (1, 6, 6), (2, 1, 1), (4, 2, 5)]
# where a batched matmul's bits could depend on the batch (cuBLAS), check there too
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def boxes_of(merger):
    """{node id: (level, y0, x0, y1, x1)} of one frame, from the pyramid's axes."""
    p, out, node = merger.pyramid, {}, 0
    for level, (h, w) in enumerate(p.sizes):
        for i, j in itertools.product(range(h), range(w)):
            out[node] = (level, int(p.rows.start[level][i]), int(p.cols.start[level][j]),
                         int(p.rows.end[level][i]), int(p.cols.end[level][j]))
            node += 1
    return out


@pytest.mark.parametrize("grid", GRIDS)
def test_pairs_are_every_nested_pair_once(grid):
    merger = VideoTokenMerger(smooth_features(*grid, C=4))
    ev = merge_evidence(merger)
    boxes = boxes_of(merger)
    listed = list(zip(ev.pair_earlier.tolist(), ev.pair_later.tolist()))
    assert len(listed) == len(set(listed))

    def nested(a, b):
        (_, *p), (_, *q) = boxes[a], boxes[b]
        inside = lambda u, v: u[0] >= v[0] and u[1] >= v[1] and u[2] <= v[2] and u[3] <= v[3]
        return inside(p, q) or inside(q, p)
    # every (node, node) pair whose boxes nest (within a level, a node partition tiles the
    # frame, so nesting means ancestry; two levels may hold one box, as distinct nodes)
    expected = {(a, b) for a in boxes for b in boxes if nested(a, b)}
    assert set(listed) == expected
    assert ev.pair_similarity.shape == (grid[0] - 1, len(listed))


@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("device", DEVICES)
def test_child_similarities_are_what_the_search_tests(grid, dtype, device):
    x = smooth_features(*grid, C=8, seed=3, dtype=dtype).to(device)
    merger = VideoTokenMerger(x)
    ev = merge_evidence(merger)
    for level, (h, w) in enumerate(ev.sizes[:-1]):
        everything = torch.ones(grid[0], h, w, dtype=torch.bool, device=device)
        searched = merger.pyramid.min_child_sim(level, everything)
        assert torch.equal(ev.min_child_similarity(level), searched)  # bit for bit
        # each present slot against an independent cosine of the node and that child
        parent, child = merger.pyramid.levels[level].float(), merger.pyramid.levels[level + 1].float()
        rows, cols, present = merger.pyramid.child_slots(
            level, torch.arange(h, device=device).repeat_interleave(w),
            torch.arange(w, device=device).repeat(h))
        assert torch.equal(present.view(h, w, 4), ev.child_present[level])
        for t, n, s in itertools.product(range(grid[0]), range(h * w), range(4)):
            i, j = divmod(n, w)
            want = torch.nn.functional.cosine_similarity(
                parent[t, i, j], child[t, rows[n, s], cols[n, s]], dim=0, eps=1e-8)
            assert float(ev.child_similarity[level][t, i, j, s]) == pytest.approx(float(want), abs=1e-5)


@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("device", DEVICES)
def test_pair_similarities_are_what_the_merge_tests(grid, device):
    x = smooth_features(*grid, C=8, seed=5, noise=0.5).to(device)
    merger = VideoTokenMerger(x)
    ev = merge_evidence(merger)
    index = {(a, b): k for k, (a, b) in enumerate(zip(ev.pair_earlier.tolist(),
                                                      ev.pair_later.tolist()))}
    for tau_s, root in itertools.product([-1.0, 0.5, 0.9, 0.99, 2.0], range(merger.num_levels)):
        spatial = merger.pyramid.tokens(merger.pyramid.search(tau_s, root))
        nodes = token_nodes(merger, tau_s, root)
        earlier, later, sim = merger.temporal_candidates(spatial)
        for e, l, s in zip(earlier.tolist(), later.tolist(), sim.tolist()):
            t, a = nodes[e]
            _, b = nodes[l]
            assert ev.pair_similarity[t, index[(a, b)]].item() == s  # bit for bit


def token_nodes(merger, tau_s, root):
    """[(t, node id)] of each spatial token of a search, in the merge's token order."""
    p = merger.pyramid
    kept = p.search(tau_s, root)
    offsets = [0]
    for h, w in p.sizes:
        offsets.append(offsets[-1] + h * w)
    found = []
    for level, mask in zip(range(p.num_levels - len(kept), p.num_levels), kept):
        for t, i, j in mask.nonzero().tolist():
            w = p.sizes[level][1]
            key = (t, int(p.rows.start[level][i]), int(p.cols.start[level][j]))
            found.append((key, (t, offsets[level] + i * w + j)))
    return [node for _, node in sorted(found)]
