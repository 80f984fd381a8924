"""STTM Studio drawing: token overlays, grids, GIFs and plotly figures of a MergeResult.

Reads MergeResult (+ frames as uint8 [T, H_img, W_img, 3]); never imports a model.
"""
from .draw import (FrameBoxes, chain_animation, draw_token_map, frame_boxes, frame_counts,
                   frame_grid, pixel_edges, token_at, token_colours)
from .figures import chains_figure, keep_summary, tokens_per_frame_figure

__all__ = ["FrameBoxes", "chain_animation", "chains_figure", "draw_token_map", "frame_boxes",
           "frame_counts", "frame_grid", "keep_summary", "pixel_edges", "token_at",
           "token_colours", "tokens_per_frame_figure"]
