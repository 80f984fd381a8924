"""The Gradio app: `build_demo(engine)` -> gr.Blocks. Layout here, what happens in
sttm_viz.handlers, the page's own drawing in sttm_viz/web. No globals: each browser session has
its own `Session` in a gr.State.

Layout (1400x900 without scrolling): the lab (token map of one frame, its player, the pipeline
readout patches -> after tauS -> after tauT, the inspector of a clicked token) on the left; the
controls (tauS, tauT, their histograms, root grid, thresholds/budget) beside it; below, what
folds away (your own video, frames, method, merge layer) and the model's tabs (chat, TTFT, QA).

Events: moving a control runs JavaScript only (the page re-merges from the video's evidence in
a few ms, sttm_viz/web/app.js), through the page's one bridge (web/gradio.js), which addresses
the controls by their protocol names (`page_js`); the server is asked only for what the page
cannot compute (a
video's evidence, budget tables, baselines' tokens) and for the model's work, which all
sessions share through ONE queue (concurrency_id "model", one at a time).
"""
from __future__ import annotations

import inspect
import json
import logging
import math
import re
from importlib import resources
from pathlib import Path
from numbers import Real

import gradio as gr

from sttm_core.qa import MAX_QUESTION_CHARS

from . import guide, handlers
from .gpu import in_worker, zero_gpu
from .protocol import CONTROLS as PAGE_CONTROLS, page_protocol
from .session import Engine, UserError, short_repr

log = logging.getLogger(__name__)

SESSION_TTL_S = 3600  # a session idle this long is dropped with its KV cache
# Gradio keeps each browser session's last outputs (the page's payload: frames, evidence) until
# it drops the session's record; it keeps this many times Engine.max_sessions records
GRADIO_SESSIONS_PER_SESSION = 4
MODEL_QUEUE = dict(concurrency_id="model", concurrency_limit=1)
# the page's own requests (budget tables, baselines' tokens): no model, several at a time
QUIET = dict(show_progress="hidden", trigger_mode="always_last", queue=True,
             concurrency_id="page", concurrency_limit=4)
# the page's ES modules (sttm_viz/web), imported from the entry of each page: gradio.js here,
# static.js in the static export
WEB_FILES = ["unionfind.js", "merge.js", "words.js", "draw.js", "app.js", "lab.js", "plots.js",
             "package.json"]  # package.json: Node reads the files as modules (the tests)
# the controls every handler receives, in its order (sttm_viz.handlers.controls_from)
CONTROLS = ["mode", "tauS", "tauT", "temporal", "budget", "root", "layer", "method"]


def web_dir() -> Path:
    return Path(str(resources.files("sttm_viz") / "web"))


def page_head() -> str:
    """The page's stylesheet and its bridge module (sttm_viz/web), served as files by Gradio.
    Gradio's head loader drops a script's type="module"; an inline script imports the module
    instead (relative to the page, so the app may sit under a path prefix)."""
    web = web_dir()
    gr.set_static_paths([web])
    url = f"gradio_api/file={web.as_posix()}"
    return (f'<link rel="stylesheet" href="{url}/lab.css">\n'
            f'<script>window.sttmPage = window.sttmPage || import("./{url}/gradio.js");</script>')


def page_js(action: str, inputs=(), outputs=(), **fixed) -> str:
    """An event the page answers by itself: the bridge (web/gradio.js) calls app[action] with
    the named controls' values (and `fixed`), and returns its updates for the named outputs."""
    args = ", ".join(json.dumps(x, ensure_ascii=False) for x in (action, list(inputs)))
    rest = ", ".join(json.dumps(x, ensure_ascii=False) for x in (list(outputs), fixed))
    return f"(...values) => STTM.send({args}, values, {rest})"


