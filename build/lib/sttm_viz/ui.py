"""The Gradio app: `build_demo(engine)` -> gr.Blocks. No globals: each browser session has its
own `Session` (video, features, merge, chat, KV cache) in a gr.State.

Layout: the video and the STTM controls on the left; readouts and tabs on the right (token map
with a frame scrubber and click-to-inspect, all frames, temporal chains, tokens per frame,
chat with TTFT and QA scoring).
"""
from __future__ import annotations

import functools
import inspect
import logging
import tempfile
from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image

from sttm_core.methods import METHODS

from .draw import chain_animation, draw_token_map, frame_grid, token_at
from .figures import chains_figure, keep_summary, tokens_per_frame_figure
from .session import Engine, Session, Settings, UserError

log = logging.getLogger(__name__)

SESSION_TTL_S = 3600  # a session idle this long is dropped with its KV cache
# the method menu: STTM (at thresholds or the budget) and the baselines at the budget
METHOD_MENU = {m.label: m.name for m in METHODS.values() if m.name not in ("all", "sttm_budget")}
PRESETS = {"Paper 50% (τS .85, τT .65)": (0.85, 0.65), "Paper 30% (τS .80, τT .50)": (0.80, 0.50)}

try:  # Hugging Face Spaces (ZeroGPU): run model work on a GPU when the package is there
    import spaces
    on_gpu = spaces.GPU
except ImportError:  # anywhere else: a no-op
    def on_gpu(fn=None, **_):
        return fn if fn is not None else (lambda f: f)


