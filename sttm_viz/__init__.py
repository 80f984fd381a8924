"""STTM Studio drawing and app: token overlays, grids, animations and plotly figures of a
MergeResult for scripts and notebooks (draw, figures); the app: one user's session (session),
what each event does (handlers), what the page receives (payload), its words (guide), the
Gradio layout and wiring (ui), and the page's own merge and drawing (web/*.js).

Reads MergeResult and merge evidence (+ frames as uint8 [T, H_img, W_img, 3]); never reaches
into a model.
Names load on first use, so `sttm-studio --help` needs none of the app's packages.
"""
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .draw import (FrameBoxes, chain_animation, draw_token_map, frame_boxes, frame_counts,
                       frame_grid, pixel_edges, token_at, token_colours)
    from .figures import chains_figure, keep_summary, tokens_per_frame_figure

_LAZY = {**dict.fromkeys(["FrameBoxes", "chain_animation", "draw_token_map", "frame_boxes",
                          "frame_counts", "frame_grid", "pixel_edges", "token_at",
                          "token_colours"], ".draw"),
         **dict.fromkeys(["chains_figure", "keep_summary", "tokens_per_frame_figure"],
                         ".figures")}


def __getattr__(name):
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'sttm_viz' has no attribute {name!r}")


__all__ = list(_LAZY)
