"""sttm_viz on real MergeResults: overlays, tiling, clicks, chain colours, GIFs, figures.

Offline and fast: small synthetic feature videos, frames whose size is unrelated to the grid.
"""
import subprocess
import sys
from functools import cache

import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence

from sttm_core import merge_video_tokens
from sttm_core.baselines import drop_by_attention
from sttm_viz import (chain_animation, chains_figure, draw_token_map, frame_boxes, frame_counts,
                      frame_grid, keep_summary, pixel_edges, token_at, token_colours,
                      tokens_per_frame_figure)
from sttm_viz.draw import (GRANULARITY_PALETTE, HIGHLIGHT, box_areas, granularity_label,
                            granularity_level)
from support.videos import smooth_features

pytestmark = pytest.mark.core

FRAME = (100, 130)  # (H_img, W_img): deliberately not a multiple of any grid below
GREY = 128


@cache
def make_result(name):
    """Named MergeResults covering odd/non-square grids, one frame, no merging, dropping."""
    if name == "sttm_13x13":
        return merge_video_tokens(smooth_features(8, 13, 13, 32, drift=0.4), 0.8, 0.8)
    if name == "sttm_12x20":
        return merge_video_tokens(smooth_features(6, 12, 20, 32, seed=1), 0.8, 0.7)
    if name == "single_frame":
        return merge_video_tokens(smooth_features(1, 14, 14, 16, seed=2), 0.8, 0.6)
    if name == "disabled":
        return merge_video_tokens(smooth_features(4, 13, 13, 16, seed=3), 1.5, None)
    if name == "dropped":
        features = smooth_features(5, 12, 20, 16, seed=4)
        attention = torch.rand(5, 12, 20, generator=torch.Generator().manual_seed(0))
        return drop_by_attention(features, attention, keep_ratio=0.3)
    raise KeyError(name)


NAMES = ["sttm_13x13", "sttm_12x20", "single_frame", "disabled", "dropped"]


@pytest.fixture(params=NAMES)
def result(request):
    return make_result(request.param)


def grey_frames(T, size=FRAME):
    return np.full((T, *size, 3), GREY, np.uint8)


