"""What the app does on each event, as plain functions: (session, inputs, Controls) -> a dict
of output name -> value. ui.py wires them to components by those names; tests call them
directly, without a server.

The page re-thresholds the token map by itself (sttm_viz/web); these handlers send it what it
cannot compute: a video's features and evidence (`load`, `change_layer`), the budget search's
thresholds and the baselines' tokens (`sync`, which the page calls when it needs them), and
everything that needs the model (chat, TTFT, scoring). Outputs not named in a returned dict
are left as they are.
"""
from __future__ import annotations

import logging
import math
import re
from pathlib import Path
from typing import Iterator

import gradio as gr

from sttm_core.methods import METHODS, parse
from sttm_core.reduction import OFF, ReductionError

from . import guide
from .payload import tokens_json, video_payload
from .protocol import BUDGET_RANGE, METHOD_MENU, TAU_RANGE
from .session import (DEFAULT_ROOTS, Controls, Session, UserError, VideoFeatures, check_flag,
                      check_number, short_repr)

log = logging.getLogger(__name__)

# the page re-thresholds STTM's own merge (the method registry says which methods are that);
# the server sends the others' tokens
SERVER_METHODS = tuple(name for name in METHOD_MENU.values() if not METHODS[name].thresholded)


def controls_from(session: Session | None, mode: str, tau_s, tau_t, temporal, budget, root: str,
                  layer, method: str, *, check_method: bool = True) -> Controls:
    """The page's control values (labels as shown) as Controls for this session's video: the
    one boundary where the thresholds go by their controls' names (tau_s, tau_t). Each value
    is checked (an API call may send anything) against its control's range, then parsed by the
    registry into the method's record (Thresholds.spatial_threshold on); a UserError says
    which is wrong. check_method=False: a query-aware baseline that cannot run here is no
    error (the page's own requests: one queued behind a method change may carry the new one)."""
    level = _root_level_of(session, root)
    top_layer = max(session.engine.num_layers - 1, 1) if session else math.inf
    mode = _choice("Mode", mode, guide.MODES)
    tau_s, tau_t = check_number("τS", tau_s, *TAU_RANGE), check_number("τT", tau_t, *TAU_RANGE)
    temporal = check_flag("Merge across frames", temporal)
    budget = check_number("Token budget", budget, *BUDGET_RANGE)
    merge_layer = int(check_number("Merge layer", layer, 0, top_layer, whole=True))
    method = _choice("Method", method, METHOD_MENU)
    if mode == "budget" or method != "sttm":
        if method == "sttm":  # at the budget; with temporal merging off space takes all of it
            method = "sttm_budget" if temporal else "spatial_only"
        values = dict(budget=budget)
    else:
        values = dict(tau_s=tau_s, tau_t=tau_t if temporal else OFF)
    try:  # the sliders' ranges are checked above; the method's own rules by the one parse
        reduction = parse(method, root_level=level, **values)
    except ReductionError as err:
        raise UserError(f"{err}.") from err
    controls = Controls(method, reduction, temporal, merge_layer)
    if check_method:
        _check_method(controls, session)
    return controls


def _root_level_of(session: Session | None, root) -> int:
    """The root grid control's level for this session's video (see root_level)."""
    choices = session.root_choices if session else DEFAULT_ROOTS
    level = root_level(root, choices)
    if level is None:
        if session is not None and session.video is not None:
            raise UserError(f"Root grid must be a grid such as {choices[-1]} (this video's: "
                            f"{', '.join(choices)}; got {short_repr(root)}).")
        level = 1  # no video (yet, or any more): the default
    return level


def _check_method(controls: Controls, session: Session | None) -> None:
    """Raise the reason a method cannot run here as a UserError (see _why_not)."""
    why = _why_not(controls, session)
    if why:
        raise UserError(why)


def _why_not(controls: Controls, session: Session | None) -> str:
    """Why a query-aware baseline (FastV, FrameFusion) cannot run here ("": it can): it ranks
    tokens by the question's attention inside the model, at the layer before the merge layer.
    Load and chat say it as an error; the page's own token requests get no tokens (it says why)."""
    method = METHODS[controls.method]
    if not method.query_aware:
        return ""
    if session is not None and not session.engine.has_model:
        return (f"{method.label} needs a model: it keeps the tokens a question attends to "
                f"inside the model. {session.engine.why_no_model}")
    if controls.merge_layer < 1:
        return (f"{method.label} ranks tokens by the attention of the layer before the merge "
                "layer: set the merge layer to 1 or more.")
    return ""


_GRID = re.compile(r"\s*(\d{1,5})\s*[×xX]\s*(\d{1,5})\s*")


