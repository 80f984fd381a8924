"""Invariants of any merge: tiling, bookkeeping, monotonicity, identity when disabled."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sttm_core import VideoTokenMerger, merge_video_tokens
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