def natural_frames(T, size=FRAME, seed=0):
    """[T, H, W, 3] uint8 smooth drifting colour with a little noise (like a real clip)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size[0], 0:size[1]] / max(size)
    frames = [np.stack([np.sin(5 * x + t * 0.2 + c) * np.cos(4 * y - c) for c in range(3)], -1)
              for t in range(T)]
    frames = (np.stack(frames) + 1) * 110 + rng.normal(0, 6, (T, *size, 3))
    return np.clip(frames, 0, 255).astype(np.uint8)


def pixel_tokens(result, t, size=FRAME):
    """[H_img, W_img] output token of each pixel from coverage by frame t's pixel boxes, -1
    where uncovered; also asserts no pixel is covered twice."""
    boxes = frame_boxes(result, t, size)
    cover = np.zeros(size, np.int64)
    owner = np.full(size, -1, np.int64)
    for (y0, x0, y1, x1), tok in zip(boxes.pixel, boxes.token):
        cover[y0:y1, x0:x1] += 1
        owner[y0:y1, x0:x1] = tok
    assert cover.max() <= 1, f"frame {t}: overlapping boxes"
    return owner


# --- overlays ----------------------------------------------------------------------------------

def test_the_page_and_the_pictures_share_one_palette():
    """Box sizes are coloured the same on the page (draw.js) and in the figures (draw.py)."""
    import re
    from pathlib import Path

    js = (Path(__file__).parents[1] / "sttm_viz" / "web" / "draw.js").read_text()
    page = re.search(r"SIZE_PALETTE = \[([^\]]*)\]", js).group(1)
    page = [tuple(int(c[i:i + 2], 16) for i in (1, 3, 5)) for c in re.findall(r"#[0-9A-Fa-f]{6}", page)]
    assert page == [tuple(int(v) for v in c) for c in GRANULARITY_PALETTE]
    assert granularity_label(0) == "1 patch" and granularity_label(4) == "16 patches"
    assert granularity_label(3) == "~8 patches"


def test_overlay_shape_dtype_and_every_pixel_changes(result):
    T = result.grid[0]
    frame = grey_frames(1)[0]
    for t in range(T):
        for by in ("granularity", "token"):
            out = draw_token_map(frame, result, t, by=by, outline=False)
            assert out.shape == frame.shape and out.dtype == np.uint8
            # every pixel is either inside a drawn box (tinted) or dropped (darkened)
            assert (out != frame).any(-1).all(), (t, by)


def test_new_boxes_are_filled_with_their_colour(result):
    """At frame 0 every token is new (no hatching): a box's pixels are exactly the alpha blend
    of the frame and its colour, whatever the box size."""
    frame, alpha = grey_frames(1)[0], 0.35
    boxes = frame_boxes(result, 0, FRAME)
    for by in ("granularity", "token"):
        out = draw_token_map(frame, result, 0, by=by, alpha=alpha, outline=False)
        if by == "granularity":
            colours = GRANULARITY_PALETTE[granularity_level(box_areas(boxes.patch))]
        else:
            colours = token_colours(result, "token")[boxes.token]
        expected = np.rint((1 - alpha) * GREY + alpha * colours.astype(float)).astype(np.uint8)
        for (y0, x0, y1, x1), colour in zip(boxes.pixel, expected):
            assert (out[y0:y1, x0:x1] == colour).all()


def test_outlines_darken_box_edges():
    result = make_result("sttm_13x13")
    frame = grey_frames(1)[0]
    plain = draw_token_map(frame, result, 0, outline=False).astype(int)
    lined = draw_token_map(frame, result, 0, outline=True).astype(int)
    boxes = frame_boxes(result, 0, FRAME)
    for y0, x0, y1, x1 in boxes.pixel:
        assert (lined[y1 - 1, x0:x1].sum(-1) < plain[y1 - 1, x0:x1].sum(-1)).all()  # bottom edge
        assert (lined[y0:y1, x1 - 1].sum(-1) < plain[y0:y1, x1 - 1].sum(-1)).all()  # right edge
    interior = [(y0 + y1) // 2 for y0, _, y1, _ in boxes.pixel], \
               [(x0 + x1) // 2 for _, x0, _, x1 in boxes.pixel]
    big = (boxes.pixel[:, 2] - boxes.pixel[:, 0] > 4) & (boxes.pixel[:, 3] - boxes.pixel[:, 1] > 4)
    ys, xs = np.array(interior[0])[big], np.array(interior[1])[big]
    assert (lined[ys, xs] == plain[ys, xs]).all()  # box centres untouched by outlines


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("size", [FRAME, (37, 61), (240, 320)])
def test_boxes_tile_the_frame_and_agree_with_token_map(name, size):
    result = make_result(name)
    T, H, W = result.grid
    rows = np.repeat(np.arange(H), np.diff(pixel_edges(H, size[0])))
    cols = np.repeat(np.arange(W), np.diff(pixel_edges(W, size[1])))
    assert len(rows) == size[0] and len(cols) == size[1]
    for t in range(T):
        owner = pixel_tokens(result, t, size)
        expected = result.token_map[t].numpy()[rows[:, None], cols[None, :]]
        assert (owner == expected).all()  # covered once where kept, uncovered where dropped


def test_continuing_chains_are_hatched_and_keep_one_colour():
    result = make_result("sttm_13x13")
    span = result.frame_span.numpy()
    chains = np.flatnonzero(span[:, 1] > span[:, 0])
    assert len(chains) > 5
    frame = grey_frames(1)[0]
    outs = [draw_token_map(frame, result, t, by="token", outline=False)
            for t in range(result.grid[0])]
    for token in chains:
        fills = []
        for t in range(span[token, 0], span[token, 1] + 1):
            pixels = outs[t][pixel_tokens(result, t) == token]  # [P, 3]
            colours, counts = np.unique(pixels, axis=0, return_counts=True)
            fills.append(tuple(colours[counts.argmax()]))
            hatched = len(colours) > 1
            assert hatched == (t > span[token, 0]), (token, t)  # stripes only after frame 1
        assert len(set(fills)) == 1, f"token {token} changes colour over its chain: {fills}"


def test_token_colours():
    disabled, merged = make_result("disabled"), make_result("sttm_13x13")
    assert (token_colours(disabled) == GRANULARITY_PALETTE[0]).all()  # all 1x1
    coarse = box_areas(merged.boxes.numpy()) >= 16
    assert coarse.any()
    assert (token_colours(merged)[coarse] != GRANULARITY_PALETTE[0]).any(-1).all()
    by_token = token_colours(merged, "token")
    assert by_token.shape == (merged.num_tokens, 3) and by_token.dtype == np.uint8
    assert (by_token == token_colours(merged, "token")).all()  # deterministic
    assert len(np.unique(by_token[:60], axis=0)) == 60  # neighbouring ids differ
    with pytest.raises(ValueError, match="by="):
        token_colours(merged, "area")


def test_dropped_patches_are_greyed_and_not_clickable():
    result = make_result("dropped")
    frames = natural_frames(result.grid[0])
    for t in range(result.grid[0]):
        out = draw_token_map(frames[t], result, t).astype(int)
        dropped = pixel_tokens(result, t) < 0
        assert dropped.any() and (~dropped).any()
        grey = out[dropped]  # [P, 3]
        assert (grey == grey[:, :1]).all()  # R == G == B
        assert out[dropped].mean() < 0.5 * frames[t][dropped].mean()
    T, H, W = result.grid
    t, r, c = (int(v[0]) for v in np.nonzero(result.token_map.numpy() < 0))
    y, x = (r + 0.5) * FRAME[0] / H, (c + 0.5) * FRAME[1] / W
    assert token_at(result, t, x, y, FRAME) is None


def test_highlight_draws_a_white_border_where_the_token_appears():
    result = make_result("sttm_13x13")
    span = result.frame_span.numpy()
    token = int(np.flatnonzero((span[:, 1] > span[:, 0]) & (span[:, 1] < result.grid[0] - 1))[0])
    frame = grey_frames(1)[0]
    for t in range(result.grid[0]):
        out = draw_token_map(frame, result, t, by="token", highlight=token)
        white = (out == HIGHLIGHT).all(-1)
        boxes = frame_boxes(result, t, FRAME)
        if span[token, 0] <= t <= span[token, 1]:
            for y0, x0, y1, x1 in boxes.pixel[boxes.token == token]:
                assert white[y0, x0:x1].all() and white[y0:y1, x1 - 1].all()
        else:
            assert not white.any()


def test_frame_grid_tiles_and_labels():
    result = make_result("sttm_13x13")
    frames = natural_frames(8)
    grid = frame_grid(frames, result, cols=4, max_side=256)
    assert grid.dtype == np.uint8 and grid.shape == (2 * 100 + 4, 4 * 130 + 3 * 4, 3)
    small = frame_grid(frames, result, cols=3, max_side=64)
    assert small.shape == (3 * 49 + 2 * 4, 3 * 64 + 2 * 4, 3)  # 100x130 -> 49x64, 3 rows
    # the bottom-right tile holds frame 7's overlay; its top-left corner carries the label
    tile = grid[104:, 3 * 134:]
    plain = draw_token_map(frames[7], result, 7)
    assert (tile[20:, 40:] == plain[20:, 40:]).all()
    assert (tile[:12, :24] != plain[:12, :24]).any()
    single = make_result("single_frame")
    assert frame_grid(natural_frames(1, (300, 200)), single).shape == (256, 171, 3)


def test_frame_grid_checks_frame_count():
    with pytest.raises(ValueError, match="T=8"):
        frame_grid(natural_frames(3), make_result("sttm_13x13"))


# --- clicks ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_token_at_returns_the_token_of_the_clicked_patch(name):
    result = make_result(name)
    T, H, W = result.grid
    span, token_map = result.frame_span.numpy(), result.token_map.numpy()
    rng = np.random.default_rng(0)
    for _ in range(300):
        t, r, c = rng.integers(T), rng.integers(H), rng.integers(W)
        u, v = rng.uniform(0.1, 0.9, 2)  # inside the patch, away from rounded edges
        y, x = (r + u) * FRAME[0] / H, (c + v) * FRAME[1] / W
        info = token_at(result, int(t), x, y, FRAME)
        if token_map[t, r, c] < 0:
            assert info is None
            continue
        token = int(token_map[t, r, c])
        assert info["token"] == token and info["t"] == t
        y0, x0, y1, x1 = info["box_patches"]
        assert y0 <= r < y1 and x0 <= c < x1
        py0, px0, py1, px1 = info["box_pixels"]
        assert py0 <= y < py1 and px0 <= x < px1
        assert info["size"].startswith(f"{y1 - y0}x{x1 - x0} patch")
        assert info["frames"] == tuple(span[token])
        assert info["chain_length"] == span[token, 1] - span[token, 0] + 1
        assert info["num_patches"] == int(result.num_patches[token])
        assert info["continues"] == (span[token, 0] < t)
    assert token_at(result, 0, -1, 5, FRAME) is None
    assert token_at(result, 0, 5, FRAME[0], FRAME) is None


def test_token_at_describes_a_merged_chain():
    result = make_result("sttm_13x13")
    span = result.frame_span.numpy()
    token = int(np.argmax(result.num_patches.numpy()))  # the biggest chain
    t = int(span[token, 1])
    boxes = frame_boxes(result, t, FRAME)
    y0, x0, y1, x1 = boxes.pixel[boxes.token == token][0]
    info = token_at(result, t, (x0 + x1) / 2, (y0 + y1) / 2, FRAME)
    assert info["token"] == token and info["continues"]
    assert info["num_patches"] == int(result.num_patches.max()) > 16
    assert info["chain_length"] == span[token, 1] - span[token, 0] + 1 > 1


def test_bad_inputs_raise_clear_errors():
    result = make_result("sttm_13x13")
    with pytest.raises(ValueError, match="uint8"):
        draw_token_map(np.zeros((*FRAME, 3), np.float32), result, 0)
    with pytest.raises(ValueError, match="out of range"):
        draw_token_map(grey_frames(1)[0], result, 8)
    with pytest.raises(ValueError, match="out of range"):
        token_at(result, 9, 1, 1, FRAME)


# --- animation ---------------------------------------------------------------------------------

def test_chain_animation_gif(tmp_path):
    result = merge_video_tokens(smooth_features(16, 24, 24, 32, seed=5), 0.8, 0.7)
    frames = natural_frames(16, (360, 480))
    path = chain_animation(frames, result, tmp_path / "chains.gif", fps=5)
    assert path.exists() and path.stat().st_size < 2 * 2**20
    with Image.open(path) as gif:
        images = [im.convert("RGB") for im in ImageSequence.Iterator(gif)]
        assert gif.info["loop"] == 0 and gif.info["duration"] == 200
    assert len(images) == 16
    assert max(images[0].size) <= 320 + 16  # downsized (+ caption strip)
    assert images[0].size[0] == 320
    # frames differ: it animates
    assert any(a.tobytes() != b.tobytes() for a, b in zip(images, images[1:]))


def test_chain_animation_single_frame(tmp_path):
    result = make_result("single_frame")
    path = chain_animation(natural_frames(1), result, tmp_path / "one.gif")
    with Image.open(path) as gif:
        assert getattr(gif, "n_frames", 1) == 1
        assert gif.size == (130, 100 + 16)


# --- figures -----------------------------------------------------------------------------------

def segments(fig):
    """(x start, x end, y, hover) of every bar in the chains figure."""
    bars = []
    for trace in fig.data:
        x, y, text = np.asarray(trace.x, float), np.asarray(trace.y, float), list(trace.hovertext)
        assert len(x) % 4 == 0 and np.isnan(x[3::4]).all()  # NaN after each bar
        for i in range(0, len(x), 4):
            bars.append((x[i], x[i + 2], y[i], text[i]))
    return bars


@pytest.mark.parametrize("name", NAMES)
def test_chains_figure_has_one_bar_per_token(name):
    result = make_result(name)
    fig = chains_figure(result)
    bars = segments(fig)
    assert len(bars) == result.num_tokens
    assert len(fig.data) <= len(GRANULARITY_PALETTE)  # a few traces, not one per token
    span, boxes = result.frame_span.numpy(), result.boxes.numpy()
    texts = {b[3].split(":")[0]: b for b in bars}
    assert len(texts) == result.num_tokens
    for token in np.random.default_rng(0).choice(result.num_tokens, 20):
        x0, x1, y, text = texts[f"token {token}"]
        assert x0 < span[token, 0] < x1 and x0 < span[token, 1] < x1
        assert x1 - x0 == pytest.approx(span[token, 1] - span[token, 0] + 0.8)
        assert 0 <= y < result.grid[1] * result.grid[2]
        h, w = boxes[token, 3] - boxes[token, 1], boxes[token, 4] - boxes[token, 2]
        assert f"{h}x{w} patch" in text and f"{int(result.num_patches[token])} patch" in text


def test_chains_figure_hover_text_format():
    result = make_result("sttm_13x13")
    span = result.frame_span.numpy()
    area = box_areas(result.boxes.numpy())
    token = int(np.argmax((span[:, 1] - span[:, 0]) * (area >= 4)))  # a long chain of 2x2+
    assert area[token] >= 4 and span[token, 1] > span[token, 0]
    texts = {b[3] for b in segments(chains_figure(result))}
    b = result.boxes[token]
    expected = (f"token {token}: {int(b[3] - b[1])}x{int(b[4] - b[2])} patches, "
                f"frames {span[token, 0]}-{span[token, 1]}, "
                f"{int(result.num_patches[token])} patches")
    assert expected in texts


def test_chains_figure_stays_light_for_thousands_of_tokens():
    result = merge_video_tokens(smooth_features(8, 27, 27, 16, seed=6), 2.0, None)
    assert result.num_tokens > 5000
    fig = chains_figure(result)
    assert len(fig.data) == 1 and fig.data[0].type == "scattergl"
    assert len(segments(fig)) == result.num_tokens


@pytest.mark.parametrize("name", NAMES)
def test_tokens_per_frame_sums(name):
    result = make_result(name)
    T, H, W = result.grid
    fig = tokens_per_frame_figure(result)
    spatial, new, reference = (np.asarray(tr.y) for tr in fig.data)
    assert len(spatial) == len(new) == T
    assert new.sum() == result.num_tokens
    assert spatial.sum() == result.num_spatial_tokens
    assert (reference == H * W).all() and fig.data[2].line.dash == "dash"
    counts = frame_counts(result)
    assert (counts["present"] >= counts["new"]).all() and (counts["present"] <= spatial).all()


def test_keep_summary():
    s = keep_summary(make_result("sttm_13x13"))
    assert s["tokens_before"] == 8 * 13 * 13
    assert s["tokens_before"] > s["after_spatial"] > s["after_temporal"]
    assert s["keep_ratio"] == pytest.approx(s["after_temporal"] / s["tokens_before"])
    assert s["dropped_patches"] == 0
    d = keep_summary(make_result("disabled"))
    assert d["keep_ratio"] == d["spatial_keep_ratio"] == 1.0
    assert keep_summary(make_result("dropped"))["dropped_patches"] == round(0.7 * 5 * 12 * 20)


def test_viz_never_imports_a_model_library():
    code = ("import sys, sttm_viz.draw, sttm_viz.figures; sttm_viz.draw_token_map; "
            "assert 'transformers' not in sys.modules, 'transformers'; "
            "assert 'gradio' not in sys.modules, 'gradio'")
    subprocess.run([sys.executable, "-c", code], check=True)
