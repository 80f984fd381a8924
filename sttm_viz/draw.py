"""Token overlays drawn from a MergeResult: numpy + PIL only, never a model.

Frames are uint8 [T, H_img, W_img, 3]; their size is unrelated to the patch grid (H, W), so a
patch box maps to pixels through rounded edges `pixel_edges`, which tile the frame without
gaps. Shape legend: T frames, H x W patch grid, N output tokens, S spatial tokens (per-frame
boxes before temporal merging), K the boxes of one frame.

Visual code of `draw_token_map`:
    fill colour   by granularity (box area in Okabe and Ito's colours: 1 patch vermillion,
                  4 yellow, 16 sky blue, ...) or by output token (a temporal chain keeps one
                  colour in every frame it spans)
    solid fill    the token starts in this frame
    hatched fill  the token continues a chain from an earlier frame (merged in time)
    grey, dark    patches a baseline dropped (token_map == -1)
    white border  the highlighted token
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from PIL import Image, ImageDraw, ImageFont

if TYPE_CHECKING:  # sttm_viz only reads results; it never needs sttm_core at run time
    from sttm_core import MergeResult

log = logging.getLogger(__name__)

# Keyed by round(log2(box area)): 1 patch, ~2, 4 (2x2), ~8, 16 (4x4), ...
# Okabe and Ito's colours, told apart with the common colour blindnesses; the page draws the
# same ones (sttm_viz/web/draw.js SIZE_PALETTE; tests/test_viz.py checks they agree).
GRANULARITY_PALETTE = np.array([
    (213, 94, 0),     # 1 patch   vermillion
    (0, 114, 178),    # ~2        blue
    (240, 228, 66),   # 4 (2x2)   yellow
    (204, 121, 167),  # ~8        reddish purple
    (86, 180, 233),   # 16 (4x4)  sky blue
    (230, 159, 0),    # ~32       orange
    (0, 158, 115),    # 64 (8x8)  bluish green
    (0, 0, 0),        # ~128      black
    (153, 153, 153),  # >= 256    grey
], dtype=np.uint8)
GOLDEN = 0.618033988749895
OUTLINE_SHADE = 0.25        # box edges: the pixel times this (dark but still tinted)
HATCH_ALPHA = 0.8           # stripes of a continuing token: a darker shade of its colour,
HATCH_SHADE = 0.7           # nearly opaque, so the chain keeps its hue but reads as 'carried'
DROPPED_SHADE = 0.35        # dropped patches: greyscale times this
HIGHLIGHT = np.array((255, 255, 255), np.uint8)
CAPTION_BG = (24, 24, 24)
CAPTION_FG = (240, 240, 240)


class FrameBoxes(NamedTuple):
    """The spatial tokens of one frame. All arrays have K rows, boxes are (y0, x0, y1, x1)."""

    patch: np.ndarray     # [K, 4] box in patch units, exclusive
    pixel: np.ndarray     # [K, 4] box in pixels, exclusive
    token: np.ndarray     # [K] output token each went into
    spatial: np.ndarray   # [K] row in result.spatial_boxes


# --- reading a MergeResult ---------------------------------------------------------------------

def _np(x) -> np.ndarray:
    """A tensor (any device) or array as a numpy array."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def frame_span(result: "MergeResult") -> np.ndarray:
    """[N, 2] first and last frame (inclusive) of each output token."""
    return _np(result.frame_span).astype(np.int64)


def box_areas(boxes: np.ndarray) -> np.ndarray:
    """[K] patches in each (t, y0, x0, y1, x1) or (y0, x0, y1, x1) box."""
    b = boxes[:, -4:]
    return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])


def granularity_level(areas: np.ndarray) -> np.ndarray:
    """[K] palette index: round(log2(area)), clipped to the palette."""
    levels = np.rint(np.log2(np.maximum(areas, 1)))
    return np.clip(levels, 0, len(GRANULARITY_PALETTE) - 1).astype(np.int64)