def build_demo(engine: Engine, *, default_frames: int = 16, gpu="spaces") -> gr.Blocks:
    """gpu: the decorator model events run under (`spaces.GPU` on a ZeroGPU Space, see
    sttm_viz.gpu); "spaces": that one when the package is there; None: in this process."""
    if gpu == "spaces":
        gpu = zero_gpu()
    if not engine.has_model:
        gpu = None  # pixels only: nothing needs a GPU
    num_layers = engine.num_layers
    head = page_head()
    c: dict[str, gr.components.Component] = {}  # controls and outputs by name
    examples = {e.title: e for e in guide.EXAMPLES if (engine.examples_dir / f"{e.name}.mp4").exists()}
    # the example a page opens on, loaded by itself (None: a CPU model waits for a click).
    # The dropdown starts on it: set from the server, a dropdown fires `input` and loads again
    first = next(iter(examples.values()), None)
    if engine.has_model and not _on_cuda(engine):
        first = None
    with _Blocks(title=guide.TITLE) as demo:
        demo.session_capacity = GRADIO_SESSIONS_PER_SESSION * engine.max_sessions
        state = gr.State(None, time_to_live=SESSION_TTL_S, delete_callback=engine.forget)
        with gr.Row(equal_height=False, elem_id="sttm-top"):
            gr.Markdown(f"# {guide.TITLE}\n{guide.TAGLINE}", elem_id="sttm-header")
            c["example"] = gr.Dropdown(list(examples), value=first and first.title,
                                       label="Example video",
                                       scale=0, min_width=260, elem_id="sttm-example")
        # elem_ids: lab.css reorders these on a phone (the map, then tauS and tauT under it)
        with gr.Row(equal_height=False, elem_id="sttm-main"):
            with gr.Column(scale=3, min_width=640, elem_id="sttm-lab-col"):
                c["lab"] = gr.HTML(
                    None, html_template="<div class='sttm-root'></div>", head=head,
                    js_on_load=_when_loaded("STTM.mountLab(element, props, watch);"),
                    elem_id="sttm-lab", apply_default_css=False,
                    protocol=page_protocol(engine.presets))
            with gr.Column(scale=1, min_width=380, elem_id="sttm-controls"):
                c["mode"] = _control("mode", show_label=False)
                c["budget"] = _control("budget", visible=False)
                with gr.Group():
                    c["tauS"] = _control("tauS")
                    _histogram("spatial")
                with gr.Group():
                    c["temporal"] = _control("temporal")
                    c["tauT"] = _control("tauT")
                    _histogram("temporal")
                c["root"] = _control("root")
                with gr.Row(elem_id="sttm-presets"):
                    presets = [gr.Button(name, size="sm") for name in engine.presets]
                gr.Markdown(f"<small>{engine.preset_note}</small>", elem_id="sttm-preset-note")
        with gr.Accordion("Your own video · frames · method · merge layer", open=False):
            with gr.Row():
                c["video"] = gr.Video(label="Upload a video", sources=["upload"], height=200)
                with gr.Column():
                    c["frames"] = gr.Slider(1, engine.max_frames, value=default_frames, step=1,
                                            label="Frames", info=guide.HELP["frames"],
                                            elem_id="sttm-frames")
                    load_btn = gr.Button(guide.LOAD_LABEL, variant="primary",
                                         elem_id="sttm-load")
                    gr.Markdown(f"<small>{guide.LOAD_RULE}</small>", elem_id="sttm-load-rule")
                    c["method"] = _control("method")
                    c["layer"] = gr.Slider(0, max(num_layers - 1, 1), value=min(2, num_layers - 1),
                                           step=1, label="Merge layer k", elem_id="sttm-layer",
                                           info=guide.HELP["layer"] if engine.has_model
                                           else "needs a model: pixels have no layers",
                                           interactive=engine.has_model)
        _model_tabs(c, engine)
        c["served"] = gr.HTML(None, visible="hidden", html_template="<div></div>",
                              js_on_load=_when_loaded("STTM.mountServer(trigger, props, watch);"))
        _wire(demo, c, state, engine, gpu, presets, load_btn, examples, first, default_frames)
    return demo


# a page control as the protocol describes it (kind -> the Gradio component that shows it)
_COMPONENTS = {
    "slider": lambda spec, **kw: gr.Slider(spec["min"], spec["max"], step=spec["step"], **kw),
    "radio": lambda spec, **kw: gr.Radio(spec["choices"], **kw),
    "select": lambda spec, **kw: gr.Dropdown(spec["choices"], **kw),
    "check": lambda spec, **kw: gr.Checkbox(**kw),
}