def shows_errors(fn):
    """Turn UserError (and anything unexpected) into a message in the UI; the app lives on."""
    def report(err):
        if isinstance(err, UserError):
            return gr.Error(str(err))
        log.exception("unexpected error in %s", fn.__name__)
        return gr.Error(f"Something went wrong: {err}")

    if _is_generator(fn):
        @functools.wraps(fn)
        def gen(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as err:  # noqa: BLE001 - shown to the user, logged
                raise report(err) from err
        return gen

    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as err:  # noqa: BLE001 - shown to the user, logged
            raise report(err) from err
    return call


def _is_generator(fn) -> bool:
    return inspect.isgeneratorfunction(fn)


def build_demo(engine: Engine, *, default_frames: int = 16) -> gr.Blocks:
    num_layers = engine.num_layers

    def session_of(state) -> Session:
        return state if state is not None else Session(engine)

    def settings_of(session: Session, values) -> Settings:
        """The control values (in `controls` order) as Settings for this session's video."""
        mode, tau_s, tau_t, temporal, budget, root, layer, method = values
        choices = session.root_choices
        root_level = choices.index(root) if root in choices else 1
        return Settings(float(tau_s), float(tau_t), bool(temporal), root_level, int(layer),
                        mode == "Token budget", float(budget), METHOD_MENU[method])

    # --- handlers ----------------------------------------------------------------------------------
    @on_gpu
    @shows_errors
    def load(state, video, frames, colour_by, *values, progress=gr.Progress()):
        session = session_of(state)
        progress(0.1, desc="Decoding the video" + (" and running the model" if engine.has_model
                                                     else ""))
        session.load(video, frames, settings_of(session, values))
        choices, root = session.root_choices, values[5]
        root = root if root in choices else choices[min(1, len(choices) - 1)]
        progress(0.9, desc="Drawing")
        T = len(session.frames)
        return (session, *views(session, 0, colour_by),
                gr.update(choices=choices, value=root),
                gr.update(maximum=T - 1, value=0), qa_status(session), [])

    @on_gpu
    @shows_errors
    def remerge(state, frame_index, colour_by, *values):
        if state is None or state.clip is None:  # controls moved before any video: nothing to do
            return (state, *[gr.skip()] * 5)
        state.apply(settings_of(state, values))
        return (state, *views(state, frame_index, colour_by))

    @on_gpu
    @shows_errors
    def change_layer(state, frame_index, colour_by, *values, progress=gr.Progress()):
        """A new merge layer: the model runs again up to it (the encoded video is kept)."""
        if state is not None and state.chat is not None:
            progress(0.2, desc=f"Running the model up to layer {int(values[6])}")
        return remerge(state, frame_index, colour_by, *values)

    @shows_errors
    def show_frame(state, frame_index, colour_by, highlight=None):
        if state is None or state.result is None:
            return None
        t = min(int(frame_index), len(state.frames) - 1)
        by = "token" if colour_by == "token" else "granularity"
        return draw_token_map(_shown(state.frames[t:t + 1])[0], state.result.cpu(), t, by=by,
                              highlight=highlight)

    @shows_errors
    def inspect_token(state, frame_index, colour_by, evt: gr.SelectData):
        if state is None or state.result is None:
            return None, "Load a video first."
        t = min(int(frame_index), len(state.frames) - 1)
        x, y = evt.index
        info = token_at(state.result.cpu(), t, x, y, _shown(state.frames[:1]).shape[1:3])
        if info is None:
            return show_frame(state, frame_index, colour_by), "No token there (dropped patch)."
        first, last = info["frames"]
        text = (f"**Token {info['token']}**: {info['size']}, {info['num_patches']} patches over "
                f"frames {first}–{last} ({info['chain_length']} frame"
                f"{'s' if info['chain_length'] > 1 else ''}).")
        return show_frame(state, frame_index, colour_by, info["token"]), text

    @shows_errors
    def animate(state):
        state = _loaded(state)
        path = Path(tempfile.mkdtemp(prefix="sttm_")) / "chains.gif"
        return str(chain_animation(state.frames, state.result.cpu(), path))

    @on_gpu
    @shows_errors
    def chat(state, question, history, compare, *values):
        state = _loaded(state)
        settings = settings_of(state, values)
        history = list(history or []) + [{"role": "user", "content": question}]
        for reply, reference in state.ask(question, settings, compare):
            answer = reply.text + ("" if not reply.done else "\n\n" + _reply_note(reply))
            messages = history + [{"role": "assistant", "content": answer}]
            if reference is not None:
                verdict = "" if not reference.done else (
                    " — **same answer**" if reference.text.strip() == reply.text.strip()
                    else " — **different answer**")
                messages.append({"role": "assistant", "content":
                                 f"*All tokens:* {reference.text}{verdict}"
                                 + ("\n\n" + _reply_note(reference) if reference.done else "")})
            yield messages, ""

    @on_gpu
    @shows_errors
    def measure(state, *values, progress=gr.Progress()):
        state = _loaded(state)
        progress(0.1, desc="Prefilling with all tokens, then with STTM")
        t = state.measure_ttft(settings_of(state, values))
        rows = "\n".join(
            f"| {name} | {t[key]['tokens']} | {t[key]['ttft_s']:.3f} | "
            f"{t[key]['vision_encoder']:.3f} | {t[key]['llm_prefill']:.3f} | {t[key]['merge']:.4f} |"
            for name, key in [("all tokens", "all"), ("STTM", "sttm")])
        return (f"**TTFT speed-up {t['speedup']:.2f}×** (first question, video prefix built)\n\n"
                "| | prefill tokens | TTFT s | vision encoder s | LLM prefill s | merge s |\n"
                f"|---|---|---|---|---|---|\n{rows}")

    @on_gpu
    @shows_errors
    def score_qa(state, *values, progress=gr.Progress()):
        state = _loaded(state)
        result = state.score(settings_of(state, values),
                             progress=lambda done, total: progress(done / total))
        return (f"**STTM: {_pct(result.accuracy)}** vs **all tokens: "
                f"{_pct(result.reference_accuracy)}** on {len(result.answers)} questions "
                f"(same answer on {_pct(result.agreement)}; first-token KL "
                f"{result.first_token_kl:.4f}).")

    @shows_errors
    def upload_qa(state, path):
        state = _loaded(state)
        if path:
            state.set_qa(path)
        return qa_status(state)

    def qa_status(session: Session) -> str:
        if not session.qa:
            return "No QA set for this video: upload a JSON / JSONL / CSV of questions."
        return f"QA set: {len(session.qa)} multiple-choice questions."

    def preset(name):
        tau_s, tau_t = PRESETS[name]
        return "Thresholds", tau_s, tau_t, True

    # --- layout ------------------------------------------------------------------------------------
    with gr.Blocks(title="STTM Studio") as demo:
        state = gr.State(None, time_to_live=SESSION_TTL_S,
                         delete_callback=lambda s: s.drop_caches() if s else None)
        gr.Markdown("# STTM Studio\nMulti-granular spatio-temporal token merging (ICCV 2025): "
                    "watch a video become quadtree tokens and temporal chains, tune the "
                    "thresholds, and chat with the video.")
        if not engine.has_model:
            gr.Markdown(f"**No model loaded** — {engine.why_no_model} The token map and "
                        "chains below merge per-patch pixel features instead, so you can still "
                        "see how merging works; chat, TTFT and QA scoring need a model.")
        with gr.Row():
            with gr.Column(scale=1):
                video = gr.Video(label="Video", sources=["upload"])
                example_files = sorted(str(p) for p in engine.examples_dir.glob("*.mp4"))
                if example_files:
                    gr.Examples(example_files, inputs=video, label="Examples", elem_id="examples")
                frames = gr.Slider(1, engine.max_frames, value=default_frames, step=1,
                                   label="Frames (uniformly sampled)")
                load_btn = gr.Button("Load video", variant="primary")
                mode = gr.Radio(["Thresholds", "Token budget"], value="Thresholds",
                                label="Control")
                tau_s = gr.Slider(0.0, 1.0, value=0.8, step=0.01, label="τS spatial threshold")
                tau_t = gr.Slider(0.0, 1.0, value=0.6, step=0.01, label="τT temporal threshold")
                temporal = gr.Checkbox(True, label="Temporal merging")
                budget = gr.Slider(0.05, 1.0, value=0.3, step=0.01,
                                   label="Token budget (keep ratio, automatic τS/τT)")
                with gr.Row():
                    preset_buttons = [gr.Button(name, size="sm") for name in PRESETS]
                root = gr.Radio(["2x2", "4x4", "7x7", "14x14"], value="4x4",
                                label="Root grid (where the coarse-to-fine search starts)")
                method = gr.Dropdown(list(METHOD_MENU), value="STTM",
                                     label="Method (baselines keep the token budget)")
                layer = gr.Slider(0, max(num_layers - 1, 1), value=min(2, num_layers - 1),
                                  step=1, label="Merge layer k", interactive=engine.has_model)
            with gr.Column(scale=2):
                summary = gr.Markdown("Load a video to see its tokens.")
                with gr.Tabs():
                    with gr.Tab("Token map"):
                        with gr.Row():
                            frame_index = gr.Slider(0, max(default_frames - 1, 1), value=0, step=1,
                                                    label="Frame")
                            colour_by = gr.Radio(["granularity", "token"], value="granularity",
                                                 label="Colour by")
                        token_map = gr.Image(label="Tokens of this frame (click one)",
                                             interactive=False, elem_id="token-map")
                        token_info = gr.Markdown()
                    with gr.Tab("All frames"):
                        grid = gr.Image(label="Every frame's tokens", interactive=False)
                    with gr.Tab("Temporal chains"):
                        chains = gr.Plot(label="Tokens over time (x: frame, y: position)")
                        animate_btn = gr.Button("Animate the chains")
                        animation = gr.Image(label="Chains: one colour per token while it lasts",
                                             interactive=False)
                    with gr.Tab("Tokens per frame"):
                        per_frame = gr.Plot()
                    with gr.Tab("Chat"):
                        chatbot = gr.Chatbot(label="Chat with the video", height=360)
                        with gr.Row():
                            question = gr.Textbox(placeholder="Ask about the video…",
                                                  show_label=False, scale=4)
                            send = gr.Button("Send", variant="primary", scale=1)
                        compare = gr.Checkbox(False, label="Also answer with all tokens "
                                                           "(compare)")
                        measure_btn = gr.Button("Measure TTFT: all tokens vs STTM")
                        ttft = gr.Markdown()
                        qa_info = gr.Markdown()
                        qa_file = gr.File(label="QA set (JSON / JSONL / CSV)",
                                          file_types=[".json", ".jsonl", ".csv"])
                        score_btn = gr.Button("Score STTM vs all tokens on the QA set")
                        scores = gr.Markdown()

        controls = [mode, tau_s, tau_t, temporal, budget, root, layer, method]
        view_outputs = [summary, token_map, grid, chains, per_frame]
        load_btn.click(load, [state, video, frames, colour_by, *controls],
                       [state, *view_outputs, root, frame_index, qa_info, chatbot],
                       concurrency_limit=1, api_name="load")
        remerge_inputs = [state, frame_index, colour_by, *controls]
        for control in (*controls, colour_by):  # drags queue up: only the latest value runs
            handler = change_layer if control is layer else remerge
            control.change(handler, remerge_inputs, [state, *view_outputs], concurrency_limit=1,
                           trigger_mode="always_last",
                           api_name={tau_s: "remerge", layer: "change_layer"}.get(control))
        for button, name in zip(preset_buttons, PRESETS):
            button.click(lambda n=name: preset(n), None, [mode, tau_s, tau_t, temporal])
        frame_index.change(show_frame, [state, frame_index, colour_by], token_map,
                           api_name="show_frame")
        token_map.select(inspect_token, [state, frame_index, colour_by], [token_map, token_info])
        animate_btn.click(animate, state, animation, api_name="animate")
        chat_inputs = [state, question, chatbot, compare, *controls]
        send.click(chat, chat_inputs, [chatbot, question], concurrency_limit=1, api_name="chat")
        question.submit(chat, chat_inputs, [chatbot, question], concurrency_limit=1)
        measure_btn.click(measure, [state, *controls], ttft, concurrency_limit=1,
                          api_name="measure_ttft")
        qa_file.upload(upload_qa, [state, qa_file], qa_info, api_name="upload_qa")
        score_btn.click(score_qa, [state, *controls], scores, concurrency_limit=1,
                        api_name="score")
    return demo


def views(session: Session, frame_index: int, colour_by: str):
    """Every view of the session's current merge: (readout, token map of one frame, grid of all
    frames, chains plot, tokens-per-frame plot). The chains animation is made on demand."""
    result, frames = session.result.cpu(), _shown(session.frames)
    t = min(int(frame_index), len(frames) - 1)
    by = "token" if colour_by == "token" else "granularity"
    return (readout(session), draw_token_map(frames[t], result, t, by=by),
            frame_grid(session.frames, result, by=by), chains_figure(result),
            tokens_per_frame_figure(result))


def readout(session: Session) -> str:
    s = keep_summary(session.result)
    source = (f"layer-{session.features_layer} hidden states of the model" if session.chat
              else "per-patch pixels (no model: " + session.engine.why_no_model + ")")
    T, H, W = session.result.grid
    return (f"**{T} frames × {H}×{W} patches = {s['tokens_before']} tokens** → "
            f"{s['after_spatial']} after spatial merging ({s['spatial_keep_ratio']:.1%}) → "
            f"**{s['after_temporal']} tokens after temporal merging "
            f"({s['keep_ratio']:.1%} kept)**  \n"
            f"τS {_fmt(session.result.spatial_threshold)} · τT "
            f"{_fmt(session.result.temporal_threshold)} · root level "
            f"{session.result.root_level} · features: {source}"
            + (f"  \n**{session.note}**" if session.note else ""))


def _loaded(state) -> Session:
    """The session of a handler that needs a loaded video."""
    if state is None or state.clip is None:
        raise UserError("Load a video first.")
    return state


def _shown(frames: np.ndarray, min_side: int = 480) -> np.ndarray:
    """Frames enlarged (never shrunk) so small videos' token maps stay legible."""
    H, W = frames.shape[1:3]
    scale = min_side / max(H, W)
    if scale <= 1:
        return frames
    size = (round(W * scale), round(H * scale))
    return np.stack([np.asarray(Image.fromarray(f).resize(size, Image.BILINEAR)) for f in frames])


def _reply_note(reply) -> str:
    where = "cached video prefix" if reply.cache_reused else "video prefix built for this reply"
    return (f"*TTFT {reply.ttft_s:.2f} s · {where} · {reply.tokens_before} → "
            f"{reply.tokens_after} prefill tokens*")


def _fmt(value) -> str:
    return "off" if value is None else f"{value:.3f}"


def _pct(value) -> str:
    return "n/a" if value is None else f"{value:.0%}"
