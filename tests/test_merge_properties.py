"""Invariants of any merge: tiling, bookkeeping, monotonicity, identity when disabled."""
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from sttm_core import VideoTokenMerger, merge_video_tokens
from sttm_core.quadtree import cosine_to_each
from support.invariants import check_bookkeeping
from support.videos import smooth_features

pytestmark = pytest.mark.core

videos = st.builds(
    smooth_features,
    T=st.integers(1, 4), H=st.integers(1, 11), W=st.integers(1, 11), C=st.integers(1, 6),
    seed=st.integers(0, 10_000), noise=st.sampled_from([0.05, 0.3, 1.0]))
taus = st.floats(-1.0, 1.0)
modes = st.sampled_from(["official", "components", "best_match"])


@settings(max_examples=60, deadline=None)
@given(x=videos, tau_s=taus, tau_t=st.none() | taus, root=st.integers(0, 3), mode=modes)
def test_bookkeeping(x, tau_s, tau_t, root, mode):
    merger = VideoTokenMerger(x)
    r = merger.merge(tau_s, tau_t, min(root, merger.num_levels - 1), mode)
    # the official union-find can put frames t and t+2 in one group without t+1
    check_bookkeeping(x, r, contiguous=mode != "official")
    assert r.num_tokens <= r.num_spatial_tokens <= x.shape[:3].numel()


@settings(max_examples=40, deadline=None)
@given(x=videos, a=taus, b=taus, root=st.integers(0, 3))
def test_fewer_tokens_as_thresholds_fall(x, a, b, root):
    lo, hi = sorted([a, b])
    merger = VideoTokenMerger(x)
    root = min(root, merger.num_levels - 1)
    # spatial: a lower tauS only coarsens the partition
    assert merger.merge(lo, None, root).num_tokens <= merger.merge(hi, None, root).num_tokens
    # temporal, for a fixed spatial partition: a lower tauT only adds merged pairs
    for mode in ("components", "best_match"):
        assert (merger.merge(0.8, lo, root, mode).num_tokens
                <= merger.merge(0.8, hi, root, mode).num_tokens)


@settings(max_examples=30, deadline=None)
@given(x=videos, repeats=st.integers(2, 5), tau_s=taus, mode=modes)
def test_identical_frames_collapse_in_time(x, repeats, tau_s, mode):
    video = x[:1].repeat(repeats, 1, 1, 1)
    r = merge_video_tokens(video, tau_s, 0.99, 0, temporal_mode=mode)
    one_frame = merge_video_tokens(video[:1], tau_s, None, 0)
    assert r.num_tokens == one_frame.num_tokens
    assert torch.equal(r.boxes, one_frame.boxes)
    assert (r.frame_span == torch.tensor([0, repeats - 1])).all()
    torch.testing.assert_close(r.features, one_frame.features)


@settings(max_examples=30, deadline=None)
@given(x=videos, root=st.integers(0, 3))
def test_disabled_merge_is_identity(x, root):
    T, H, W, C = x.shape
    merger = VideoTokenMerger(x)
    r = merger.merge(1.01, None, min(root, merger.num_levels - 1))
    assert torch.equal(r.features, x.reshape(-1, C))
    assert torch.equal(r.token_map.flatten(), torch.arange(T * H * W))
    assert (r.num_patches == 1).all() and r.keep_ratio == 1.0


def test_merger_reuses_its_pyramid_across_settings():
    x = smooth_features(3, 14, 14, 8, seed=1)
    merger = VideoTokenMerger(x)
    assert merger.level_sizes == [(2, 2), (4, 4), (7, 7), (14, 14)]
    for root in range(4):
        for tau_s, tau_t in [(0.9, 0.7), (0.6, None)]:
            a = merger.merge(tau_s, tau_t, root)
            b = merge_video_tokens(x, tau_s, tau_t, root)
            assert torch.equal(a.boxes, b.boxes) and torch.equal(a.features, b.features)


# --- scale: cosine similarity has none, so neither may the merge ------------------------------