def _control(name: str, **options) -> gr.components.Component:
    """The page control `name` (sttm_viz.protocol.CONTROLS: kind, label, help, range or
    choices, default, page id); options: Gradio's own (visible, show_label)."""
    spec = PAGE_CONTROLS[name]
    return _COMPONENTS[spec["kind"]](spec, value=spec["default"], label=spec["label"],
                                     info=spec["info"], elem_id=spec["elem_id"], **options)


def _histogram(which: str) -> gr.HTML:
    return gr.HTML(None, html_template="<div class='sttm-root'></div>",
                   js_on_load=_when_loaded(f"STTM.mountHistogram(element, '{which}');"),
                   elem_id=f"sttm-hist-{which}", apply_default_css=False)


def _when_loaded(code: str) -> str:
    """js_on_load code run once the page's bridge module is loaded (the lab's head imports it);
    if it cannot load (a proxy that blocks Gradio's file route, a lost connection), the component
    says so instead of staying blank."""
    failed = json.dumps(guide.WORDS["scripts_failed"])
    return ("(function go() { if (!window.sttmPage) { setTimeout(go, 20); return; }"
            f" sttmPage.then(() => {{ {code} }}, (err) => {{ element.textContent ="
            f" {failed}.replace('{{error}}', err.message); }}); }})();")


def _model_tabs(c: dict, engine: Engine) -> None:
    """Chat, TTFT and QA scoring; without a model each says why in one line instead."""
    live = engine.has_model
    why = "" if live else f"*Needs a model — {engine.why_no_model}*"
    caveat = engine.answer_caveat  # random weights or a tiny model: said above every answer

    def heading():  # each tab's first lines: why it is empty, what its answers are worth
        gr.Markdown(why, visible=not live)
        gr.Markdown(f"*{caveat}*", visible=bool(caveat), elem_classes="sttm-caveat")

    with gr.Tabs():
        with gr.Tab("Chat"):
            heading()
            c["chat"] = gr.Chatbot(label="Chat with the video", height=320, visible=live,
                                   elem_id="sttm-chat")
            with gr.Row(visible=live):
                c["question"] = gr.Textbox(placeholder="Ask about the video…", label="Question",
                                           show_label=False, max_length=MAX_QUESTION_CHARS,
                                           scale=4)
                c["send"] = gr.Button("Send", variant="primary", scale=1)
            c["compare"] = gr.Checkbox(False, visible=live,
                                       label="Also answer with all tokens (both on a cached "
                                             "video prefix; same answer = same option, parsed "
                                             "as in scoring)")
        with gr.Tab("Time to first token"):
            heading()
            c["measure"] = gr.Button("Measure TTFT: all tokens vs the current setting",
                                     visible=live)
            c["ttft"] = gr.Markdown()
        with gr.Tab("QA accuracy"):
            heading()
            c["qa_info"] = gr.Markdown()
            c["qa_file"] = gr.File(label="QA set (JSON / JSONL / CSV)", visible=live,
                                   file_types=[".json", ".jsonl", ".csv"])
            c["score"] = gr.Button("Score the current setting vs all tokens", visible=live)
            c["scores"] = gr.Markdown()


# --- wiring -------------------------------------------------------------------------------------

