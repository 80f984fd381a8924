"""The page's words: what each control does, what each example shows, in the user's terms.

One place for the teaching text, so the layout (ui.py) stays layout and the words stay short.
"""
from __future__ import annotations

from dataclasses import dataclass

TITLE = "STTM Studio"
TAGLINE = ("A video LLM reads every frame as a grid of patch tokens. **STTM** acts *inside* the "
           "LLM: the decoder's first k layers read every token; at layer k STTM merges redundant "
           "ones, and the layers from k on read only what is left. **τS** joins similar patches "
           "*within* a frame into bigger boxes, **τT** joins a box with the same place in the "
           "previous frame. Drag the sliders and watch the map.")

MODES = {"Thresholds": "thresholds", "Token budget": "budget"}

HELP = {
    "mode": "Thresholds: you set τS and τT. Token budget: you say how many tokens to keep; "
            "τS and τT are found for this video.",
    "tau_s": "A box stays ONE token if its cosine similarity to each of its 4 quarters is at "
             "least τS; else it splits into them (a quadtree). Lower → bigger boxes.",
    "temporal": "Merge across frames (τT)",
    "tau_t": "A box joins the previous frame's box around (or inside) it if their cosine "
             "similarity is at least τT. Lower → longer chains.",
    "budget": "Share of the video's patch tokens to keep; τS and τT follow it.",
    "root": "Where the quadtree starts: each frame is first cut into this grid, whose cells "
            "only split from there (the legend's sizes are the boxes that result).",
    "method": "STTM, or a baseline that keeps the same token budget.",
    "layer": "The decoder layer whose input STTM merges (the paper: 2). Layers before it read "
             "every token.",
    "frames": "Frames sampled uniformly from the video.",
}

LABELS = {  # the controls' names (the static page's; ui.py writes the same in place)
    "example": "Example video", "mode": "Mode", "tau_s": "τS — spatial threshold",
    "tau_t": "τT — temporal threshold", "budget": "Token budget (share kept)",
    "root": "Root grid", "method": "Method", "presets": "Presets",
}

PAPER_BUDGETS = ("50%", "30%")  # the budgets the paper's thresholds of a model aim at


def presets(thresholds) -> dict[str, tuple[float, float]]:
    """Preset name -> (tauS, tauT), e.g. "Paper 50% (τS .85, τT .65)", for the paper's
    thresholds of one model (sttm_core.models.registry.paper_presets)."""
    def short(tau: float) -> str:
        return f"{tau:.2f}".lstrip("0")
    return {f"Paper {budget} (τS {short(s)}, τT {short(t)})": (s, t)
            for budget, (s, t) in zip(PAPER_BUDGETS, thresholds)}


PRESET_NOTE = ("The paper's thresholds for {model}, tuned on its hidden states, where they keep "
               "about 50% / 30%. On pixels most similarities lie in 0.9–1.0 (see the "
               "histograms), so the same thresholds merge far more.")

