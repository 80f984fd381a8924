"""merge_like: other features of a video merged into the tokens a merge chose (Qwen3-VL's
DeepStack features join the hidden states after the merge layer), checked against the simple
recursive reference quadtree."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sttm_core import STTMConfig, merge_video_tokens, reduce_tokens
from sttm_core.merge import merge_like
from support.reference import FrameTree, reference_merge_like
from support.videos import smooth_features

pytestmark = pytest.mark.core

videos = st.builds(
    smooth_features,
    T=st.integers(1, 4), H=st.integers(1, 9), W=st.integers(1, 9), C=st.just(5),
    seed=st.integers(0, 10_000), noise=st.sampled_from([0.05, 0.3, 1.0]))
taus = st.floats(-1.0, 1.0)
modes = st.sampled_from(["official", "components", "best_match"])


@settings(max_examples=50, deadline=None)
@given(x=videos, tau_s=taus, tau_t=st.none() | taus, root=st.integers(0, 3), mode=modes,
       area_weighted=st.booleans(), keep_every_frame=st.booleans(), seed=st.integers(0, 99))
def test_other_features_merge_as_the_reference_quadtree_pools_them(
        x, tau_s, tau_t, root, mode, area_weighted, keep_every_frame, seed):
    r = merge_video_tokens(x, tau_s, tau_t, min(root, len(FrameTree(x[0]).sizes) - 1),
                           temporal_mode=mode, area_weighted=area_weighted,
                           keep_every_frame=keep_every_frame)
    other = torch.randn(*x.shape[:3], 3, generator=torch.Generator().manual_seed(seed))
    got = merge_like(r, other, area_weighted=area_weighted)
    assert got.shape == (r.num_tokens, 3) and got.dtype == other.dtype
    torch.testing.assert_close(got.double(), reference_merge_like(r, other, area_weighted),
                               rtol=1e-5, atol=1e-5)
    # the merge's own features come out again, and the merge is linear once its tokens are set
    torch.testing.assert_close(merge_like(r, x, area_weighted=area_weighted), r.features)
    both = merge_like(r, torch.cat([x, other], -1), area_weighted=area_weighted)
    torch.testing.assert_close(both, torch.cat([r.features, got], -1))


@pytest.mark.parametrize("method", ["uniform", "fastv", "spatial_only", "temporal_only"])
def test_baselines_merge_other_features_into_their_tokens(method):
    x = smooth_features(4, 7, 9, 6, seed=2)
    attention = torch.rand(4, 7, 9, generator=torch.Generator().manual_seed(0))
    r = reduce_tokens(x, STTMConfig(method=method, keep_ratio=0.3), attention)
    torch.testing.assert_close(merge_like(r, x), r.features)
    other = torch.randn(4, 7, 9, 2, dtype=torch.bfloat16)
    expected = torch.stack([other.flatten(0, 2).float()[r.token_map.flatten() == n].mean(0)
                            for n in range(r.num_tokens)])
    if method in ("uniform", "fastv"):  # plain means over each token's patches
        torch.testing.assert_close(merge_like(r, other).float(), expected, rtol=1e-2, atol=1e-2)


def test_features_on_another_grid_are_refused():
    r = merge_video_tokens(smooth_features(2, 4, 4, 3), 0.8, 0.6, 0)
    with pytest.raises(ValueError, match=r"do not lie on the merge's grid \(2, 4, 4\)"):
        merge_like(r, torch.zeros(2, 4, 5, 3))
