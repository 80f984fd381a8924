"""merge_video_tokens gives the tokens of the official STTM code (github HYUNJS/STTM).

tests/data/official_golden.pt.xz holds what the official `quadtree_build_video` returned on
every case of tests/support/make_official_golden.py (which writes it from a checkout of that repository
and documents the format). The input features are not stored: support.golden.golden_features
rebuilds them from their seeds bit-exactly (checked by sha256; the script builds them with the
same function). Boxes and num_patches must be identical, features equal to 1e-5.
"""
from functools import cache

import pytest
import torch

from sttm_core import merge_video_tokens
from support.golden import MERGES, golden_features, load, sha256

pytestmark = pytest.mark.core


@cache
def golden() -> dict:
    return load(MERGES)


def describe(video: dict, case: dict) -> str:
    options = "".join(f", {k}={case[k]}" for k in ("head_dim", "area_weighted") if case[k])
    return (f"{video['T']}x{video['H']}x{video['W']} seed {video['seed']}: root_level "
            f"{case['root_level']}, tauS {case['spatial_threshold']}, "
            f"tauT {case['temporal_threshold']}{options}")


def differing_cases(select) -> tuple[int, list[str]]:
    """(number of golden cases checked, descriptions of those that differ) among select(video,
    case)."""
    g = golden()
    offsets, checked, wrong = g["offsets"].tolist(), 0, []
    for index, video in enumerate(g["videos"]):
        cases = [c for c in g["cases"] if c["video"] == index and select(video, c)]
        if not cases:
            continue
        x = golden_features(video["T"], video["H"], video["W"], g["channels"], video["seed"],
                            video["noise"])
        assert sha256(x) == video["sha256"], "golden_features no longer rebuilds the inputs"
        for case in cases:
            res = merge_video_tokens(x, case["spatial_threshold"], case["temporal_threshold"],
                                     case["root_level"], head_dim=case["head_dim"],
                                     area_weighted=case["area_weighted"])
            rows = slice(offsets[case["output"]], offsets[case["output"] + 1])
            same = (torch.equal(res.boxes, g["boxes"][rows].long())
                    and torch.equal(res.num_patches, g["num_patches"][rows].long())
                    and torch.allclose(res.features, g["features"][rows], rtol=0, atol=1e-5))
            checked += 1
            if not same:
                wrong.append(describe(video, case))
    return checked, wrong


def test_official_tokens():
    checked, wrong = differing_cases(lambda video, case: True)
    assert checked == 4548  # the number the README states
    assert not wrong, f"{len(wrong)} of {checked} cases differ: " + "; ".join(wrong[:5])
