"""merge_video_tokens gives the tokens of the simple reference (recursive quadtree, union-find)."""
import pytest
import torch

from support.reference import level_sizes, reference_merge
from sttm_core import merge_video_tokens
from support.videos import smooth_features

pytestmark = pytest.mark.core


GRIDS = [(14, 14), (13, 13), (27, 27), (12, 20), (36, 64), (7, 5), (1, 6), (3, 1), (1, 1)]


def assert_same_tokens(result, expected, atol=1e-5):
    assert torch.equal(result.boxes, expected["boxes"])
    assert torch.equal(result.num_patches, expected["num_patches"])
    torch.testing.assert_close(result.features.float(), expected["features"], atol=atol, rtol=0)


@pytest.mark.parametrize("grid", GRIDS, ids=lambda g: f"{g[0]}x{g[1]}")
def test_every_root_level_matches_reference(grid):
    H, W = grid
    T = 2 if H * W > 500 else 4
    x = smooth_features(T, H, W, 8, seed=H * 100 + W)
    for root in range(len(level_sizes(H, W))):
        for tau_s, tau_t in [(0.8, 0.6), (0.6, 0.4)]:
            result = merge_video_tokens(x, tau_s, tau_t, root)
            assert_same_tokens(result, reference_merge(x, tau_s, tau_t, root))


@pytest.mark.parametrize("mode", ["official", "components", "best_match"])
@pytest.mark.parametrize("seed", range(4))
def test_temporal_modes_match_reference(mode, seed):
    x = smooth_features(6, 8, 8, 8, seed=seed, noise=0.25)
    for tau_s, tau_t in [(0.85, 0.5), (0.7, 0.3), (0.9, 0.7)]:
        result = merge_video_tokens(x, tau_s, tau_t, 1, temporal_mode=mode)
        assert_same_tokens(result, reference_merge(x, tau_s, tau_t, 1, mode))


def test_modes_differ_where_official_union_find_stops_early():
    """The official union-find leaves some similar pairs split; 'components' merges them."""
    counts = {}
    for mode in ("official", "components"):
        counts[mode] = sum(merge_video_tokens(smooth_features(8, 14, 14, 16, seed=s), 0.8, 0.6, 1,
                                              temporal_mode=mode).num_tokens for s in range(6))
    assert counts["components"] < counts["official"]


def test_single_frame_and_disabled_merges():
    x = smooth_features(1, 13, 13, 8, seed=3)
    assert_same_tokens(merge_video_tokens(x, 0.8, 0.6, 1), reference_merge(x, 0.8, 0.6, 1))
    x = smooth_features(5, 9, 11, 8, seed=4)
    assert_same_tokens(merge_video_tokens(x, 1.5, 0.6, 0), reference_merge(x, 1.5, 0.6, 0))
    assert_same_tokens(merge_video_tokens(x, 0.7, None, 0), reference_merge(x, 0.7, None, 0))


def test_area_weighted_and_head_averaged_options():
    x = smooth_features(4, 13, 10, 8, seed=5)
    weighted = merge_video_tokens(x, 0.75, 0.5, 0, area_weighted=True)
    assert_same_tokens(weighted, reference_merge(x, 0.75, 0.5, 0, area_weighted=True))
    plain = merge_video_tokens(x, 0.75, 0.5, 0)
    assert not torch.allclose(weighted.features[: plain.num_tokens].float(),
                              plain.features[: weighted.num_tokens].float())
    # per-head similarity: one head of the whole width is the plain cosine
    assert_same_tokens(merge_video_tokens(x, 0.75, 0.5, 0, head_dim=8), reference_merge(x, 0.75, 0.5, 0))
    per_head = merge_video_tokens(x, 0.75, 0.5, 0, head_dim=2)
    assert per_head.num_patches.sum() == x.shape[:3].numel()


def test_low_precision_inputs_keep_their_dtype():
    x = smooth_features(4, 14, 14, 16, seed=6)
    full = merge_video_tokens(x, 0.8, 0.6, 1)
    for dtype in (torch.bfloat16, torch.float16):
        low = merge_video_tokens(x.to(dtype), 0.8, 0.6, 1)
        assert low.features.dtype == dtype
        assert low.num_patches.sum() == 4 * 14 * 14
        # rounding may flip a borderline decision, not the overall result
        assert abs(low.num_tokens - full.num_tokens) <= 0.05 * full.num_tokens