def all_similarities(x, tau_s, root):
    """Every similarity a merge of x at (tau_s, root) compares with a threshold: each node's
    minimum over its children (all levels) and each nested pair of consecutive frames."""
    merger = VideoTokenMerger(x)
    pyramid = merger.pyramid
    spatial = [pyramid.min_child_sim(level, torch.ones(x.shape[0], *pyramid.sizes[level],
                                                       dtype=torch.bool)).flatten()
               for level in range(pyramid.num_levels - 1)]
    temporal = merger.temporal_candidates(pyramid.tokens(pyramid.search(tau_s, root)))[2]
    return torch.cat(spatial + [temporal])


@settings(max_examples=40, deadline=None)
@given(x=videos, tau_s=st.floats(-0.9, 0.95), tau_t=st.floats(-0.9, 0.95), root=st.integers(0, 3),
       scale=st.sampled_from([1e-12, 1e-6, 1e6, 1e20]))
def test_merge_does_not_depend_on_the_features_scale(x, tau_s, tau_t, root, scale):
    root = min(root, VideoTokenMerger(x).num_levels - 1)
    # x * scale rounds each entry (relative error 6e-8), which may flip a similarity that sits
    # right at a threshold; away from those the tokens must be the same
    sims = all_similarities(x, tau_s, root)
    assume(not ((sims - tau_s).abs() < 1e-4).any() and not ((sims - tau_t).abs() < 1e-4).any())
    r = merge_video_tokens(x, tau_s, tau_t, root)
    scaled = merge_video_tokens(x * scale, tau_s, tau_t, root)
    assert torch.equal(scaled.boxes, r.boxes) and torch.equal(scaled.token_map, r.token_map)
    torch.testing.assert_close(scaled.features / scale, r.features, rtol=1e-5, atol=1e-6)


@settings(max_examples=30, deadline=None)
@given(x=videos, tau_s=taus, tau_t=st.none() | taus, power=st.sampled_from([-100, -40, 40, 100]))
def test_power_of_two_scale_gives_bit_identical_tokens(x, tau_s, tau_t, power):
    """2^k scales every fp32 operation exactly, so even threshold ties must come out the same."""
    scale = 2.0 ** power
    r = merge_video_tokens(x, tau_s, tau_t, 0)
    scaled = merge_video_tokens(x * scale, tau_s, tau_t, 0)
    assert torch.equal(scaled.boxes, r.boxes) and torch.equal(scaled.token_map, r.token_map)
    assert torch.equal(scaled.features, r.features * scale)


@settings(max_examples=40, deadline=None)
@given(T=st.integers(1, 4), H=st.integers(1, 11), W=st.integers(1, 11), C=st.integers(1, 8),
       seed=st.integers(0, 10_000), exponent=st.integers(-30, 30), root=st.integers(0, 3))
def test_constant_features_collapse_at_any_scale(T, H, W, C, seed, exponent, root):
    direction = torch.randn(C, generator=torch.Generator().manual_seed(seed))
    x = (direction * 10.0 ** exponent).expand(T, H, W, C).contiguous()
    merger = VideoTokenMerger(x)
    root = min(root, merger.num_levels - 1)
    h, w = merger.level_sizes[root]
    assert merger.merge(0.8, 0.6, root).num_tokens == h * w  # one token per root node


@pytest.mark.parametrize("scale", [1e-30, 1e-12, 1e-6, 1.0, 1e6, 1e20, 1e30])
@pytest.mark.parametrize("head_dim", [None, 4])
def test_cosine_is_scale_free_and_zero_vectors_give_zero(scale, head_dim):
    g = torch.Generator().manual_seed(0)
    items, refs = torch.randn(50, 4, 16, generator=g), torch.randn(50, 16, generator=g)
    items[3], refs[7] = 0, 0
    expected = torch.nn.functional.cosine_similarity(
        items.double().unflatten(-1, (-1, head_dim or 16)),
        refs.double().unflatten(-1, (-1, head_dim or 16))[:, None], dim=-1).mean(-1).float()
    got = cosine_to_each(items * scale, refs * scale, head_dim)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    assert (got[3] == 0).all() and (got[7] == 0).all()
