"""Automatic thresholds for a token budget."""
import pytest
import torch

from sttm_core import STTMConfig, VideoTokenMerger, merge_video_tokens, thresholds_for_budget
from videos import smooth_features


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
    assert choice.temporal_threshold is None and choice.reached
    assert choice.result.num_tokens == choice.result.num_spatial_tokens
    single = thresholds_for_budget(x[:1], 0.3)
    assert single.temporal_threshold is None
    assert abs(single.keep_ratio - 0.3) <= 0.01 or not single.reached and "steps" in single.reason


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
    assert torch.equal(STTMConfig(0.7, 0.5, 0).merge(x).boxes, merge_video_tokens(x, 0.7, 0.5, 0).boxes)
    assert abs(STTMConfig(keep_ratio=0.25).merge(x).keep_ratio - 0.25) <= 0.01
    assert STTMConfig.disabled().merge(x).keep_ratio == 1.0
    with pytest.raises(ValueError, match="merge_layer"):
        STTMConfig(merge_layer=-1)
    with pytest.raises(ValueError, match="keep_ratio"):
        STTMConfig(keep_ratio=0.0)