def _wire(demo, c, state, engine, gpu, presets, load_btn, examples, first, default_frames):
    controls = [c[name] for name in CONTROLS]

    def out(*names):
        return [state] + [c[n] for n in names]

    def on_model(fn, outputs, **options):  # a handler whose work runs the model (on a GPU)
        return _handler(engine, fn, outputs, gpu=gpu, **options)

    load_outputs = ("lab", "root", "qa_info", "chat", "ttft", "scores")
    load_fn = _examples_shared(engine, on_model(handlers.load, load_outputs),
                               _handler(engine, handlers.load, load_outputs))
    done_loading = dict(fn=None, inputs=None, outputs=None, js="() => STTM.loading(null)")
    c["example"].select(None, c["example"], None,
                       js="(name) => window.STTM && STTM.loading(`Loading ${name}…`)")
    c["example"].select(_from_example(load_fn, examples, engine),
                       [state, c["example"], c["frames"], *controls], out(*load_outputs),
                       show_progress="hidden", api_name="load_example", **MODEL_QUEUE
                       ).then(**done_loading)
    # an upload is what Load loads: the example box no longer names another video
    c["video"].upload(lambda: None, None, c["example"], queue=False, show_progress="hidden")
    load_btn.click(None, None, None, js="() => STTM.loading('Loading the video…')")
    load_btn.click(_upload_or_example(load_fn, examples, engine),
                   [state, c["video"], c["example"], c["frames"], *controls], out(*load_outputs),
                   show_progress="hidden", api_name="load", **MODEL_QUEUE).then(**done_loading)

    # the page redraws by itself, no server call: each event names the controls it reads and
    # the ones it updates (the bridge passes them to the page's action by these names)
    def page(event, action: str, inputs=(), outputs=(), **fixed):
        event(None, [c[n] for n in inputs], [c[n] for n in outputs],
              js=page_js(action, inputs, outputs, **fixed))

    for name in ("tauS", "tauT", "root"):
        page(c[name].change, "control", [name])
    state_inputs = ("mode", "method", "temporal", "budget")
    state_outputs = ("mode", "tauS", "tauT", "temporal", "budget", "root")
    for name in ("mode", "method", "temporal", "served"):
        page(c[name].change, "controlState", state_inputs, state_outputs)
    page(c["budget"].change, "budgetMoved", ["budget"], ["tauS", "tauT"])
    for button, (tau_s, tau_t) in zip(presets, engine.presets.values()):
        # one re-merge; the four controls then follow (no-ops for the page)
        page(button.click, "preset", (), ("mode", "tauS", "tauT", "temporal"),
             tauS=tau_s, tauT=tau_t)

    # ... and asks the server only for what it cannot compute: the page triggers this
    # a request queued behind a method change runs with the new method (always_last): a
    # query-aware one without a model then gets no tokens, not an error toast
    c["served"].click(_handler(engine, handlers.sync, ("served",), check_method=False),
                      [state, *controls],
                      out("served"), api_name="sync", **QUIET)
    # input, not release: arrow keys and the number box move the merge layer too (and not
    # change, which also fires when the page mounts); a drag's many inputs run the model for
    # the last one only (always_last)
    c["layer"].input(None, c["layer"], None,
                     js="(k) => STTM.loading(`Running the model up to layer ${k}…`)")
    c["layer"].input(on_model(handlers.change_layer, ("lab", "ttft", "scores")),
                     [state, *controls], out("lab", "ttft", "scores"),
                     show_progress="hidden", api_name="change_layer", trigger_mode="always_last",
                     **MODEL_QUEUE).then(**done_loading)

    # the model: one queue for every session
    chat_fn = on_model(handlers.chat, ("chat", "question", "served"), needs_video=True)
    chat_inputs = [state, c["question"], c["chat"], c["compare"], *controls]
    c["send"].click(chat_fn, chat_inputs, out("chat", "question", "served"), api_name="chat",
                    **MODEL_QUEUE)
    c["question"].submit(chat_fn, chat_inputs, out("chat", "question", "served"), **MODEL_QUEUE)
    c["measure"].click(on_model(handlers.measure_ttft, ("ttft",), needs_video=True),
                       [state, *controls], out("ttft"), api_name="measure_ttft", **MODEL_QUEUE)
    c["score"].click(on_model(handlers.score, ("scores",), needs_video=True, progress=True),
                     [state, *controls], out("scores"), api_name="score", **MODEL_QUEUE)
    c["qa_file"].upload(_handler(engine, handlers.upload_qa, ("qa_info",), controls=False,
                                 needs_video=True),
                        [state, c["qa_file"]], out("qa_info"), api_name="upload_qa")
    if first is not None:
        demo.load(_from_example(load_fn, examples, engine),
                  [state, c["example"], c["frames"], *controls], out(*load_outputs),
                  show_progress="hidden", **MODEL_QUEUE).then(**done_loading)


def _on_cuda(engine: Engine) -> bool:
    return engine.has_model and engine.loaded.model.device.type == "cuda"