def granularity_label(level: int) -> str:
    """Legend text of a palette index in patches per box (as the page's legend), e.g.
    0 -> '1 patch', 2 -> '4 patches', 3 -> '~8 patches'."""
    if level == 0:
        return "1 patch"
    if level == len(GRANULARITY_PALETTE) - 1:
        return f">= {2 ** level} patches"
    return f"{'~' if level % 2 else ''}{2 ** level} patches"


def size_label(box: np.ndarray) -> str:
    """'4x4 patches' for a (y0, x0, y1, x1) box; '1x1 patch' for one."""
    h, w = int(box[-2] - box[-4]), int(box[-1] - box[-3])
    return f"{h}x{w} patch" if h * w == 1 else f"{h}x{w} patches"


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised HSV -> RGB; all inputs in [0, 1], [K] each -> [K, 3] uint8."""
    i = np.floor(h * 6).astype(np.int64) % 6
    f = h * 6 - np.floor(h * 6)
    p, q, u = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    table = np.stack([np.stack(c, -1) for c in
                      [(v, u, p), (q, v, p), (p, v, u), (p, q, v), (u, p, v), (v, p, q)]])
    rgb = table[i, np.arange(len(h))]  # [K, 3]
    return np.rint(rgb * 255).astype(np.uint8)


def id_colours(ids: np.ndarray) -> np.ndarray:
    """[K, 3] uint8: a deterministic, well spread colour per integer id (golden-ratio hue;
    saturation and value alternate so that ids with close hues still differ)."""
    ids = np.asarray(ids, dtype=np.int64)
    hue = (ids * GOLDEN + 0.05) % 1.0
    sat = np.where(ids % 2 == 0, 0.85, 0.6)
    val = np.where((ids // 2) % 2 == 0, 0.95, 0.78)
    return _hsv_to_rgb(hue, sat, val)


def token_colours(result: "MergeResult", by: str = "granularity") -> np.ndarray:
    """[N, 3] uint8 colour of each output token.

    by="granularity": from the area of the token's first box (GRANULARITY_PALETTE);
    by="token": a distinct colour per token id, so a chain has one colour in every frame.
    """
    if by == "granularity":
        return GRANULARITY_PALETTE[granularity_level(box_areas(_np(result.boxes)))]
    if by == "token":
        return id_colours(np.arange(result.num_tokens))
    raise ValueError(f"by={by!r} must be 'granularity' or 'token'")


def frame_counts(result: "MergeResult") -> dict[str, np.ndarray | int]:
    """Per frame [T] counts: 'spatial' boxes (before temporal merging), output tokens
    'present', 'new' tokens (chains that start there); 'patches' = H*W per frame."""
    T, H, W = result.grid
    sb_t = _np(result.spatial_boxes)[:, 0]
    tok = _np(result.spatial_to_token)
    present = np.zeros(T, np.int64)
    for t in range(T):  # a token may own several boxes in one frame: count it once
        present[t] = len(np.unique(tok[sb_t == t]))
    return {"spatial": np.bincount(sb_t, minlength=T), "present": present,
            "new": np.bincount(_np(result.boxes)[:, 0], minlength=T), "patches": H * W}


# --- patch -> pixel geometry -------------------------------------------------------------------

def pixel_edges(n: int, size: int) -> np.ndarray:
    """[n + 1] pixel edges of n equal cells over `size` pixels, rounded so they tile it."""
    return np.rint(np.arange(n + 1) * (size / n)).astype(np.int64)


def _check_frame_index(result: "MergeResult", t: int) -> int:
    T = result.grid[0]
    if not isinstance(t, (int, np.integer)) or not -T <= t < T:
        raise ValueError(f"frame index t={t!r} is out of range for a result with {T} frames")
    return int(t) % T


def frame_boxes(result: "MergeResult", t: int, frame_size: tuple[int, int]) -> FrameBoxes:
    """The spatial tokens present in frame t, with their boxes mapped to a frame of
    frame_size = (H_img, W_img) pixels."""
    t = _check_frame_index(result, t)
    _, H, W = result.grid
    sb = _np(result.spatial_boxes)
    rows = np.flatnonzero(sb[:, 0] == t)
    patch = sb[rows, 1:5].astype(np.int64)                  # [K, 4]
    ye, xe = pixel_edges(H, frame_size[0]), pixel_edges(W, frame_size[1])
    pixel = np.stack([ye[patch[:, 0]], xe[patch[:, 1]], ye[patch[:, 2]], xe[patch[:, 3]]], 1)
    return FrameBoxes(patch, pixel, _np(result.spatial_to_token)[rows].astype(np.int64), rows)


def _paint_boxes(patch: np.ndarray, H: int, W: int) -> np.ndarray:
    """[H, W] index k of the box covering each patch, -1 where none (dropped). Vectorised:
    every box is unrolled into its patches."""
    heights, widths = patch[:, 2] - patch[:, 0], patch[:, 3] - patch[:, 1]
    areas = heights * widths
    owner = np.repeat(np.arange(len(patch)), areas)           # [sum areas]
    local = np.arange(len(owner)) - np.repeat(np.cumsum(areas) - areas, areas)
    index = np.full((H, W), -1, np.int64)
    index[patch[owner, 0] + local // widths[owner], patch[owner, 1] + local % widths[owner]] = owner
    return index


def _to_pixels(patch_map: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
    """Upsample a [H, W] patch map to [H_img, W_img] with the rounded pixel edges."""
    H, W = patch_map.shape
    rows = np.repeat(np.arange(H), np.diff(pixel_edges(H, frame_size[0])))  # [H_img]
    cols = np.repeat(np.arange(W), np.diff(pixel_edges(W, frame_size[1])))  # [W_img]
    return patch_map[rows[:, None], cols[None, :]]


def _edge_mask(index: np.ndarray, width: int) -> np.ndarray:
    """[H_img, W_img] bool: pixels within `width` of a change of index (box boundaries),
    plus the frame's own border, so every box is closed."""
    edge = np.zeros(index.shape, bool)
    for k in range(1, width + 1):
        horizontal = index[:, :-k] != index[:, k:]
        vertical = index[:-k] != index[k:]
        edge[:, :-k] |= horizontal
        edge[:-k] |= vertical
    edge[:width], edge[-width:], edge[:, :width], edge[:, -width:] = True, True, True, True
    return edge


