"""keep_every_frame: no frame of the token grid loses all its tokens to earlier frames (models
that write a timestamp before each frame's tokens, Qwen3-VL, need a token after each)."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sttm_core import STTMConfig, VideoTokenMerger, merge_video_tokens, reduce_tokens
from sttm_core.baselines import drop_by_attention
from sttm_core.budget import thresholds_for_budget
from support.invariants import check_bookkeeping
from support.videos import smooth_features

pytestmark = pytest.mark.core

videos = st.builds(
    smooth_features,
    T=st.integers(1, 5), H=st.integers(1, 9), W=st.integers(1, 9), C=st.integers(1, 6),
    seed=st.integers(0, 10_000), noise=st.sampled_from([0.02, 0.3, 1.0]),
    drift=st.sampled_from([0.0, 0.05, 0.2]))
taus = st.floats(-1.0, 1.0)
modes = st.sampled_from(["official", "components", "best_match"])


def frames_with_a_token(r):
    """Frames in which some token first occurs (its representative lies there)."""
    return set(r.boxes[:, 0].tolist())


@settings(max_examples=80, deadline=None)
@given(x=videos, tau_s=taus, tau_t=taus, root=st.integers(0, 3), mode=modes)
def test_every_frame_keeps_a_token_and_nothing_else_changes(x, tau_s, tau_t, root, mode):
    T = x.shape[0]
    root = min(root, VideoTokenMerger(x).num_levels - 1)
    plain = merge_video_tokens(x, tau_s, tau_t, root, temporal_mode=mode)
    kept = merge_video_tokens(x, tau_s, tau_t, root, temporal_mode=mode, keep_every_frame=True)
    assert frames_with_a_token(kept) == set(range(T))
    check_bookkeeping(x, kept, contiguous=False)  # a detached token can split a chain
    assert torch.equal(kept.spatial_boxes, plain.spatial_boxes)  # the spatial search is as is
    orphans = sorted(set(range(T)) - frames_with_a_token(plain))
    if not orphans:  # every frame already had a token of its own: identical
        assert torch.equal(kept.boxes, plain.boxes) and torch.equal(kept.token_map, plain.token_map)
        torch.testing.assert_close(kept.features, plain.features, rtol=0, atol=0)
        return
    # each orphan frame gets back exactly its first (top-left) spatial token, as its own token
    frame = plain.spatial_boxes[:, 0]
    first = [int((frame == t).nonzero()[0]) for t in orphans]
    expected = sorted(plain.boxes.tolist() + [plain.spatial_boxes[s].tolist() for s in first],
                      key=lambda b: (b[0], b[1], b[2]))
    assert kept.boxes.tolist() == expected
    alone = merge_video_tokens(x, tau_s, None, root)  # every spatial token as a token
    for s in first:
        token = int(kept.spatial_to_token[s])
        assert int((kept.spatial_to_token == token).sum()) == 1  # alone in its group
        torch.testing.assert_close(kept.features[token], alone.features[s], rtol=0, atol=0)
    # every other spatial token stays with the same companions
    others = torch.tensor([s for s in range(plain.num_spatial_tokens) if s not in first])
    a, b = plain.spatial_to_token[others], kept.spatial_to_token[others]
    assert torch.equal(a[:, None] == a[None], b[:, None] == b[None])


def test_a_static_video_keeps_one_token_per_frame():
    frame = smooth_features(1, 8, 8, 16, seed=3)
    video = frame.repeat(6, 1, 1, 1)  # nothing moves: every later token joins frame 0's
    plain = merge_video_tokens(video, 0.9, 0.5, 1)
    assert frames_with_a_token(plain) == {0}
    kept = merge_video_tokens(video, 0.9, 0.5, 1, keep_every_frame=True)
    assert kept.num_tokens == plain.num_tokens + 5
    t0, y0, x0, y1, x1 = plain.spatial_boxes[0].tolist()
    assert kept.boxes[-5:].tolist() == [[t, y0, x0, y1, x1] for t in range(1, 6)]
    assert kept.num_patches[-5:].tolist() == [(y1 - y0) * (x1 - x0)] * 5


@pytest.mark.parametrize("ratio", [0.5, 0.2, 0.05])
def test_budget_search_keeps_every_frame(ratio):
    video = smooth_features(1, 8, 8, 16, seed=4).repeat(8, 1, 1, 1)
    video = video + 0.01 * torch.randn_like(video)
    merger = VideoTokenMerger(video, keep_every_frame=True)
    choice = thresholds_for_budget(merger, ratio)
    assert frames_with_a_token(choice.result) == set(range(8))
    again = merger.merge(choice.spatial_threshold, choice.temporal_threshold, 1)
    assert torch.equal(again.boxes, choice.result.boxes)  # the search's merge is a plain merge


@pytest.mark.parametrize("method", ["sttm", "sttm_budget", "temporal_only", "fastv"])
def test_every_method_keeps_every_frame_when_asked(method):
    video = smooth_features(1, 6, 7, 8, seed=5).repeat(5, 1, 1, 1)
    attention = torch.zeros(5, 6, 7)
    attention[0] = torch.rand(6, 7) + 1  # all attention on frame 0: FastV would drop the rest
    budget = None if method == "sttm" else 0.03  # fewer tokens than frames
    config = STTMConfig(method=method, keep_ratio=budget, merge_layer=2,
                        **({"temporal_threshold": 0.3} if method == "sttm" else {}))
    r = reduce_tokens(video, config, attention if method == "fastv" else None,
                      keep_every_frame=True)
    assert frames_with_a_token(r) == set(range(5))
    plain = reduce_tokens(video, config, attention if method == "fastv" else None)
    assert frames_with_a_token(plain) != set(range(5))  # without it some frame is lost


@settings(max_examples=40, deadline=None)
@given(T=st.integers(1, 6), H=st.integers(1, 6), W=st.integers(1, 6),
       ratio=st.floats(0.01, 1.0), seed=st.integers(0, 1000))
def test_fastv_keeps_each_frames_best_patch_then_the_top_rest(T, H, W, ratio, seed):
    g = torch.Generator().manual_seed(seed)
    attention = torch.rand(T, H, W, generator=g)
    features = torch.randn(T, H, W, 3, generator=g)
    r = drop_by_attention(features, attention, ratio, keep_every_frame=True)
    n = max(T, max(1, round(ratio * T * H * W)))
    assert r.num_tokens == n
    kept = (r.token_map.flatten() >= 0).nonzero().flatten()
    best = {int(attention[t].argmax()) + t * H * W for t in range(T)}
    assert best <= set(kept.tolist())
    rest = [i for i in range(T * H * W) if i not in best]
    by_rank = sorted(rest, key=lambda i: -float(attention.flatten()[i]))[:n - T]
    assert set(kept.tolist()) == best | set(by_rank)
    assert frames_with_a_token(r) == set(range(T))