def _examples_shared(engine: Engine, on_gpu, in_place):
    """A load: a bundled example whose features another session computed is loaded here, in
    place (no GPU call: on a Space, every page opens on an example); anything else on_gpu."""
    layer = CONTROLS.index("layer")

    def load(request: gr.Request, state, path, frames, *values):
        try:  # a value that is wrong is not shared; on_gpu's checks say why
            shared = engine.example_features(path, frames, values[layer])
        except (TypeError, ValueError, IndexError):
            shared = None
        return (in_place if shared else on_gpu)(request, state, path, frames, *values)
    return load


def _upload_or_example(load_fn, examples: dict, engine: Engine):
    """The Load button: the uploaded video, or else the example picked (e.g. with new frames)."""
    def load_video(request: gr.Request, state, video, title, frames, *values):
        if not video and title in examples:
            video = str(engine.examples_dir / f"{examples[title].name}.mp4")
        return load_fn(request, state, video, frames, *values)
    return load_video


def _from_example(load_fn, examples: dict, engine: Engine):
    def load_example(request: gr.Request, state, title, frames, *values):
        if title not in examples:
            raise gr.Error("Pick an example from the list.")
        path = str(engine.examples_dir / f"{examples[title].name}.mp4")
        return load_fn(request, state, path, frames, *values)
    return load_example


def _handler(engine: Engine, fn, outputs: tuple[str, ...], *, controls: bool = True,
             needs_video: bool = False, progress: bool = False, gpu=None,
             check_method: bool = True):
    """A handler of sttm_viz.handlers as a Gradio callback: (state, *inputs[, *controls]) ->
    (state, *outputs in order); UserError (and anything unexpected) becomes a message. The
    session is in use (Engine.serving: never closed, its caches kept) until the handler, or
    the stream it yields, is done. gpu: run the handler's work in a GPU worker (sttm_viz.gpu);
    its inputs are checked here first, so a wrong value never waits for a GPU."""
    n_controls = len(CONTROLS) if controls else 0

    def inputs_of(session, args) -> tuple:
        if needs_video and session.video is None:
            raise UserError(session.closed or "Load a video first.")
        inputs, values = args[:len(args) - n_controls], args[len(args) - n_controls:]
        if n_controls:
            inputs = (*inputs, handlers.controls_from(session, *values,
                                                      check_method=check_method))
        return inputs

    def options() -> dict:  # made where the work runs (a progress bar is not sent anywhere)
        if not progress:
            return {}
        bar = gr.Progress()
        return {"progress": lambda done, total: bar(done / total)}

    def ordered(session, result: dict):
        return (session, *[result.get(name, gr.skip()) for name in outputs])

    if inspect.isgeneratorfunction(fn):
        def work_stream(session, *inputs):
            with _errors(fn):  # in a worker too: only a gr.Error's message comes back from one
                yield from fn(session, *inputs, **options())
        work_stream = in_worker(engine, gpu, fn.__name__, work_stream)

        def stream(request: gr.Request, state, *args):
            session = state if state is not None else engine.new_session(_browser(request))
            with _errors(fn), engine.serving(session):
                for result in work_stream(session, *inputs_of(session, args)):
                    yield ordered(session, result)
        stream.__name__ = fn.__name__
        return stream

    def work(session, *inputs):
        with _errors(fn):
            return fn(session, *inputs, **options())
    work = in_worker(engine, gpu, fn.__name__, work)

    def single(request: gr.Request, state, *args):
        session = state if state is not None else engine.new_session(_browser(request))
        with _errors(fn), engine.serving(session):
            return ordered(session, work(session, *inputs_of(session, args)))
    single.__name__ = fn.__name__
    return single


def _browser(request: gr.Request | None) -> str | None:
    """The browser session an event comes from (Gradio's session hash)."""
    return getattr(request, "session_hash", None)


class _errors:
    """Turn UserError (and anything unexpected) into a message in the page; the app lives on."""

    def __init__(self, fn):
        self.fn = fn

    def __enter__(self):
        return self

    def __exit__(self, kind, err, tb):
        if err is None or isinstance(err, gr.Error) or not isinstance(err, Exception):
            return False  # also a stream closed early (GeneratorExit): not an error
        if isinstance(err, UserError):
            raise gr.Error(str(err)) from err
        log.exception("unexpected error in %s", self.fn.__name__)
        raise gr.Error(f"Something went wrong: {_without_folders(str(err))}") from err


