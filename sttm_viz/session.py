"""One app user's session: their video, its merge-layer features and evidence, the chat.

The handlers (sttm_viz.handlers) call these methods; they return plain data and raise
`UserError` with a message to show. Features come from the model's merge layer (through the
public VideoChat runtime, in the model's own dtype, so the page merges exactly what the model
merges) or, with no model, from per-patch pixels. The page re-thresholds by itself from the
features' evidence (sttm_core.evidence); the server reduces only what the page cannot (the
pooling baseline, FastV) and answers questions.
"""
from __future__ import annotations

import logging
import math
import secrets
import threading
import weakref
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from numbers import Real
from pathlib import Path

import numpy as np

from sttm_core import STTMConfig, VideoTokenMerger
from sttm_core.evidence import MergeEvidence, merge_evidence
from sttm_core.examples import examples_dir
from sttm_core.merge import MergeResult
from sttm_core.methods import reduce_tokens
from sttm_core.models.registry import paper_presets
from sttm_core.pixels import pixel_patch_features
from sttm_core.qa import MAX_QUESTION_CHARS
from sttm_core.reduction import Budget, Reduction, Thresholds
from sttm_core.video import VideoClip, VideoError, load_video

log = logging.getLogger(__name__)
DEFAULT_ROOTS = ["2×2", "4×4", "7×7", "14×14"]  # a 14x14 grid's pyramid, before any video


class UserError(Exception):
    """Something the user can fix; the message is shown as is."""


def check_number(name: str, value, low: float, high: float, *, whole: bool = False) -> float:
    """`value` as a float if it is a finite number in [low, high] (a whole one if `whole`);
    else a UserError naming the control. An API call can send anything: NaN, a word, True."""
    ok = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not low <= value <= high or (whole and value != int(value)):
        kind = "a whole number" if whole else "a number"
        raise UserError(f"{name} must be {kind} from {low:g} to {high:g} "
                        f"(got {short_repr(value)}).")
    return float(value)


