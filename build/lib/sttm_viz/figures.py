"""Plotly figures and readouts of a MergeResult: where tokens live in time, how many per frame.

Reads the result only (numpy helpers from .draw); never a model. Shape legend: T frames,
H x W patch grid, N output tokens, S spatial tokens.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go

from .draw import (GRANULARITY_PALETTE, _np, box_areas, frame_counts, frame_span,
                   granularity_label, granularity_level, size_label)

if TYPE_CHECKING:
    from sttm_core import MergeResult

WEBGL_ABOVE = 2000   # segments; past this SVG scatter gets sluggish in the browser
BAR_PAD = 0.4        # a one-frame token still shows as a short bar around its frame


def _rgb(colour) -> str:
    return "rgb({},{},{})".format(*(int(c) for c in colour))


def token_positions(result: "MergeResult") -> np.ndarray:
    """[N] row-major position of each token's first box centre, in patch units (0 .. H*W-1):
    tokens near each other in a frame get near rows of the chains figure."""
    _, _, W = result.grid
    b = _np(result.boxes).astype(np.float64)
    cy, cx = (b[:, 1] + b[:, 3] - 1) / 2, (b[:, 2] + b[:, 4] - 1) / 2
    return cy * W + cx


def chains_figure(result: "MergeResult") -> go.Figure:
    """Time x space: one horizontal bar per output token from its first to its last frame,
    at the row-major position of its first box; colour and width by granularity.

    Long bars are static background merged over time, short ones moving parts. One trace per
    granularity (segments joined with None gaps), so thousands of tokens stay responsive.
    """
    boxes = _np(result.boxes)
    span = frame_span(result)
    pos = token_positions(result)
    level = granularity_level(box_areas(boxes))
    patches = _np(result.num_patches)
    trace = go.Scattergl if result.num_tokens > WEBGL_ABOVE else go.Scatter
    fig = go.Figure()
    for lv in np.unique(level):
        ids = np.flatnonzero(level == lv)
        text = [_hover(i, boxes[i], span[i], patches[i]) for i in ids]
        # three points per bar (start, middle, end: hover works along it), then a NaN gap
        # that breaks the line; one trace holds all bars of this granularity
        x = np.full((len(ids), 4), np.nan)
        x[:, 0], x[:, 2] = span[ids, 0] - BAR_PAD, span[ids, 1] + BAR_PAD
        x[:, 1] = (x[:, 0] + x[:, 2]) / 2
        y = np.repeat(pos[ids, None], 4, axis=1)
        y[:, 3] = np.nan
        hover = np.repeat(np.array(text, dtype=object), 4)
        hover[3::4] = None
        fig.add_trace(trace(
            x=x.ravel(), y=y.ravel(), mode="lines", hovertext=hover,
            hoverinfo="text", name=granularity_label(int(lv)), connectgaps=False,
            line=dict(color=_rgb(GRANULARITY_PALETTE[lv]), width=2 + 1.5 * int(lv))))
    T, H, W = result.grid
    fig.update_layout(
        title=f"Token chains: {result.num_tokens} tokens over {T} frames",
        xaxis=dict(title="frame", range=[-0.5 - BAR_PAD, T - 0.5 + BAR_PAD],
                   dtick=1 if T <= 32 else None),
        yaxis=dict(title="position in frame (row-major box centre)", range=[H * W, -1]),
        legend_title_text="granularity", hovermode="closest", template="plotly_white")
    return fig


def _hover(token: int, box: np.ndarray, span: np.ndarray, patches: int) -> str:
    """'token 17: 2x2 patches, frames 3-9, 28 patches'."""
    frames = f"frame {span[0]}" if span[0] == span[1] else f"frames {span[0]}-{span[1]}"
    count = f"{int(patches)} patch" + ("es" if patches != 1 else "")
    return f"token {token}: {size_label(box)}, {frames}, {count}"


def tokens_per_frame_figure(result: "MergeResult") -> go.Figure:
    """Per frame: spatial tokens (after spatial merging, before temporal), NEW tokens (chains
    starting there; they sum to num_tokens), and H*W patches as a dashed reference."""
    counts = frame_counts(result)
    T = result.grid[0]
    frames = list(range(T))
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=frames, y=counts["spatial"].tolist(), name="spatial tokens",
                             mode="lines+markers", line=dict(color="rgb(55,126,184)")))
    fig.add_trace(go.Bar(x=frames, y=counts["new"].tolist(), name="new tokens (chain starts)",
                         marker_color="rgb(255,127,0)", opacity=0.8))
    fig.add_trace(go.Scatter(x=frames, y=[counts["patches"]] * T, name="patches (H*W)",
                             mode="lines", line=dict(color="grey", dash="dash")))
    fig.update_layout(title="Tokens per frame", xaxis_title="frame", yaxis_title="tokens",
                      yaxis_rangemode="tozero", hovermode="x unified", template="plotly_white")
    return fig


def keep_summary(result: "MergeResult") -> dict:
    """Token counts and keep ratios for readouts: tokens_before (T*H*W), after_spatial,
    after_temporal (= num_tokens), their ratios, and patches a baseline dropped."""
    T, H, W = result.grid
    before = T * H * W
    spatial, after = result.num_spatial_tokens, result.num_tokens
    return {"grid": (T, H, W), "tokens_before": before, "after_spatial": spatial,
            "after_temporal": after, "spatial_keep_ratio": spatial / before,
            "temporal_keep_ratio": after / spatial if spatial else 0.0,
            "keep_ratio": after / before,
            "dropped_patches": int((_np(result.token_map) < 0).sum())}
