"""Joint octree merging (the paper's Table 6): the pyramid's geometry, hand-computed cases, the
MergeResult's invariants, the budget and keep_every_frame, the sweep's table and a tiny model."""
import pytest
import torch

from sttm_core import STTMConfig, merge_video_tokens, reduce_tokens
from sttm_core.octree import OctreePyramid, octree_for_budget, octree_merge, octree_sizes
from support.invariants import check_bookkeeping
from support.videos import smooth_features

E0, E1 = [1.0, 0.0], [0.0, 1.0]


def groups(result) -> list[list[tuple]]:
    """Each token's patches as (t, y, x), tokens in order."""
    return [[tuple(p) for p in (result.token_map == n).nonzero().tolist()]
            for n in range(result.num_tokens)]


@pytest.mark.core
def test_octree_sizes_halve_every_side_down_to_one_node():
    assert octree_sizes(8, 14, 14) == [(1, 1, 1), (1, 2, 2), (2, 4, 4), (4, 7, 7), (8, 14, 14)]
    assert octree_sizes(3, 1, 5) == [(1, 1, 1), (1, 1, 2), (2, 1, 3), (3, 1, 5)]
    assert octree_sizes(1, 1, 1) == [(1, 1, 1)]


@pytest.mark.core
def test_odd_sides_pool_their_first_frame_row_and_column_alone():
    x = torch.arange(3 * 3 * 1, dtype=torch.float32).view(3, 3, 1, 1) + 1  # [T=3, H=3, W=1, 1]
    pyramid = OctreePyramid(x)
    assert pyramid.sizes == [(1, 1, 1), (2, 2, 1), (3, 3, 1)]
    # frame 0 and row 0 are the partial blocks: node (0, 0) is the leaf (0, 0) alone
    torch.testing.assert_close(pyramid.levels[1][..., 0, 0],
                               torch.tensor([[1.0, 2.5], [5.5, 7.0]]))  # (4+7)/2, (5+6+8+9)/4
    assert pyramid.area(1)[..., 0].tolist() == [[1, 2], [2, 4]]
    # plain mean of the children (not of the patches), or by patch count with area_weighted
    assert float(pyramid.levels[0]) == pytest.approx((1 + 2.5 + 5.5 + 7.0) / 4)
    assert float(OctreePyramid(x, area_weighted=True).levels[0]) == pytest.approx(5.0)


@pytest.mark.core
def test_by_hand_identical_frames_collapse_and_different_ones_do_not():
    same = torch.ones(2, 2, 2, 2)  # T = H = W = 2, every patch alike: one token at any tau
    r = octree_merge(OctreePyramid(same), 0.99, 0)
    assert r.num_tokens == 1 and r.num_patches.tolist() == [8]
    # identical frames of E0 / E1 patches: the root's mean is cos 0.7071 to each child
    x = torch.tensor([[[E0, E1], [E1, E0]]] * 2)  # [2, 2, 2, 2]
    pyramid = OctreePyramid(x)
    assert octree_merge(pyramid, 0.70, 0).num_tokens == 1
    r = octree_merge(pyramid, 0.71, 0)
    assert r.num_tokens == 8  # nothing merges: the joint tree cannot take time alone
    assert groups(r)[:2] == [[(0, 0, 0)], [(0, 0, 1)]]  # first frame, then top-left
    # the decomposed merge does: a 2x2 grid has no quadtree, but the frames pair up in time
    assert merge_video_tokens(x, 0.71, 0.9, root_level=0).num_tokens == 4
    # all different: nothing merges
    y = torch.eye(8).view(2, 2, 2, 8)
    assert octree_merge(OctreePyramid(y), 0.5, 0).num_tokens == 8
    # odd T: frame 0 is its own block, frames 1 and 2 join
    z = torch.tensor([E0, E1, E1]).view(3, 1, 1, 2)
    assert groups(octree_merge(OctreePyramid(z), 0.9, 0)) == [[(0, 0, 0)], [(1, 0, 0), (2, 0, 0)]]


@pytest.mark.core
@pytest.mark.parametrize("shape", [(8, 14, 14), (7, 13, 9), (5, 6, 11), (1, 14, 14), (9, 1, 7)])
@pytest.mark.parametrize("smooth", [True, False])
def test_invariants_hold_on_any_grid(shape, smooth):
    T, H, W = shape
    x = (smooth_features(T, H, W, 8, seed=1) if smooth
         else torch.randn(T, H, W, 8, generator=torch.Generator().manual_seed(0)))
    pyramid = OctreePyramid(x)
    for tau in (-1.0, 0.5, 0.8, 0.95, None):
        for root in range(pyramid.num_levels):
            r = octree_merge(pyramid, tau, root)
            check_bookkeeping(x, r, contiguous=True)  # octree tokens are boxes: no gaps
            assert r.num_tokens == pyramid.count(tau, root)
            for n in range(0, r.num_tokens, 11):  # each token the plain mean of its patches
                torch.testing.assert_close(r.features[n], x[r.token_map == n].mean(0))
    counts = [pyramid.count(tau, 0) for tau in (-1.0, 0.5, 0.8, 0.95, None)]
    assert counts == sorted(counts)  # a higher tau never keeps fewer tokens
    assert octree_merge(pyramid, None, 0).num_tokens == T * H * W


