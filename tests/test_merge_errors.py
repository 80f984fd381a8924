"""Bad input gets a clear ValueError before any work."""
import math

import pytest
import torch

from sttm_core import OFF, merge_video_tokens

pytestmark = pytest.mark.core


def good():
    return torch.randn(2, 4, 4, 8)


@pytest.mark.parametrize("features, message", [
    (torch.randn(4, 4, 8), "shape \\[T, H, W, C\\]"),
    (torch.randn(1, 2, 4, 4, 8), "shape \\[T, H, W, C\\]"),
    (torch.randn(0, 4, 4, 8), "empty dimension"),
    (torch.randn(2, 4, 0, 8), "empty dimension"),
    (torch.ones(2, 4, 4, 8, dtype=torch.long), "floating-point"),
    ([[1.0]], "torch.Tensor"),
])
def test_bad_features(features, message):
    with pytest.raises(ValueError, match=message):
        merge_video_tokens(features)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_features(bad):
    x = good()
    x[1, 2, 3, 4] = bad
    with pytest.raises(ValueError, match="1 NaN/inf"):
        merge_video_tokens(x)


@pytest.mark.parametrize("kwargs, message", [
    (dict(spatial_threshold="0.8"), "spatial_threshold must be a number"),
    (dict(spatial_threshold=True), "spatial_threshold must be a number"),
    (dict(spatial_threshold=math.nan), "out of range"),
    (dict(spatial_threshold=-1.5), "out of range"),
    (dict(temporal_threshold="high"), "temporal_threshold must be a number or OFF"),
    (dict(temporal_threshold=-2), "out of range"),
    (dict(root_level=3), "root_level=3 is out of range for a 4x4 grid; its levels are 0: 2x2, 1: 4x4"),
    (dict(root_level=-3), "out of range"),
    (dict(root_level=1.0), "out of range"),
    (dict(temporal_mode="fast"), "temporal_mode='fast' is not one of"),
    (dict(head_dim=3), "head_dim=3 must be a positive integer dividing the 8 channels"),
])
def test_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        merge_video_tokens(good(), **kwargs)


def test_off_turns_either_half_off():
    x = good()
    spatial_off = merge_video_tokens(x, OFF, 0.5)
    assert torch.equal(spatial_off.boxes, merge_video_tokens(x, 1.5, 0.5).boxes)
    assert spatial_off.spatial_threshold is OFF and spatial_off.num_spatial_tokens == 2 * 4 * 4
    both_off = merge_video_tokens(x, OFF, OFF)
    assert both_off.num_tokens == 2 * 4 * 4 and both_off.temporal_threshold is OFF


def test_negative_root_level_counts_from_the_patch_grid():
    r = merge_video_tokens(good(), 0.0, None, root_level=-1)
    assert r.num_tokens == 2 * 4 * 4 and r.root_level == 1