def _without_folders(text: str) -> str:
    """File paths in a message cut to their names: the server's folders are not the user's."""
    return re.sub(r"(?<![\w:/])(?:/[^/\s'\":]+)+/([^/\s'\":]+)", r"\1", text)


class _Blocks(gr.Blocks):
    """gr.Blocks that refuses a value it cannot read (a word where a number goes, a malformed
    chat history or file) with a message naming the control, instead of Gradio's generic
    "the upstream app raised an exception" (the handlers then check what can be read: ranges,
    NaN, choices, in handlers.controls_from); and that keeps at most `session_capacity`
    browser sessions' records (Gradio's default, 10,000, would hold each one's page payload)."""

    session_capacity = 10_000

    def launch(self, *args, **kwargs):
        kwargs.setdefault("state_session_capacity", self.session_capacity)
        return super().launch(*args, **kwargs)

    async def preprocess_data(self, block_fn, inputs, state, explicit_call=False):
        inputs, as_sent = _acceptable(block_fn.inputs, inputs, state)
        try:
            processed = await super().preprocess_data(block_fn, inputs, state, explicit_call)
        except gr.Error:
            raise
        except Exception as err:
            raise gr.Error(_unreadable(block_fn.inputs, inputs, err)) from err
        for i, value in as_sent.items():
            processed[i] = value
        return processed


# sliders the page writes automatic values into (the budget's thresholds): one it could not
# hold (a typed 1.5, an old page's −1) is clamped into the slider's range, never refused
CLAMPED_SLIDERS = ("sttm-tau-s", "sttm-tau-t")


def _acceptable(blocks, values, state) -> tuple[list, dict]:
    """(values Gradio accepts, {input index: value as sent}). Gradio refuses a Radio value
    that is not one of the choices this session last saw; but the root grid's choices are per
    video, so a page (or a load queued behind another) may still send the previous video's:
    such a value goes to the handler as sent (handlers.controls_from maps a grid to this
    video's nearest level and names anything else). A τ slider's number out of its range is
    clamped."""
    values, as_sent = list(values), {}
    for i, (block, value) in enumerate(zip(blocks, values)):
        if state is not None and block._id in state:
            block = state[block._id]  # as this session's last updates left it
        if isinstance(block, gr.Radio) and value is not None:
            if value not in [choice for _, choice in block.choices]:
                as_sent[i], values[i] = value, None  # Radio.preprocess(None) checks nothing
        elif isinstance(block, gr.Slider) and block.elem_id in CLAMPED_SLIDERS:
            if isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value):
                values[i] = min(max(value, block.minimum), block.maximum)
    return values, as_sent


def _unreadable(blocks, values, err: Exception) -> str:
    """Which input Gradio could not read, and what it expects there."""
    for block, value in zip(blocks, values):
        name = getattr(block, "label", None) or block.get_block_name()
        if isinstance(block, gr.Slider):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return f"{name} must be a number from {block.minimum:g} to {block.maximum:g} " \
                       f"(got {short_repr(value)})."
        elif isinstance(block, gr.Checkbox):
            if not isinstance(value, bool):
                return f"{name} must be true or false (got {short_repr(value)})."
        elif isinstance(block, gr.Textbox):
            if value is not None and not isinstance(value, (str, int, float)):
                return f"{name} must be text (got {short_repr(value)})."
        elif isinstance(block, gr.Chatbot):
            if value is not None and (not isinstance(value, list) or not all(
                    isinstance(m, dict) and "role" in m and "content" in m for m in value)):
                return f"{name} must be a list of messages {{'role': ..., 'content': ...}} " \
                       f"(got {short_repr(value)})."
        elif isinstance(block, (gr.Video, gr.File)):
            if value is not None and not isinstance(value, dict):
                return f"{name}: send a file (gradio_client.handle_file), not {short_repr(value)}."
    return f"An input could not be read: {str(err).splitlines()[0][:200]}"