def check_flag(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise UserError(f"{name} must be true or false (got {short_repr(value)}).")
    return bool(value)


def short_repr(value, limit: int = 40) -> str:
    """repr(value), cut to `limit` characters (a message quotes what was sent)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


@dataclass
class Engine:
    """What all sessions share: the loaded model (or None, with the reason) and limits.

    Memory stays bounded: at most `max_sessions` sessions hold a video (their features, the
    encoded video); beyond that the longest-idle one is closed (its browser is told to load a
    video again). At most `max_cached_sessions` of them also keep KV caches (rebuilt on their
    next question). A session in use (an event of it running, a reply streaming) is never
    closed nor has its caches dropped: `serving` marks it."""

    loaded: object | None           # sttm_core LoadedModel, or None in the fallback
    why_no_model: str = ""
    max_seconds: float = 600.0      # longest video accepted
    max_frames: int = 64
    max_new_tokens: int = 256       # longest reply (a reply holds the one model queue)
    max_sessions: int = 32          # sessions that hold a video
    max_cached_sessions: int = 4    # sessions whose KV caches stay in memory
    examples_dir: Path = field(default_factory=examples_dir)
    examples_kept: int = 8          # bundled examples' model features shared by every session
    # id(session) -> weakref, least recently used first
    _sessions: OrderedDict = field(default_factory=OrderedDict, repr=False)
    _cached: OrderedDict = field(default_factory=OrderedDict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # browsers (Gradio session hashes) that held a video here, most recent last: Gradio may
    # forget a browser's state (idle for an hour, or beyond its record limit) without a word
    _browsers: OrderedDict = field(default_factory=OrderedDict, repr=False)
    # (example, frames, merge layer) -> VideoFeatures, least recently used first: a page opens
    # on an example, so after the first visitor the first view costs no model work (no GPU call)
    _examples: OrderedDict = field(default_factory=OrderedDict, repr=False)
    # budget tables are computed here, one at a time, ahead of need (they take seconds)
    background: ThreadPoolExecutor | None = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="sttm-tables"),
        repr=False)

    def __post_init__(self):
        if self.max_sessions < 1 or self.max_cached_sessions < 1:
            raise ValueError("max_sessions and max_cached_sessions must be at least 1")

    def for_worker(self) -> "Engine":
        """This engine as a GPU worker forked from this process sees it (ZeroGPU): the same
        model and limits; its own lock and registries (another thread may have held ours at
        the fork) and no background pool (work left running there would die with the worker;
        budget tables are this process's)."""
        own = {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}
        return Engine(**{**own, "background": None})

    def new_session(self, browser: str | None = None) -> "Session":
        """A session for a browser whose state Gradio holds none of: new, or one whose video
        this app held and has forgotten, which is told so on its next event (not "load a
        video first" as if it never had one)."""
        session = Session(self, browser=browser)
        with self._lock:
            if browser is not None and browser in self._browsers:
                session.closed = FORGOTTEN.format(self.max_sessions)
        return session

    @contextmanager
    def serving(self, session: "Session"):
        """One event of `session` (a reply's whole stream included): meanwhile it is in use;
        afterwards it is the most recent, and idle sessions beyond max_sessions are closed."""
        with self._lock:
            session.busy += 1
        try:
            yield session
        finally:
            with self._lock:
                session.busy -= 1
                _most_recent(self._sessions, session)
                if session.video is not None and session.browser is not None:
                    self._browsers.pop(session.browser, None)
                    self._browsers[session.browser] = None
                    while len(self._browsers) > BROWSERS_REMEMBERED:
                        self._browsers.popitem(last=False)
                for old in _idle_beyond(self._sessions, self.max_sessions,
                                        lambda s: s.video is not None):
                    self._cached.pop(id(old), None)
                    old.close(f"This session was closed to make room for others (the app keeps "
                              f"the {self.max_sessions} most recently used). Load a video to "
                              "start again.")

    def example_features(self, path, num_frames, layer) -> "VideoFeatures | None":
        """A bundled example's model features at this many frames and merge layer, if a session
        computed them (None: not kept, not an example, or no model)."""
        key = self._example_key(path, num_frames, layer)
        with self._lock:
            video = self._examples.get(key) if key else None
            if video is not None:
                self._examples.move_to_end(key)
            return video

    def keep_example(self, video: "VideoFeatures | None") -> None:
        """Share a session's features if they are a bundled example's (read-only: a session
        replaces its video, never changes it; the budget tables it adds are shared too)."""
        key = video and self._example_key(video.clip.path, video.clip.num_frames, video.layer)
        if not key:
            return
        with self._lock:
            self._examples.setdefault(key, video)
            while len(self._examples) > self.examples_kept:
                self._examples.popitem(last=False)

    def _example_key(self, path, num_frames, layer) -> tuple | None:
        if not self.has_model or layer is None or not path:
            return None
        path = Path(path)
        if path.parent.resolve() != Path(self.examples_dir).resolve():
            return None
        return path.name, int(num_frames), int(layer)

    def touch(self, session: "Session") -> None:
        """`session` is about to use the model: its KV caches stay; the least recently used
        idle sessions beyond max_cached_sessions drop theirs."""
        with self._lock:
            _most_recent(self._cached, session)
            for old in _idle_beyond(self._cached, self.max_cached_sessions):
                old.drop_caches()

    def forget(self, session: "Session | None") -> None:
        """A session's browser is gone (its state expired): drop everything it holds."""
        if session is None:
            return
        with self._lock:
            self._sessions.pop(id(session), None)
            self._cached.pop(id(session), None)
            if not session.busy:
                session.close("This session expired. Reload the page.")

    @property
    def open_sessions(self) -> list["Session"]:
        """The sessions that hold a video (least recently used first)."""
        with self._lock:
            live = [ref() for ref in self._sessions.values()]
        return [s for s in live if s is not None and s.video is not None]

    @property
    def cached_sessions(self) -> list["Session"]:
        with self._lock:
            live = [ref() for ref in self._cached.values()]
        return [s for s in live if s is not None]

    @property
    def has_model(self) -> bool:
        return self.loaded is not None

    @property
    def num_layers(self) -> int:
        return self.loaded.adapter.num_layers if self.loaded else 1

    @property
    def model_name(self) -> str:
        return Path(self.loaded.name).name if self.loaded else ""

    @property
    def presets(self) -> dict[str, tuple[float, float]]:
        """The paper's thresholds for this model's family, as named presets (LLaVA-OneVision-7B's
        without a model or for a family the paper did not run)."""
        from . import guide

        return guide.presets(paper_presets(self.loaded.adapter if self.loaded else None)[1])

    @property
    def preset_note(self) -> str:
        from . import guide

        return guide.PRESET_NOTE.format(
            model=paper_presets(self.loaded.adapter if self.loaded else None)[0])

    @cached_property
    def answer_caveat(self) -> str:
        """A warning for every answer of a model whose answers mean nothing (random weights, or
        too small to read a video); "" for a real model or none. Worked out once: it goes
        under every answer."""
        if not self.loaded:
            return ""
        from sttm_core.models.checkpoints import has_random_weights

        from . import guide

        model = self.loaded.model
        if has_random_weights(model):
            return guide.RANDOM_WEIGHTS.format(model=self.model_name)
        params = sum(p.numel() for p in model.parameters())
        if params < TINY_PARAMS:
            return guide.TINY_MODEL.format(model=self.model_name, params=f"{params / 1e6:.1f}")
        return ""


BROWSERS_REMEMBERED = 100_000  # session hashes (a few MB at most)
TINY_PARAMS = 100_000_000  # fewer parameters than this: a model too small to answer
FORGOTTEN = ("This session's video is gone: the app forgets a session idle for an hour, or "
             "when many newer ones came after it (it keeps the {} most recently used). Load a "
             "video to start again.")


def _most_recent(registry: OrderedDict, session: "Session") -> None:
    registry.pop(id(session), None)
    registry[id(session)] = weakref.ref(session)


def _idle_beyond(registry: OrderedDict, limit: int, counts=lambda s: True) -> list["Session"]:
    """Remove and return the least recently used idle sessions of `registry` while more than
    `limit` of its sessions count; sessions in use stay (the limit holds again once they are
    done). Entries of sessions gone are dropped on the way."""
    live = []
    for key, ref in list(registry.items()):
        if ref() is None:
            del registry[key]
        elif counts(ref()):
            live.append((key, ref()))
    out, excess = [], len(live) - limit
    for key, session in live:
        if excess <= 0:
            break
        if not session.busy:
            del registry[key]
            out.append(session)
            excess -= 1
    return out


@dataclass(frozen=True)
class Controls:
    """The page's controls, as every handler receives them: parsed once, at the boundary
    (sttm_viz.handlers.controls_from), into the registry method they run and its record.
    `config` hands that record on as it is.

    method: a key of sttm_core.methods.METHODS ("sttm" at thresholds; at a budget STTM runs as
    "sttm_budget", or "spatial_only" with the temporal switch off; or a baseline);
    reduction: its record (sttm_core.reduction: Thresholds or Budget); temporal: the switch."""

    method: str = "sttm"
    reduction: Reduction = Thresholds()
    temporal: bool = True
    merge_layer: int = 2

    @property
    def uses_budget(self) -> bool:
        return isinstance(self.reduction, Budget)

    @property
    def root_level(self) -> int:
        return self.reduction.root_level

    @property
    def config(self) -> STTMConfig:
        return STTMConfig.of(self.method, self.reduction, merge_layer=self.merge_layer)


@dataclass
class VideoFeatures:
    """One video's features from one source, with what the page needs of them. Replaced, never
    changed, when the video or the merge layer changes (so a handler holding one stays
    consistent); `tables` only grows."""

    id: int
    clip: VideoClip
    frames: np.ndarray            # [T', H_img, W_img, 3] one picture per token frame
    layer: int | None             # merge layer the features come from (None: pixels)
    merger: VideoTokenMerger
    evidence: MergeEvidence
    timings: dict = field(default_factory=dict)  # the model's work for them (seconds)
    tables: dict = field(default_factory=dict)  # (root_level, temporal) -> Future of a table

    @property
    def folded(self) -> int:
        """Video frames per token frame (2 for Qwen-VL's frame pairs)."""
        return max(1, round(self.clip.num_frames / len(self.frames)))

    def __getstate__(self) -> dict:
        """Pickled (to or from a GPU worker): budget tables under way travel as their keys
        only; the process that receives them computes them again when asked."""
        return {**self.__dict__, "tables": dict.fromkeys(self.tables)}


@dataclass
class Session:
    engine: Engine
    video: VideoFeatures | None = None
    chat: object | None = None          # VideoChat with the model
    reference: object | None = None     # VideoChat with all tokens, for "compare"
    qa: list = field(default_factory=list)
    fastv: MergeResult | None = None    # FastV's tokens of the last question (query-aware)
    busy: int = 0                       # events of this session running now (Engine.serving)
    closed: str = ""                    # why its video was dropped (Engine limits), if it was
    browser: str | None = None          # the browser session it serves (Gradio's hash)
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    # --- to a GPU worker and back (ZeroGPU; sttm_viz.gpu) ----------------------------------------
    def __getstate__(self) -> dict:
        """What a worker needs: the video, the chats (their caches packed, see VideoChat), the
        QA set. Not the engine (the worker has the model), locks or the in-use count."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name not in ("engine", "busy", "lock")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, engine=None, busy=0, lock=threading.RLock())

    def attach(self, engine: Engine) -> "Session":
        """In a GPU worker, after unpickling: its engine; the chats run on its model."""
        self.engine = engine
        for chat in (self.chat, self.reference):
            if chat is not None:
                chat.attach(engine.loaded)
        return self

    def take(self, worker: "Session") -> None:
        """Keep what a GPU worker's copy of this session made (ZeroGPU's call returned it):
        the video (ours, with its budget tables, if it is the same one), the chats with their
        cached prefixes, FastV's tokens, the QA set. Budget tables the worker wanted start here."""
        if worker is self:
            return
        with self.lock:
            video = worker.video
            if video is not None and self.video is not None and video.id == self.video.id:
                video = self.video
            self.video, self.chat, self.reference = video, worker.chat, worker.reference
            self.fastv, self.qa, self.closed = worker.fastv, worker.qa, worker.closed
            wanted = [key for key, table in video.tables.items() if table is None] if video else []
        self.engine.keep_example(video)  # made in a worker: kept here, where the next page opens
        for key in wanted:
            self.prefetch_table(*key)

    @property
    def clip(self) -> VideoClip | None:
        return self.video.clip if self.video else None

    # --- video -----------------------------------------------------------------------------------
    def load(self, path, num_frames, controls: Controls) -> VideoFeatures:
        """Decode a video and compute its features (and evidence) for these controls. Built
        aside and committed only when everything succeeded: a failed load changes nothing. A
        bundled example another session loaded comes from the engine, with no model work (this
        session's chat prefills its prefix at the first question)."""
        if not path:
            raise UserError("Choose a video first: pick an example or upload one.")
        num_frames = int(check_number("Frames", num_frames, 1, self.engine.max_frames, whole=True))
        shared = self.engine.example_features(path, num_frames, controls.merge_layer)
        clip = shared.clip if shared else self._decode(path, num_frames)
        chat = None
        if self.engine.has_model:
            from sttm_core.chat import VideoChat

            chat = VideoChat(self.engine.loaded, controls.config, num_frames=num_frames,
                             max_new_tokens=self.engine.max_new_tokens)
            chat.set_clip(clip)
        video = shared or self._features(clip, controls, chat)
        self.engine.keep_example(video)
        qa = _bundled_qa(path, self.engine.examples_dir)
        with self.lock:
            self.video, self.chat, self.reference, self.fastv = video, chat, None, None
            self.qa, self.closed = qa, ""
        return video

    def _decode(self, path, num_frames: int) -> VideoClip:
        try:
            clip = load_video(path, num_frames)
        except VideoError as err:
            raise UserError(str(err)) from err
        if clip.duration > self.engine.max_seconds:
            raise UserError(f"{Path(path).name} is {clip.duration:.0f} s long; this app takes "
                            f"videos up to {self.engine.max_seconds:.0f} s.")
        return clip

    def features_for(self, controls: Controls) -> VideoFeatures:
        """The current video's features for these controls: recomputed (the model runs up to
        the new layer) only when the merge layer changed. If that fails, nothing changed."""
        with self.lock:
            video = self._loaded()
            if self.chat is None or video.layer == controls.merge_layer:
                return video
            config = self.chat.config
            try:
                new = self._features(video.clip, controls, self.chat)
            except Exception:
                self.chat.set_config(config)  # back to the features the page shows
                raise
            encoder = max(video.timings.get("vision_encoder", 0.0),
                          new.timings.get("vision_encoder", 0.0))
            new.timings["vision_encoder"] = encoder  # ran once, for the first layer
            self.video, self.fastv = new, None
            return new

    def _features(self, clip: VideoClip, controls: Controls, chat) -> VideoFeatures:
        """Features of `clip` from `chat`'s model at the controls' merge layer (pixels without
        a model). Changes nothing of the session (`chat` may not be its own yet)."""
        timings = {}
        if chat is None:
            features, frames, layer = pixel_patch_features(clip.frames), clip.frames, None
        else:
            self.engine.touch(self)
            config, layer = controls.config, controls.merge_layer
            if config.query_aware:  # its merge needs a question: prefill the video unmerged
                config = STTMConfig.all_tokens(layer)
            chat.set_config(config)
            timings = dict(chat.prepare())
            features = chat.video_features()  # [T', H, W, D] layer k's input, model dtype
            frames = clip.frames[chat.token_frame_starts()]
        # a family that writes a timestamp before each token frame keeps a token in every frame;
        # on the CPU: the page's evidence and budget tables are this process's work (ZeroGPU:
        # outside a GPU call there is no GPU)
        merger = VideoTokenMerger(features.cpu(),
                                  keep_every_frame=bool(chat and chat.keeps_every_frame))
        # a random id (not a counter): GPU workers forked from one state make videos too
        return VideoFeatures(secrets.randbits(48), clip, frames, layer, merger,
                             merge_evidence(merger), timings)

    def _loaded(self) -> VideoFeatures:
        video = self.video
        if video is None:
            raise UserError(self.closed or "Load a video first.")
        return video

    def close(self, why: str) -> None:
        """Drop the video and everything made from it (memory); `why` is what this session's
        next event is told. Only for a session not in use (see Engine)."""
        self.video = self.chat = self.reference = self.fastv = None
        self.qa = []
        self.closed = why

    # --- reductions the page cannot do by itself ---------------------------------------------------
    def budget_table(self, root_level: int, temporal: bool) -> dict:
        """The budget search's thresholds for every budget value (see sttm_viz.payload),
        computed once per video, root level and temporal on/off (waits if under way)."""
        return self.prefetch_table(root_level, temporal).result()

    def prefetch_table(self, root_level: int, temporal: bool):
        """Start computing a budget table in the background (if not done or under way);
        returns its Future."""
        from .payload import budget_table

        with self.lock:
            video = self._loaded()
            key = (root_level, temporal)
            if self.engine.background is None:  # a GPU worker: the main process computes it
                video.tables.setdefault(key, None)
                return None
            if video.tables.get(key) is None:
                video.tables[key] = self.engine.background.submit(
                    budget_table, video.merger, root_level, temporal)
            return video.tables[key]

    def reduce(self, controls: Controls) -> MergeResult | None:
        """The server's reduction of the current features (None: FastV before any question).
        Never runs the model: a new merge layer is `features_for`'s, in the model's queue."""
        video = self._loaded()
        config = controls.config
        if config.query_aware:
            return self.fastv if self.fastv is not None and self.fastv.method == config.method else None
        return reduce_tokens(video.merger, config)

    @property
    def root_choices(self) -> list[str]:
        """The root grid of each pyramid level, e.g. ['2×2', '4×4', '7×7', '14×14']."""
        if self.video is None:
            return list(DEFAULT_ROOTS)
        return [f"{h}×{w}" for h, w in self.video.merger.level_sizes]

    # --- the model -------------------------------------------------------------------------------
    def ask(self, question: str, controls: Controls, compare: bool = False):
        """Yields (reply with the controls' reduction, reply with all tokens or None) as the
        answer streams. With compare, both answer on a cached video prefix (built first, not
        timed), so their TTFTs compare like with like."""
        self._start_model_work("Chat")
        if not isinstance(question, str) or not question.strip():
            raise UserError("Type a question first.")
        if len(question) > MAX_QUESTION_CHARS:  # checked before any model work: a long prompt
            # holds the one model queue for everyone and can ask for more memory than there is
            raise UserError(f"That question is {len(question):,} characters long; questions "
                            f"here are limited to {MAX_QUESTION_CHARS:,} characters.")
        self.chat.set_config(controls.config)
        if compare:
            reference = self._all_tokens_chat()
            if not self.chat.config.query_aware:
                self.chat.prepare()
            reference.prepare()
        reply = None
        for reply in self.chat.stream(question):
            if reply.done and self.chat.config.query_aware:  # FastV's tokens for this question
                merged = self.chat.merge_result
                self.fastv = merged.cpu() if merged is not None else None
            yield reply, None
        if compare:
            for other in reference.stream(question):
                yield reply, other

    def _start_model_work(self, what: str) -> None:
        """Check that `what` can run (a model, a video) and mark this session as recent."""
        if not self.engine.has_model:
            raise UserError(f"{what} needs a model. " + self.engine.why_no_model)
        self._loaded()
        self.engine.touch(self)

    def _all_tokens_chat(self):
        if self.reference is None or self.reference.clip is not self.chat.clip:
            self.reference = self.chat.sibling(STTMConfig.all_tokens(self.chat.config.merge_layer))
            self.reference.set_clip(self.chat.clip)
        return self.reference

    def drop_caches(self) -> None:
        """Forget the KV caches (memory); the next question rebuilds them."""
        for chat in (self.chat, self.reference):
            if chat is not None and chat.clip is not None:
                chat.set_clip(chat.clip)

    def measure_ttft(self, controls: Controls, question: str = "Describe the video.",
                     runs: int = 3) -> dict:
        """TTFT of a first question (the video prefix prefilled for it, both ways) with all
        tokens and with the controls' reduction: a warm-up round, then the median of `runs`
        rounds, alternating. The encoded video is reused (the vision encoder, which STTM does
        not change, ran when the video was loaded; its time is reported apart)."""
        import statistics

        self._start_model_work("TTFT")
        config = controls.config
        settings = {"all": STTMConfig.all_tokens(config.merge_layer), "sttm": config}
        seconds = {name: [] for name in settings}
        replies = {}
        self.chat.time_merge = True  # a measurement: the merge is timed too
        try:
            for attempt in range(runs + 1):  # round 0 warms up and is not counted
                for name, setting in settings.items():
                    self.chat.reset_prefix()  # first: no re-merge of a prefix about to be dropped
                    self.chat.set_config(setting)
                    reply = self.chat.ask(question, max_new_tokens=1)
                    if attempt:
                        seconds[name].append(reply.ttft_s - reply.timings["vision_encoder"])
                    replies[name] = reply
        finally:
            self.chat.time_merge = False
        out = {name: dict(ttft_s=statistics.median(seconds[name]), runs=seconds[name],
                          tokens=replies[name].tokens_after,
                          keep_ratio=replies[name].keep_ratio,
                          llm_prefill_s=replies[name].timings["llm_prefill"],
                          merge_s=replies[name].timings["merge"]) for name in settings}
        out["speedup"] = out["all"]["ttft_s"] / out["sttm"]["ttft_s"]
        out["vision_encoder_s"] = self.video.timings.get("vision_encoder", 0.0)
        out["runs"] = runs
        return out

    def score(self, controls: Controls, progress=None):
        """Answers with the controls' reduction and with all tokens on this video's QA set."""
        self._start_model_work("Scoring")
        if not self.qa:
            raise UserError("This video has no QA set: upload a JSON/JSONL/CSV of questions.")
        from sttm_core.scoring import score

        scorer = self.chat.sibling(controls.config)
        scorer.set_clip(self.chat.clip)  # the encoded video is decoded once per session
        return score(scorer, self.qa, num_frames=self.chat.clip.num_frames, progress=progress)

    def set_qa(self, path) -> int:
        """Use an uploaded QA file's questions about the loaded video. They are matched by the
        video's file name: an upload lands in a temporary folder, so paths relative to where
        the file was written do not resolve, and the app opens no path a file names. A file
        that cannot be used leaves the current QA set as it was."""
        from sttm_core.qa import QAError, load_qa

        clip, path = self._loaded().clip, Path(path)
        try:
            items = load_qa(path, missing="keep")
        except QAError as err:  # its messages name the file by its server path: show the name
            message = str(err).replace(str(path), path.name).replace(f"{path.parent}/", "")
            raise UserError(message) from err
        name = Path(clip.path).name
        mine = [replace(item, video=Path(clip.path)) for item in items if item.video.name == name]
        if not mine:
            named = sorted({item.video.name for item in items})
            listed = ", ".join(named[:4]) + (", …" if len(named) > 4 else "")
            raise UserError(f"{path.name} has {len(items)} question(s), none about {name} (their "
                            f"videos: {listed}). A question's \"video\" must end with the "
                            "loaded video's file name.")
        self.qa = mine
        return len(mine)


def _bundled_qa(path, examples_dir: Path) -> list:
    """The QA set of a video: <name>.jsonl next to it, or, for a bundled example that the app
    received as an upload copy, the example's own QA file."""
    import filecmp

    from sttm_core.qa import QAError, load_qa

    path = Path(path)
    qa_file = path.with_suffix(".jsonl")
    example = examples_dir / path.name
    if not qa_file.exists() and example.exists() and filecmp.cmp(example, path, shallow=False):
        qa_file = example.with_suffix(".jsonl")
    if not qa_file.exists():
        return []
    try:
        return load_qa(qa_file)
    except QAError as err:
        log.warning("ignoring %s: %s", qa_file, err)
        return []