def root_level(root, choices: list[str]) -> int | None:
    """The level (index in `choices`, coarse to fine) a root grid label stands for: its own,
    or, for a grid this video's pyramid does not have (root grids are per video: a page, or a
    load queued behind another, may still send the previous video's), the level nearest in
    size (patches per frame, on a log scale; the coarser on a tie). No choice (None) gives
    the default level; a value that is no grid at all gives None."""
    if root is None:
        return min(1, len(choices) - 1)
    if not isinstance(root, str):
        return None
    if root in choices:
        return choices.index(root)
    wanted = _GRID.fullmatch(root)
    if not wanted or 0 in (h := int(wanted[1]), w := int(wanted[2])):
        return None
    sizes = [_GRID.fullmatch(c) for c in choices]
    return min(range(len(choices)), key=lambda k: abs(math.log(
        int(sizes[k][1]) * int(sizes[k][2]) / (h * w))))


def _choice(name: str, label, menu: dict) -> str:
    if not isinstance(label, str) or label not in menu:
        raise UserError(f"{name} must be one of {', '.join(menu)} (got {label!r}).")
    return menu[label]


def load(session: Session, path, frames, controls: Controls) -> dict:
    """A new video: its features and evidence for the page; every view of the old one is
    cleared (chat, TTFT, scores, a clicked token, server tokens)."""
    video = session.load(path, frames, controls)
    choices = session.root_choices  # the new video's pyramid: the same depth from the top
    level = min(controls.root_level, len(choices) - 1)
    session.prefetch_table(level, controls.temporal)  # budget mode is instant when it is done
    root = choices[level]
    return {"lab": page_payload(session, video), "root": gr.update(choices=choices, value=root),
            "qa_info": qa_status(session), "chat": [], "ttft": "", "scores": ""}


def change_layer(session: Session, controls: Controls) -> dict:
    """A new merge layer: the model runs again up to it (the encoded video is kept)."""
    if session.closed:
        raise UserError(session.closed)
    if session.video is None or session.chat is None:
        return {}
    video = session.features_for(controls)
    return {"lab": page_payload(session, video), "ttft": "", "scores": ""}


def sync(session: Session, controls: Controls) -> dict:
    """What the page needs from the server for these controls: the budget search's thresholds
    (a table over every budget) or a baseline's tokens. {"served": message} for the page,
    tagged with the video it belongs to (the page ignores another video's)."""
    video = session.video
    if video is None:
        if session.closed:
            raise UserError(session.closed)
        return {"served": None}
    message = {"video": video.id, "tables": [], "tokens": None}
    levels = video.merger.num_levels
    method = controls.method
    rule = METHODS[method].thresholded
    if rule and controls.uses_budget:  # STTM's merge at the budget: the page needs its table
        root = min(controls.root_level, levels - 1) if rule.quadtree else levels - 1
        message["tables"].append(session.budget_table(root, rule.in_time(controls.temporal)))
    elif method in SERVER_METHODS and not _why_not(controls, session):
        result = session.reduce(controls)
        if result is not None:
            message["tokens"] = dict(tokens_json(result), budget=controls.reduction.budget)
    return {"served": message}


def page_payload(session: Session, video: VideoFeatures) -> dict:
    """What the page receives for a video's features (sttm_viz.payload), with where they came
    from, notes and the example's text; the static export writes the same."""
    engine = session.engine
    if video.layer is None:
        source = "pixels (per-patch colours; no model)"
    else:
        source = f"layer-{video.layer} hidden states of {engine.model_name}"
    notes = [guide.frames_note(video.clip.num_frames, len(video.frames))]
    payload = video_payload(video, source, notes)
    example = guide.example_named(Path(video.clip.path).stem)
    payload["example"] = {"title": example.title, "look": example.look} if example else None
    # the merge-layer diagram: where in the decoder these features are merged (None: pixels)
    payload["model"] = None if video.layer is None else {
        "name": engine.model_name, "layers": engine.num_layers, "layer": video.layer}
    payload["has_model"] = engine.has_model  # a query-aware baseline can ask a question
    return payload


def qa_status(session: Session) -> str:
    if not session.engine.has_model:
        return ""
    if not session.qa:
        return "No QA set for this video: upload a JSON / JSONL / CSV of questions."
    return f"QA set: {len(session.qa)} multiple-choice questions."


# --- the model ---------------------------------------------------------------------------------