# The lab's own words (sttm_viz/web/lab.js, plots.js and app.js read them as STTM.words;
# {name} is filled in by the page). One place, so the app and the static lab say the same.
WORDS = {
    # the readout: each number with its own denominator (the video's patches)
    "after_tau_s": "{pct} of patches kept after τS",
    "after_tau_t": "{pct} of patches kept after τT",
    # what "similar" and a box are, shown before a token is clicked
    "primer": (
        "<b>{action} a token on the map</b> (or focus the map: arrow keys move, Enter "
        "inspects) to see why it is what it is.<br><br><b>Similar</b> means the cosine "
        "similarity of two feature vectors (1 = same direction). A <b>box</b>'s feature is "
        "the mean of its patches' features. <b>τS</b> walks a quadtree: from the root grid "
        "down, a box stays one token if it is at least τS similar to each of its 4 quarters, "
        "else it splits. <b>τT</b> then links a box to the box at the same place in the "
        "previous frame (one inside the other) if at least τT similar: the later one is "
        "<b>merged</b> into the earlier one's token (striped), so it is <b>kept</b> once."),
    # the map's caption: what τT did on the frame shown
    "carried": "Frame {frame}: {pct} of its area is carried over from earlier frames (grey "
               "stripes: τT merged it into an earlier token, nothing new is sent); the solid "
               "boxes are new tokens.",
    "carried_none": "Frame {frame}: every box is a new token (nothing here is at least τT "
                    "similar to the previous frame).",
    "carried_first": "Frame 1: every token is new (no earlier frame). Step → to see what τT "
                     "carries over.",
    # why a small box can stand for many patches
    "nested": "Why so many: a carried-over box joins the token of the box around it in the "
              "previous frame, so a token counts every patch of every frame it spans (nested "
              "carry-over), not just this box.",
    # the legend: box sizes (patches per box), not the root grid
    "legend_sizes": "patches per box (~: about):",
    "legend_approx": "~: about (sizes rounded to a power of 2; boxes on odd grids are not "
                     "square)",
    # the merge-layer diagram
    "layers_model": "Inside {model} ({layers} decoder layers): layers 0–{before} read all "
                    "{all} video tokens; STTM merges at layer {k}; layers {k}–{last} read "
                    "{kept}.",
    "layers_pixels": "In a model, layers below k read all {all} video tokens and STTM merges "
                     "at layer k (the paper: 2); the layers from k on read {kept}. No model "
                     "here: per-patch pixels stand in for layer k's input.",
    "layers_caption": "decoder layers",
    # presets on the features at hand
    "preset_keep": "On this video's {features}: {keeps}.",
    # query-aware baselines
    "asks_question": "{method} picks tokens by a question's attention: ask one in the Chat "
                     "tab. Meanwhile every patch is shown.",
    "asks_model": "{method} needs a model: it picks tokens by a question's attention inside "
                  "the model, and this page has none. Every patch is shown.",
    "baseline_mode": "baselines always keep the token budget",
    # what a control says while it does not act (its help comes back when it does)
    "set_by_budget": "set by the budget",
    "keeps_budget": "not used: {method} keeps the budget",
    "auto_not_used": "{why} · {name} not used",
    "tau_t_off": "off: merging across frames is off (tick the box above)",
    "no_quadtree": "not used: {method} has no quadtree",
    # the map while the server computes what the page cannot
    "finding_tables": "Finding τS and τT for every budget on this video (once per video)…",
    "computing_tokens": "{method}: computing its tokens…",
    # the page's scripts did not arrive (said by ui.py, which has no page scripts to ask)
    "scripts_failed": "The lab's scripts did not load ({error}). Reload the page; if this "
                      "stays, the server is not serving sttm_viz/web (Gradio's file route).",
}

# What the model's answers are worth: said wherever an answer appears (chat, TTFT, scores)
RANDOM_WEIGHTS = ("⚠ {model} has random weights (a test model): its answers are meaningless "
                  "and its scores are chance; only the token counts and timings mean something.")
TINY_MODEL = ("⚠ {model} is a tiny model ({params}M parameters): expect answers near chance.")

# The Load button: which video it loads
LOAD_LABEL = "Load the uploaded video (or, with none, the example again)"
LOAD_RULE = ("Load takes the uploaded video if there is one (uploading clears the Example "
             "box); with no upload it reloads the example, e.g. at a new frame count.")


@dataclass(frozen=True)
class Example:
    name: str   # file stem in assets/examples
    title: str
    look: str   # what to look for, with a setting to try


EXAMPLES = [
    Example("fast_motion", "Fast motion",
            "The still background chains across all frames (striped from frame 2 on); the "
            "ball and the square get fresh small tokens in every frame. Play it, then raise τT."),
    Example("static", "Static scene",
            "Almost nothing changes: from frame 2 on nearly every box is carried over. Only the "
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
