"""Bad input gets a clear ValueError before any work."""
import math

import numpy as np
import pytest
import torch

from sttm_core import OFF, merge_video_tokens
from sttm_core.budget import thresholds_for_budget

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


# --- numpy scalars (e.g. from a sweep's np.linspace) are numbers like any other -------------

def test_numpy_scalars_are_accepted_as_settings():
    x = good()
    plain = merge_video_tokens(x, 0.5, 0.25, 1)
    for kwargs in [dict(spatial_threshold=np.float32(0.5), temporal_threshold=np.float16(0.25)),
                   dict(spatial_threshold=np.float64(0.5), root_level=np.int64(1)),
                   dict(root_level=np.int32(-1)), dict(root_level=np.uint8(1))]:
        r = merge_video_tokens(x, **{"spatial_threshold": 0.5, "temporal_threshold": 0.25,
                                     **kwargs})
        assert torch.equal(r.boxes, plain.boxes) and torch.equal(r.token_map, plain.token_map)
        assert type(r.root_level) is int and r.root_level == 1
    assert merge_video_tokens(x, head_dim=np.int64(4)).num_tokens > 0


@pytest.mark.parametrize("kwargs, message", [
    (dict(spatial_threshold=np.float32("nan")), "spatial_threshold is NaN, which is out of range"),
    (dict(temporal_threshold=np.float64("nan")), "temporal_threshold is NaN"),
    (dict(spatial_threshold=np.bool_(True)), "spatial_threshold must be a number"),
    (dict(root_level=np.bool_(True)), "root_level=np.True_ is out of range"),
    (dict(root_level=np.float32(1)), "out of range"),
    (dict(root_level=np.int64(2)), "root_level=np.int64\\(2\\) is out of range for a 4x4 grid"),
])
def test_bad_numpy_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        merge_video_tokens(good(), **kwargs)


def test_budget_takes_numpy_scalars_and_rejects_nan():
    x = torch.randn(3, 8, 8, 8, generator=torch.Generator().manual_seed(0))
    plain = thresholds_for_budget(x, 0.3, root_level=0, tolerance=0.02, max_merges=3)
    numpy = thresholds_for_budget(x, np.float32(0.3), root_level=np.int64(0),
                                  tolerance=np.float32(0.02), spatial_share=np.float64(0.5),
                                  max_merges=np.int8(3))
    assert numpy.result.num_tokens == plain.result.num_tokens and numpy.reached == plain.reached
    for kwargs, message in [(dict(keep_ratio=np.float32("nan")), "keep_ratio=.*nan.* must be"),
                            (dict(keep_ratio=0.3, tolerance=math.nan), "tolerance=nan must be"),
                            (dict(keep_ratio=0.3, max_merges=np.bool_(True)), "max_merges")]:
        with pytest.raises(ValueError, match=message):
            thresholds_for_budget(x, **kwargs)
