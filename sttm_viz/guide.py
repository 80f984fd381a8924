"""The page's words: what each control does, what each example shows, in the user's terms.

One place for the teaching text, so the layout (ui.py) stays layout and the words stay short.
"""
from __future__ import annotations

from dataclasses import dataclass

TITLE = "STTM Studio"
TAGLINE = ("A video LLM reads every frame as a grid of patch tokens. **STTM** merges "
           "redundant ones before the model reads them: **τS** joins similar patches *within* a "
           "frame into bigger boxes, **τT** joins a box with the same place in the previous "
           "frame. Drag the sliders and watch the map.")

MODES = {"Thresholds": "thresholds", "Token budget": "budget"}

HELP = {
    "mode": "Thresholds: you set τS and τT. Token budget: you say how many tokens to keep; "
            "τS and τT are found for this video.",
    "tau_s": "A box stays ONE token if it is at least this similar to each of its 4 "
             "quarters. Lower → bigger boxes.",
    "temporal": "Merge across frames (τT)",
    "tau_t": "A box joins the previous frame's box around (or inside) it if at least this "
             "similar. Lower → longer chains.",
    "budget": "Share of the video's patch tokens to keep; τS and τT follow it.",
    "root": "The coarsest boxes: the search starts here and only splits.",
    "method": "STTM, or a baseline that keeps the same token budget.",
    "layer": "The decoder layer whose hidden states are merged (the paper: 2).",
    "frames": "Frames sampled uniformly from the video.",
}

LABELS = {  # the controls' names (the static page's; ui.py writes the same in place)
    "example": "Example video", "mode": "Mode", "tau_s": "τS — spatial threshold",
    "tau_t": "τT — temporal threshold", "budget": "Token budget (share kept)",
    "root": "Root grid", "method": "Method", "presets": "Presets",
}

PRESETS = {  # name -> (tauS, tauT): the paper's settings for LLaVA-OneVision-7B
    "Paper 50% (τS .85, τT .65)": (0.85, 0.65),
    "Paper 30% (τS .85, τT .55)": (0.85, 0.55),
}
PRESET_NOTE = ("The paper's thresholds were tuned on a model's hidden states. Similarities "
               "depend on the features: on pixels most lie in 0.9–1.0 (see the histograms), so "
               "the same thresholds merge far more.")


@dataclass(frozen=True)
class Example:
    name: str   # file stem in assets/examples
    title: str
    look: str   # what to look for, with a setting to try


EXAMPLES = [
    Example("fast_motion", "Fast motion",
            "The still background chains across all frames (striped after frame 0); the ball "
            "and the square get fresh small tokens in every frame. Play it, then raise τT."),
    Example("static", "Static scene",
            "Almost nothing changes: after frame 0 nearly every box is carried over. Only the "
            "blinking light in a corner gets new tokens. Try τT 0.99."),
    Example("camera_pan", "Camera pan",
            "Everything slides left a little each frame, so fewer boxes match the previous "
            "frame than in the static scene. Compare the striped share with Static."),
    Example("scene_cuts", "Scene cuts",
            "Four scenes with hard cuts: chains break at every cut (see the chains plot: new "
            "tokens jump at each cut)."),
    Example("text_overlay", "Text overlay",
            "A caption word changes every second: the caption bar gets small new boxes at each "
            "change while the landscape stays merged. Try τS 0.98."),
    Example("needle_word", "Needle: a word",
            "The word APPLE shows for one second: it must keep its own fine tokens to be "
            "readable. Lower τS until it blurs into big boxes."),
    Example("needle_order", "Needle: order",
            "Three coloured shapes appear one after the other: each gets new tokens when it "
            "appears. Click one to see why it was not merged."),
    Example("needle_count", "Needle: count",
            "A red star shows up three separate times: three bursts of new tokens in the "
            "chains plot."),
]


def example_named(stem: str) -> Example | None:
    """The bundled example a video file is (by its name), if any."""
    return next((e for e in EXAMPLES if e.name == stem), None)


def frames_note(frames: int, token_frames: int) -> str:
    """Why a model sees fewer token frames than frames (Qwen-VL folds frame pairs)."""
    if token_frames == frames:
        return ""
    per = round(frames / token_frames)
    plural = "" if token_frames == 1 else "s"
    return (f"This model folds {per} frames into one token frame: {frames} frames → "
            f"{token_frames} token frame{plural}.")