def _check_frame(frame) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"frame must be a uint8 array [H_img, W_img, 3], got {frame.dtype} "
                         f"{frame.shape}")
    return frame


# --- drawing -----------------------------------------------------------------------------------

def line_width(frame_size: tuple[int, int]) -> int:
    """Outline width that stays visible but thin: 1 px up to ~400 px frames."""
    return max(1, round(min(frame_size) / 400))


def draw_token_map(frame: np.ndarray, result: "MergeResult", t: int, *,
                   by: str = "granularity", alpha: float = 0.35, highlight: int | None = None,
                   outline: bool = True) -> np.ndarray:
    """Frame t with its tokens drawn: [H_img, W_img, 3] uint8 -> same shape and dtype.

    Each spatial box of frame t is filled translucently (alpha) with its colour: by
    "granularity" the colour of the box's own area (a chain may change size over time), by
    "token" the colour of its output token. Boxes of tokens that started in an earlier frame
    are hatched; dropped patches are greyed; `highlight` (an output token id) gets a thick
    white border wherever it appears.
    """
    frame = _check_frame(frame)
    size = frame.shape[:2]
    boxes = frame_boxes(result, t, size)
    t = _check_frame_index(result, t)
    _, H, W = result.grid
    index = _to_pixels(_paint_boxes(boxes.patch, H, W), size)  # [H_img, W_img] box k or -1
    kept = index >= 0
    if by == "granularity":
        colours = GRANULARITY_PALETTE[granularity_level(box_areas(boxes.patch))]
    else:
        colours = token_colours(result, by)[boxes.token]      # [K, 3]
    out = frame.astype(np.float32)
    fill = colours[index[kept]].astype(np.float32)
    out[kept] = (1 - alpha) * out[kept] + alpha * fill
    _hatch_continuing(out, index, boxes, result, t, colours)
    if not kept.all():  # dropped: greyscale, darkened, so kept tokens stand out
        grey = frame[~kept].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        out[~kept] = DROPPED_SHADE * grey[:, None]
    if outline:
        out[_edge_mask(index, line_width(size))] *= OUTLINE_SHADE
    if highlight is not None:
        _draw_highlight(out, boxes, int(highlight), size)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _hatch_continuing(out: np.ndarray, index: np.ndarray, boxes: FrameBoxes,
                      result: "MergeResult", t: int, colours: np.ndarray) -> None:
    """Diagonal stripes (a darker shade of the box's colour) over boxes whose output token
    started before frame t: the part of the picture that was merged in time."""
    first = _np(result.boxes)[:, 0]
    continuing = first[boxes.token] < t                       # [K]
    if not continuing.any():
        return
    period = max(4, 2 * line_width(out.shape[:2]) + 3)
    yy, xx = np.indices(index.shape)
    stripe = ((yy + xx) % period < max(1, period // 4)) & (index >= 0)
    stripe &= continuing[np.maximum(index, 0)]
    hatch = HATCH_SHADE * colours[index[stripe]].astype(np.float32)
    out[stripe] = (1 - HATCH_ALPHA) * out[stripe] + HATCH_ALPHA * hatch


def _draw_highlight(out: np.ndarray, boxes: FrameBoxes, token: int,
                    size: tuple[int, int]) -> None:
    """A thick white border, with a dark line inside it so it also shows on light frames,
    around each box of `token` in this frame."""
    width = max(2, 3 * line_width(size))
    for y0, x0, y1, x1 in boxes.pixel[boxes.token == token]:
        for w, colour in ((width + 1, 0), (width, HIGHLIGHT)):  # dark ring, then white over it
            out[y0:y0 + w, x0:x1] = out[max(y1 - w, y0):y1, x0:x1] = colour
            out[y0:y1, x0:x0 + w] = out[y0:y1, max(x1 - w, x0):x1] = colour


def fit_frame(frame: np.ndarray, max_side: int) -> np.ndarray:
    """Downsize (never enlarge) a uint8 frame so its longer side is <= max_side."""
    frame = _check_frame(frame)
    h, w = frame.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1:
        return frame
    size = (max(1, round(w * scale)), max(1, round(h * scale)))  # PIL: (width, height)
    return np.asarray(Image.fromarray(frame).resize(size, Image.Resampling.LANCZOS))


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one bitmap size
        return ImageFont.load_default()


def _label(image: Image.Image, xy: tuple[int, int], text: str, size: int = 11) -> None:
    """Small light text on a dark box, legible on any frame."""
    draw = ImageDraw.Draw(image)
    font = _font(size)
    left, top, right, bottom = draw.textbbox(xy, text, font=font)
    draw.rectangle((left - 2, top - 2, right + 2, bottom + 2), fill=CAPTION_BG)
    draw.text(xy, text, fill=CAPTION_FG, font=font)


def _check_frames(frames, result: "MergeResult") -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[0] != result.grid[0]:
        raise ValueError(f"frames must be uint8 [T, H_img, W_img, 3] with T={result.grid[0]} "
                         f"frames of the result, got shape {frames.shape}")
    return frames


def frame_grid(frames: np.ndarray, result: "MergeResult", *, cols: int = 4,
               by: str = "granularity", max_side: int = 256, gap: int = 4,
               **draw_kwargs) -> np.ndarray:
    """All frames' token maps tiled row by row, each downsized to max side <= max_side and
    labelled 't=3' in its top-left corner. frames [T, H_img, W_img, 3] -> [h, w, 3] uint8.
    Boxes are drawn after downsizing, so outlines stay one crisp pixel."""
    frames = _check_frames(frames, result)
    T = len(frames)
    tiles = [draw_token_map(fit_frame(f, max_side), result, t, by=by, **draw_kwargs)
             for t, f in enumerate(frames)]
    th, tw = tiles[0].shape[:2]
    cols = max(1, min(cols, T))
    rows = math.ceil(T / cols)
    canvas = Image.new("RGB", (cols * tw + (cols - 1) * gap, rows * th + (rows - 1) * gap),
                       CAPTION_BG)
    for t, tile in enumerate(tiles):
        x, y = (t % cols) * (tw + gap), (t // cols) * (th + gap)
        canvas.paste(Image.fromarray(tile), (x, y))
        _label(canvas, (x + 4, y + 3), f"t={t}")
    return np.asarray(canvas)


def token_at(result: "MergeResult", t: int, x: float, y: float,
             frame_size: tuple[int, int]) -> dict | None:
    """What was clicked at pixel (x, y) of frame t, a frame of frame_size = (H_img, W_img).

    Returns None outside the frame or on a dropped patch, else a dict: token, t, box_patches
    and box_pixels (y0, x0, y1, x1, exclusive: the box in THIS frame), size ('4x4 patches'),
    num_patches (over the whole chain), frames (first, last), chain_length (frames spanned),
    continues (the token started in an earlier frame).
    """
    t = _check_frame_index(result, t)
    _, H, W = result.grid
    if not (0 <= x < frame_size[1] and 0 <= y < frame_size[0]):
        return None
    row = int(np.searchsorted(pixel_edges(H, frame_size[0]), y, side="right")) - 1
    col = int(np.searchsorted(pixel_edges(W, frame_size[1]), x, side="right")) - 1
    token = int(_np(result.token_map[t, row, col]))
    if token < 0:
        return None
    boxes = frame_boxes(result, t, frame_size)
    inside = ((boxes.patch[:, 0] <= row) & (row < boxes.patch[:, 2])
              & (boxes.patch[:, 1] <= col) & (col < boxes.patch[:, 3]))
    k = int(np.flatnonzero(inside)[0])
    first, last = (int(v) for v in frame_span(result)[token])
    return {"token": token, "t": t,
            "box_patches": tuple(int(v) for v in boxes.patch[k]),
            "box_pixels": tuple(int(v) for v in boxes.pixel[k]),
            "size": size_label(boxes.patch[k]),
            "num_patches": int(_np(result.num_patches[token])),
            "frames": (first, last), "chain_length": last - first + 1,
            "continues": first < t}


def _caption(tile: np.ndarray, text: str, height: int = 16) -> Image.Image:
    """The tile with a dark caption strip below it."""
    h, w = tile.shape[:2]
    image = Image.new("RGB", (w, h + height), CAPTION_BG)
    image.paste(Image.fromarray(tile), (0, 0))
    ImageDraw.Draw(image).text((4, h + 2), text, fill=CAPTION_FG, font=_font(11))
    return image


def chain_animation(frames: np.ndarray, result: "MergeResult", path: str | Path, *,
                    fps: float = 4, by: str = "token", max_side: int = 320,
                    highlight: int | None = None) -> Path:
    """Write an endlessly looping GIF of every frame's token map to `path` and return it.

    by="token" keeps one colour per temporal chain, so a merged region stays the same colour
    (hatched after its first frame) for as long as it lasts. Each frame is captioned
    't=3  tokens in frame: 41, new: 12' (output tokens present / starting there).
    """
    frames = _check_frames(frames, result)
    counts = frame_counts(result)
    images = []
    for t, f in enumerate(frames):
        tile = draw_token_map(fit_frame(f, max_side), result, t, by=by, highlight=highlight)
        text = f"t={t}  tokens in frame: {counts['present'][t]}, new: {counts['new'][t]}"
        images.append(_caption(tile, text))
    path = Path(path)
    images[0].save(path, save_all=True, append_images=images[1:], loop=0,
                   duration=max(20, round(1000 / fps)), optimize=True)
    log.debug("wrote %d-frame token animation to %s (%d bytes)", len(images), path,
              path.stat().st_size)
    return path