@pytest.mark.core
@pytest.mark.parametrize("budget", [0.5, 0.3, 0.15])
@pytest.mark.parametrize("shape", [(8, 14, 14), (7, 13, 9), (16, 27, 48)])
def test_the_budget_is_reached(budget, shape):
    x = smooth_features(*shape, 16, seed=3, noise=0.9, drift=0.6)
    r = reduce_tokens(x, STTMConfig(method="octree", keep_ratio=budget))
    assert r.method == "octree" and abs(r.keep_ratio - budget) <= 0.01
    check_bookkeeping(x, r)
    assert -1 <= r.spatial_threshold <= 1  # the bisected tau, reported
    # a constant video: every node alike, the count jumps from the roots to every patch
    flat = torch.ones(*shape, 4)
    assert abs(reduce_tokens(flat, STTMConfig(method="octree", keep_ratio=budget)).keep_ratio
               - budget) <= 0.01


@pytest.mark.core
def test_below_the_roots_keeps_them_and_all_keeps_everything():
    x = smooth_features(8, 14, 14, 8, seed=0)
    pyramid = OctreePyramid(x)
    assert pyramid.sizes[2] == (2, 4, 4)
    assert octree_for_budget(pyramid, 0.001, 2).num_tokens == 2 * 4 * 4
    assert octree_for_budget(pyramid, 0.001, 0).num_tokens == 1
    assert octree_for_budget(pyramid, 1.0, 2).num_tokens == 8 * 14 * 14


@pytest.mark.core
def test_every_frame_keeps_a_token_when_asked():
    x = smooth_features(8, 6, 6, 8, seed=2, noise=0.01, drift=0.01)  # almost static
    r = reduce_tokens(x, STTMConfig(method="octree", keep_ratio=0.1))
    assert set(r.boxes[:, 0].tolist()) != set(range(8))  # tokens span frames
    r = reduce_tokens(x, STTMConfig(method="octree", keep_ratio=0.1), keep_every_frame=True)
    assert set(r.boxes[:, 0].tolist()) == set(range(8))
    check_bookkeeping(x, r, contiguous=False)


@pytest.mark.core
def test_head_dim_and_area_weights_reach_the_search():
    x = smooth_features(4, 7, 7, 8, seed=5)
    for config in (dict(head_dim=4), dict(area_weighted=True)):
        r = reduce_tokens(x, STTMConfig(method="octree", keep_ratio=0.3, **config))
        assert abs(r.keep_ratio - 0.3) <= 0.01
        check_bookkeeping(x, r)


@pytest.mark.core
def test_paper_table_6_on_pixels(tmp_path, capsys):
    from sttm_core import sweep
    from test_sweep import PIXEL, QA, assert_png, read

    out = tmp_path / "out"
    assert sweep.main([str(QA), *PIXEL, "--paper-table", "6", "--out", str(out)]) == 0
    cells = read(out / "table6.csv")
    assert [(c["method"], c["column"]) for c in cells] == [
        ("sttm_budget", "50%"), ("sttm_budget", "30%"), ("octree", "50%"), ("octree", "30%")]
    for cell in cells:
        assert abs(float(cell["keep_ratio"]) - float(cell["budget"])) <= 0.01
    assert_png(out / "table6.png")
    assert "Table 6: Decomposed vs joint" in capsys.readouterr().out


@pytest.mark.model
@torch.no_grad()
def test_octree_in_a_model_keeps_its_budget_and_finite_logits(tiny):
    from support.model_inputs import prompt_inputs
    from support.videos import random_frames
    from sttm_core.models import patch, unpatch

    model = tiny.model
    inputs, _ = prompt_inputs(tiny, random_frames())
    patch(model, STTMConfig(method="octree", keep_ratio=0.3))
    logits = model(**inputs).logits
    merge = model.sttm.last_merge
    T, H, W = merge.grid  # a tiny grid: one split (<= 7 tokens) is several percent of it;
    # Qwen3-VL gives frames left without a token of their own one back (up to T more)
    assert merge.method == "octree" and abs(merge.num_tokens - round(0.3 * T * H * W)) <= 7 + T
    assert torch.isfinite(logits).all()
    unpatch(model)
