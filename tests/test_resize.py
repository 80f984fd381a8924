"""Qwen-VL's frame resize: max_pixels is a hard cap, even below the minimum."""
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sttm_core.models.qwen2_vl import VIDEO_PIXELS, smart_resize

pytestmark = pytest.mark.core

FACTOR = 28
sides = st.integers(8, 4000)


@given(height=sides, width=sides, max_tokens=st.integers(1, 1200))
def test_area_never_exceeds_max_pixels(height, width, max_tokens):
    """Any frame, any cap down to one 28x28 token (also far below the 128-token minimum)."""
    max_pixels = max_tokens * FACTOR * FACTOR
    h, w = smart_resize(height, width, FACTOR, VIDEO_PIXELS[0], max_pixels)
    assert h % FACTOR == 0 and w % FACTOR == 0 and h >= FACTOR and w >= FACTOR
    assert h * w <= max_pixels


@given(height=st.integers(56, 2000), width=st.integers(56, 2000))
def test_within_the_defaults_it_is_qwens_rule(height, width):
    """min <= max and an aspect ratio below Qwen's limit: exactly transformers' smart_resize."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize as qwen

    if max(height, width) / min(height, width) > 200:
        return
    assert smart_resize(height, width, FACTOR, *VIDEO_PIXELS) == qwen(
        height, width, FACTOR, *VIDEO_PIXELS)


def test_a_cap_below_the_minimum_lowers_the_minimum():
    # 84 x 140 with the 128-token minimum would grow to ~105k pixels; the cap is 15 tokens
    assert smart_resize(84, 140, FACTOR, VIDEO_PIXELS[0], 15 * FACTOR * FACTOR) == (84, 140)
    h, w = smart_resize(480, 640, FACTOR, VIDEO_PIXELS[0], 20 * FACTOR * FACTOR)
    assert h * w <= 20 * FACTOR * FACTOR and math.isclose(w / h, 640 / 480, rel_tol=0.35)


def test_a_cap_below_one_token_is_refused():
    with pytest.raises(ValueError, match="max_pixels=700 is smaller than one 28x28 token"):
        smart_resize(480, 640, FACTOR, VIDEO_PIXELS[0], 700)
