"""Automatic thresholds for a token budget."""
import pytest
import torch

from sttm_core import (METHODS, OFF, STTMConfig, VideoTokenMerger, merge_video_tokens,
                       reduce_tokens, thresholds_for_budget)
from support.videos import smooth_features

pytestmark = pytest.mark.core


@pytest.mark.parametrize("target", [0.5, 0.3, 0.15])
@pytest.mark.parametrize("mode", ["official", "components", "best_match"])
def test_lands_within_one_point_in_a_handful_of_merges(target, mode):
    x = smooth_features(16, 14, 14, 32, seed=2, noise=0.9, drift=0.6)
    choice = thresholds_for_budget(x, target, temporal_mode=mode)
    assert choice.reached, choice.reason
    assert abs(choice.keep_ratio - target) <= 0.01
    assert choice.merges <= 4
    # the thresholds it reports give the same merge when used directly
    again = merge_video_tokens(x, choice.spatial_threshold, choice.temporal_threshold, 1,
                               temporal_mode=mode)
    assert torch.equal(again.boxes, choice.result.boxes)
    assert again.keep_ratio == choice.keep_ratio


def test_splits_the_budget_between_space_and_time():
    x = smooth_features(16, 14, 14, 32, seed=3, noise=0.9, drift=0.6)
    even = thresholds_for_budget(x, 0.3)
    space_heavy = thresholds_for_budget(x, 0.3, spatial_share=0.9)
    assert even.reached and space_heavy.reached
    assert space_heavy.result.spatial_keep_ratio < even.result.spatial_keep_ratio
    # each side cuts about sqrt(0.3) ~ 0.55 at the default even split
    assert abs(even.result.spatial_keep_ratio - 0.3 ** 0.5) < 0.1


def test_spatial_only_budget_and_single_frame():
    x = smooth_features(4, 14, 14, 16, seed=4, noise=0.5)
    choice = thresholds_for_budget(x, 0.4, temporal=False)
    assert choice.temporal_threshold is OFF and choice.reached
    assert choice.result.num_tokens == choice.result.num_spatial_tokens
    single = thresholds_for_budget(x[:1], 0.3)  # one frame: space takes the whole budget
    assert single.temporal_threshold is OFF and single.reached
    assert abs(single.keep_ratio - 0.3) <= 0.01
    # from a 2x2 root a 4x4 grid has 4, 7, 10, 13 or 16 tokens: 30% cannot be met, and says so
    steps = thresholds_for_budget(x[:1, :4, :4], 0.3, root_level=0)
    assert not steps.reached and "moves in steps" in steps.reason
    assert steps.keep_ratio in (4 / 16, 7 / 16)


def test_reuses_a_merger_and_reports_unreachable_targets():
    x = smooth_features(8, 14, 14, 16, seed=5, noise=0.5)
    merger = VideoTokenMerger(x)
    coarsest = merger.merge(-1.0, -1.0, 1).keep_ratio
    choice = thresholds_for_budget(merger, coarsest / 4, tolerance=0.001)
    assert not choice.reached
    assert "fewest tokens reachable at root_level=1" in choice.reason
    assert choice.keep_ratio == pytest.approx(coarsest)
    full = thresholds_for_budget(merger, 1.0)
    assert full.reached and full.keep_ratio == 1.0


@pytest.mark.parametrize("kwargs, message", [
    (dict(keep_ratio=0), "keep_ratio=0 must be a number in \\(0, 1\\]"),
    (dict(keep_ratio=1.5), "keep_ratio=1.5"),
    (dict(keep_ratio="half"), "keep_ratio='half'"),
    (dict(keep_ratio=0.3, tolerance=-0.1), "tolerance"),
    (dict(keep_ratio=0.3, spatial_share=2), "spatial_share"),
    (dict(keep_ratio=0.3, root_level=9), "root_level=9 is out of range"),
])
def test_bad_budget_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        thresholds_for_budget(torch.randn(2, 4, 4, 8), **kwargs)


def test_config_applies_thresholds_or_budget():
    x = smooth_features(8, 14, 14, 16, seed=6, noise=0.9, drift=0.6)
    thresholds = reduce_tokens(x, STTMConfig(0.7, 0.5, 0))
    assert torch.equal(thresholds.boxes, merge_video_tokens(x, 0.7, 0.5, 0).boxes)
    assert thresholds.method == "sttm"
    budget = reduce_tokens(x, STTMConfig(method="sttm_budget", keep_ratio=0.25))
    assert abs(budget.keep_ratio - 0.25) <= 0.01 and budget.method == "sttm_budget"
    everything = reduce_tokens(x, STTMConfig.all_tokens())
    assert everything.keep_ratio == 1.0
    assert everything.spatial_threshold is OFF and everything.temporal_threshold is OFF


@pytest.mark.parametrize("kwargs, message", [
    (dict(merge_layer=-1), "merge_layer must be a layer index >= 0"),
    (dict(method="sttm_budget", keep_ratio=0.0), "keep_ratio must be a number in \\(0, 1\\]"),
    (dict(method="sttm_budget"), "method='sttm_budget' keeps a token budget"),
    (dict(method="uniform"), "method='uniform' keeps a token budget"),
    (dict(keep_ratio=0.3), "method='sttm' takes no keep_ratio; for a token budget use"),
    (dict(method="all", keep_ratio=0.3), "method='all' takes no keep_ratio"),
    (dict(method="tome"), "method='tome' is not one of all, sttm, sttm_budget"),
    (dict(spatial_threshold=-1.5), "spatial_threshold=-1.5 is out of range"),
    (dict(temporal_threshold="high"), "temporal_threshold must be a number or OFF"),
    (dict(root_level=1.5), "root_level must be an integer"),
])
def test_config_says_what_is_wrong(kwargs, message):
    with pytest.raises(ValueError, match=message):
        STTMConfig(**kwargs)


def test_every_method_in_the_registry_reduces_to_its_own_result():
    # 8 frames: DyCoke keeps each 4-frame group's first frame whole, so 2 of 8 frames (25%)
    # is its floor, below the 30% asked here (6 frames would floor it at 33%)
    x = smooth_features(8, 14, 14, 16, seed=7, noise=0.9, drift=0.6)
    attention = torch.rand(8, 14, 14, generator=torch.Generator().manual_seed(0))
    for method in METHODS.values():
        config = STTMConfig(method=method.name,
                            keep_ratio=0.3 if method.takes == "budget" else None)
        result = reduce_tokens(x, config, attention if method.query_aware else None)
        assert result.method == method.name
        if method.takes == "budget":
            assert abs(result.keep_ratio - 0.3) <= 0.02, method.name
    assert [m.name for m in METHODS.values() if m.query_aware] == ["fastv", "framefusion"]
    with pytest.raises(ValueError, match="FastV needs the attention"):
        reduce_tokens(x, STTMConfig(method="fastv", keep_ratio=0.3))
