"""The baselines STTM is compared with, at the same budget."""
import pytest
import torch

from sttm_core import STTMConfig, reduce_tokens
from sttm_core.baselines import drop_by_attention, uniform_pooling
from support.invariants import check_bookkeeping
from support.videos import smooth_features

pytestmark = pytest.mark.core


@pytest.mark.parametrize("grid", [(14, 14), (13, 13), (12, 20), (3, 5)])
@pytest.mark.parametrize("budget", [0.5, 0.3, 0.15])
def test_uniform_pooling_tiles_frames_near_the_budget(grid, budget):
    x = smooth_features(3, *grid, 6, seed=1)
    r = uniform_pooling(x, budget)
    check_bookkeeping(x, r)
    assert abs(r.keep_ratio - budget) < 0.1
    for n in range(r.num_tokens):  # each token is the plain mean of its patches
        mask = r.token_map == n
        torch.testing.assert_close(r.features[n], x[mask].mean(0))


def test_uniform_pooling_keeps_the_aspect_ratio():
    r = uniform_pooling(torch.randn(2, 14, 14, 4), 0.5)
    heights = r.boxes[:, 3] - r.boxes[:, 1]
    widths = r.boxes[:, 4] - r.boxes[:, 2]
    assert (heights.float().mean() - widths.float().mean()).abs() < 0.2  # 10x10, not 7x14


def test_fastv_keeps_the_most_attended_patches_in_order():
    x = torch.randn(2, 4, 4, 8)
    attention = torch.rand(2, 4, 4)
    r = drop_by_attention(x, attention, 0.25)
    assert r.num_tokens == 8
    kept = r.token_map.flatten() >= 0
    assert attention.flatten()[kept].min() >= attention.flatten()[~kept].max()
    torch.testing.assert_close(r.features, x.reshape(-1, 8)[kept])
    assert (r.token_map.flatten()[kept] == torch.arange(8)).all()  # raster order kept


@pytest.mark.parametrize("method", ["spatial_only", "temporal_only", "uniform"])
def test_config_runs_each_baseline_at_its_budget(method):
    x = smooth_features(6, 14, 14, 16, seed=2, noise=0.9, drift=0.6)
    r = reduce_tokens(x, STTMConfig(keep_ratio=0.3, method=method))
    assert abs(r.keep_ratio - 0.3) <= (0.02 if method == "uniform" else 0.01)
    check_bookkeeping(x, r)
    with pytest.raises(ValueError, match="keeps a token budget"):
        STTMConfig(method=method)
