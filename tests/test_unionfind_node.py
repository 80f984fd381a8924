"""The page's union-find over τT (sttm_viz/web/unionfind.js, with merge.js's τS filter), run by
Node, gives exactly the tokens of merge_video_tokens: the same spatial boxes, token of each box,
token boxes, patch counts and token map, over many videos and settings: odd and non-square
grids, one frame, thresholds right at a similarity, keep_every_frame. Never skipped: without
Node it fails, saying what to install."""
import itertools
import random
from pathlib import Path

import pytest
import torch

from sttm_core import VideoTokenMerger
from sttm_core.evidence import merge_evidence
from sttm_viz.payload import evidence_json
from support.node import NODE, merge_all_node
from support.videos import smooth_features

pytestmark = pytest.mark.core

GRIDS = [(3, 14, 14), (2, 7, 9), (3, 5, 3), (1, 6, 6), (2, 1, 1), (4, 2, 5), (5, 11, 6),
         (2, 3, 16), (6, 4, 4)]
TAUS_S = [-1.0, 0.5, 0.8, 0.95, 1.0, 1.5, None]
TAUS_T = [None, -1.0, 0.3, 0.6, 0.9, 0.99]


@pytest.fixture(scope="module", autouse=True)
def node():
    if not Path(NODE).exists():
        pytest.fail("needs Node.js to run the page's union-find: apt-get install nodejs "
                    "(.ci/run installs it)")


def expected(merger, tau_s, tau_t, root):
    r = merger.merge(tau_s, tau_t, root)
    return {"spatial_boxes": r.spatial_boxes.flatten().tolist(),
            "spatial_to_token": r.spatial_to_token.tolist(), "boxes": r.boxes.flatten().tolist(),
            "num_patches": r.num_patches.tolist(), "token_map": r.token_map.flatten().tolist()}


def at_the_edge(values, seed, n=3):
    """Thresholds equal to some of these similarities (as doubles and a hair either side, which
    float32 rounds back): where a comparison in the wrong precision would differ."""
    rng = random.Random(seed)
    picked = [float(values[rng.randrange(len(values))]) for _ in range(n)] if len(values) else []
    return [v + d for v in picked for d in (0.0, 1e-9, -1e-9)]


def check(merger, settings):
    got = merge_all_node(evidence_json(merge_evidence(merger)), settings)
    assert len(got) == len(settings)
    for setting, page_tokens in zip(settings, got):
        assert page_tokens == expected(merger, *setting), setting


@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_node_merge_equals_merge_video_tokens(grid, dtype):
    merger = VideoTokenMerger(smooth_features(*grid, C=12, seed=sum(grid), noise=0.4, drift=0.1,
                                              dtype=dtype))
    ev = merge_evidence(merger)
    child = torch.cat([torch.zeros(0)] + [c.flatten() for c in ev.child_similarity])
    settings = list(itertools.product(
        TAUS_S + at_the_edge(child, seed=grid[1]),
        TAUS_T + at_the_edge(ev.pair_similarity.flatten(), seed=grid[2]),
        range(merger.num_levels)))
    check(merger, settings)


def test_node_keeps_every_frame_as_the_engine_does():
    """keep_every_frame (Qwen3-VL's rule): a frame left without a token of its own gets its
    first one back, as in the engine; some settings here would lose a frame without it."""
    changed = 0
    for grid, seed in [((6, 7, 9), 1), ((4, 5, 3), 2), ((5, 1, 2), 3), ((3, 6, 6), 4)]:
        x = smooth_features(*grid, C=8, seed=seed, noise=0.05, drift=0.02)
        x = torch.cat([x[:1].repeat(2, 1, 1, 1), x])  # two identical frames first
        merger = VideoTokenMerger(x, keep_every_frame=True)
        settings = [(s, t, r) for s in (0.5, 0.9, 1.0, None) for t in (0.2, 0.7, 0.99, 1.0)
                    for r in range(merger.num_levels)]
        check(merger, settings)
        plain = VideoTokenMerger(x)
        changed += sum(expected(merger, *s) != expected(plain, *s) for s in settings)
    assert changed


def test_node_merge_on_a_long_video():
    """32 frames x 14x14 with strong temporal redundancy: long chains, many merged pairs, the
    official union-find's early stop."""
    merger = VideoTokenMerger(smooth_features(32, 14, 14, C=16, seed=7, noise=0.1, drift=0.05))
    check(merger, [(s, t, r) for s in (0.7, 0.9, 0.97) for t in (0.5, 0.8, 0.95) for r in (0, 1, 3)])