def chat(session: Session, question: str, history: list, compare: bool,
         controls: Controls) -> Iterator[dict]:
    """Stream the answer (and, with compare, the all-token answer, both on a cached video
    prefix). With FastV the page receives the tokens the question chose."""
    from sttm_core.scoring import same_answer

    compare = check_flag("Compare", compare)
    history = list(history or []) + [{"role": "user", "content": question}]
    for reply, reference in session.ask(question, controls, compare):
        note = "" if not reply.done else "\n\n" + reply_note(reply) + _caveat(session)
        messages = history + [{"role": "assistant", "content": reply.text + note}]
        if reference is not None:
            verdict = ""
            if reference.done:
                same = same_answer(question, reply.text, reference.text)
                verdict = " — **same answer**" if same else " — **different answer**"
            messages.append({"role": "assistant", "content":
                             f"*All tokens:* {reference.text}{verdict}"
                             + ("\n\n" + reply_note(reference) if reference.done else "")})
        out = {"chat": messages, "question": ""}
        if reply.done and controls.config.query_aware and session.fastv is not None:
            out["served"] = sync(session, controls)["served"]
        yield out


def reply_note(reply) -> str:
    """One denominator per number: prefill tokens (video and text) as a count, the video's
    tokens as the share kept."""
    where = ("cached video prefix" if reply.cache_reused
             else "video prefix prefilled for this reply")
    return (f"*TTFT {reply.ttft_s:.2f} s · {where} · prefill {reply.tokens_before} → "
            f"{reply.tokens_after} tokens (video and question) · "
            f"{reply.keep_ratio:.0%} of the video's tokens kept*")


def _caveat(session: Session) -> str:
    """The warning every answer of a random or tiny model carries ("" otherwise)."""
    caveat = session.engine.answer_caveat
    return f"\n\n*{caveat}*" if caveat else ""


def measure_ttft(session: Session, controls: Controls) -> dict:
    t = session.measure_ttft(controls)
    name = describe(controls, session)
    rows = "\n".join(
        f"| {label} | {t[key]['tokens']} | {t[key]['ttft_s']:.3f} | "
        f"{', '.join(f'{s:.3f}' for s in t[key]['runs'])} |"
        for label, key in [("all tokens", "all"), (name, "sttm")])
    return {"ttft": (
        f"**TTFT speed-up {t['speedup']:.2f}×** — {name}, first question with the video "
        f"prefix prefilled for it (both ways); median of {t['runs']} runs after a warm-up.\n\n"
        "| | prefill tokens | TTFT s (median) | runs s |\n|---|---|---|---|\n"
        f"{rows}\n\nThe vision encoder (unchanged by STTM) ran once for this video: "
        f"{t['vision_encoder_s']:.2f} s, not included above." + _caveat(session))}


def score(session: Session, controls: Controls, progress=None) -> dict:
    """Every question of the video's QA set with the controls' reduction and with all tokens,
    as a table, with the chance level and the settings it was measured at."""
    result = session.score(controls, progress=progress)
    rows = []
    for i, (a, r) in enumerate(zip(result.answers, result.reference), 1):
        rows.append(f"| {i} | {_cell(a.item.question)} | {a.choice or '?'} | {r.choice or '?'} "
                    f"| {a.item.answer or '–'} | {'yes' if a.agrees_with(r) else 'no'} |")
    chance = sum(1 / len(a.item.options) for a in result.answers) / len(result.answers)
    keep = [a.reply.keep_ratio for a in result.answers]
    name = describe(controls, session)
    return {"scores": (
        f"**{name}: {_pct(result.accuracy)} right** · all tokens: "
        f"{_pct(result.reference_accuracy)} · same answer on {_pct(result.agreement)} · "
        f"chance {chance:.0%} · {sum(keep) / len(keep):.0%} of video tokens kept\n\n"
        "| # | question | STTM | all tokens | correct | agree |\n|---|---|---|---|---|---|\n"
        + "\n".join(rows) + "\n\nAnswers are option letters parsed from each reply "
        "('?': none found)." + _caveat(session))}


def upload_qa(session: Session, path) -> dict:
    if session.video is None:
        raise UserError("Load a video first.")
    if path:
        session.set_qa(path)
    return {"qa_info": qa_status(session)}


def describe(controls: Controls, session: Session | None = None) -> str:
    """The controls in the user's terms: 'STTM τS 0.85 · τT 0.65 · root 4×4'."""
    choices = session.root_choices if session else None
    grid = (choices[min(controls.root_level, len(choices) - 1)] if choices
            else f"level {controls.root_level}")
    p = controls.reduction
    if controls.method == "sttm_budget":
        return f"STTM at a {p.budget:.0%} budget (root {grid})"
    if controls.uses_budget:  # a baseline, or STTM at the budget in space only
        return f"{METHODS[controls.method].label} at {p.budget:.0%}"
    temporal = "off" if p.temporal_threshold is OFF else f"{p.temporal_threshold:.2f}"
    return f"STTM τS {p.spatial_threshold:.2f} · τT {temporal} · root {grid}"


def _cell(text: str) -> str:
    return text.replace("|", "/").replace("\n", " ")[:80]


def _pct(value) -> str:
    return "n/a" if value is None else f"{value:.0%}"
