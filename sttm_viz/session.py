"""One app user's session: their video, its merge-layer features and evidence, the chat.

The handlers (sttm_viz.handlers) call these methods; they return plain data and raise
`UserError` with a message to show. Features come from the model's merge layer (through the
public VideoChat runtime, in the model's own dtype, so the page merges exactly what the model
merges) or, with no model, from per-patch pixels. The page re-thresholds by itself from the
features' evidence (sttm_core.evidence); the server reduces only what the page cannot (the
pooling baseline, FastV) and answers questions.
"""
from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
import logging
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sttm_core import OFF, STTMConfig, VideoTokenMerger
from sttm_core.evidence import MergeEvidence, merge_evidence
from sttm_core.examples import examples_dir
from sttm_core.merge import MergeResult
from sttm_core.methods import reduce_tokens
from sttm_core.pixels import pixel_patch_features
from sttm_core.video import VideoClip, VideoError, load_video

log = logging.getLogger(__name__)
_video_ids = itertools.count(1)
DEFAULT_ROOTS = ["2×2", "4×4", "7×7", "14×14"]  # a 14x14 grid's pyramid, before any video


class UserError(Exception):
    """Something the user can fix; the message is shown as is."""


@dataclass
class Engine:
    """What all sessions share: the loaded model (or None, with the reason) and limits."""

    loaded: object | None           # sttm_core LoadedModel, or None in the fallback
    why_no_model: str = ""
    max_seconds: float = 600.0      # longest video accepted
    max_frames: int = 64
    max_pixels: int | None = None   # Qwen-VL frame size cap (None: the checkpoint's)
    max_cached_sessions: int = 4    # sessions whose KV caches stay in memory
    examples_dir: Path = field(default_factory=examples_dir)
    _recent: OrderedDict = field(default_factory=OrderedDict)
    # budget tables are computed here, one at a time, ahead of need (they take seconds)
    background: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="sttm-tables"))

    def touch(self, session: "Session") -> None:
        """Mark a session as using the model; the least recent ones beyond
        max_cached_sessions drop their KV caches (they are rebuilt if needed)."""
        key = id(session)
        self._recent.pop(key, None)
        self._recent[key] = weakref.ref(session)
        while len(self._recent) > self.max_cached_sessions:
            _, old = self._recent.popitem(last=False)
            if old() is not None:
                old().drop_caches()

    @property
    def has_model(self) -> bool:
        return self.loaded is not None

    @property
    def num_layers(self) -> int:
        return self.loaded.adapter.num_layers if self.loaded else 1

    @property
    def model_name(self) -> str:
        return Path(self.loaded.name).name if self.loaded else ""


@dataclass(frozen=True)
class Controls:
    """The page's controls, as every handler receives them. `config` is the one place they
    become an STTMConfig.

    mode "thresholds" (tauS, tauT by hand) or "budget" (a keep ratio; tauS and tauT chosen per
    video); method: STTM or a baseline of sttm_core.methods, which always keeps the budget."""

    mode: str = "thresholds"
    tau_s: float = 0.8
    tau_t: float = 0.6
    temporal: bool = True
    budget: float = 0.3
    root_level: int = 1
    merge_layer: int = 2
    method: str = "sttm"

    @property
    def uses_budget(self) -> bool:
        return self.mode == "budget" or self.method != "sttm"

    @property
    def config(self) -> STTMConfig:
        if not self.uses_budget:
            return STTMConfig(self.tau_s, self.tau_t if self.temporal else OFF,
                              self.root_level, self.merge_layer)
        method = self.method
        if method == "sttm":  # at the budget: with temporal merging off, space takes all of it
            method = "sttm_budget" if self.temporal else "spatial_only"
        return STTMConfig(root_level=self.root_level, merge_layer=self.merge_layer,
                          method=method, keep_ratio=self.budget)


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


@dataclass
class Session:
    engine: Engine
    video: VideoFeatures | None = None
    chat: object | None = None          # VideoChat with the model
    reference: object | None = None     # VideoChat with all tokens, for "compare"
    qa: list = field(default_factory=list)
    fastv: MergeResult | None = None    # FastV's tokens of the last question (query-aware)
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    @property
    def clip(self) -> VideoClip | None:
        return self.video.clip if self.video else None

    # --- video -----------------------------------------------------------------------------------
    def load(self, path, num_frames: int, controls: Controls) -> VideoFeatures:
        """Decode a video and compute its features (and evidence) for these controls."""
        if not path:
            raise UserError("Choose a video first: pick an example or upload one.")
        num_frames = int(num_frames)
        if not 1 <= num_frames <= self.engine.max_frames:
            raise UserError(f"Frames must be between 1 and {self.engine.max_frames}.")
        try:
            clip = load_video(path, num_frames)
        except VideoError as err:
            raise UserError(str(err)) from err
        if clip.duration > self.engine.max_seconds:
            raise UserError(f"{Path(path).name} is {clip.duration:.0f} s long; this app takes "
                            f"videos up to {self.engine.max_seconds:.0f} s.")
        with self.lock:
            self.qa = _bundled_qa(path, self.engine.examples_dir)
            self.fastv, self.reference = None, None
            self.chat = None
            if self.engine.has_model:
                from sttm_core.chat import VideoChat

                self.chat = VideoChat(self.engine.loaded, controls.config, num_frames=num_frames,
                                      max_pixels=self.engine.max_pixels)
                self.chat.set_clip(clip)
            self.video = self._features(clip, controls)
            return self.video

    def features_for(self, controls: Controls) -> VideoFeatures:
        """The current video's features for these controls: recomputed (the model runs up to
        the new layer) only when the merge layer changed."""
        with self.lock:
            video = self._loaded()
            if self.chat is not None and video.layer != controls.merge_layer:
                self.fastv = None
                self.video = self._features(video.clip, controls)
                encoder = max(video.timings.get("vision_encoder", 0.0),
                              self.video.timings.get("vision_encoder", 0.0))
                self.video.timings["vision_encoder"] = encoder  # ran once, for the first layer
            return self.video

    def _features(self, clip: VideoClip, controls: Controls) -> VideoFeatures:
        timings = {}
        if self.chat is None:
            features, frames, layer = pixel_patch_features(clip.frames), clip.frames, None
        else:
            self.engine.touch(self)
            config, layer = controls.config, controls.merge_layer
            if config.query_aware:  # its merge needs a question: prefill the video unmerged
                config = STTMConfig.all_tokens(layer)
            self.chat.set_config(config)
            timings = dict(self.chat.prepare())
            features = self.chat.video_features()  # [T', H, W, D] layer k's input, model dtype
            frames = clip.frames[self.chat.token_frame_starts()]
        # Qwen3-VL: every token frame keeps a token (its timestamp needs one after it)
        merger = VideoTokenMerger(features, keep_every_frame=bool(
            self.chat and self.chat.keeps_every_frame))
        return VideoFeatures(next(_video_ids), clip, frames, layer, merger, merge_evidence(merger),
                             timings)

    def _loaded(self) -> VideoFeatures:
        if self.video is None:
            raise UserError("Load a video first.")
        return self.video

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
            if key not in video.tables:
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
        if not question or not question.strip():
            raise UserError("Type a question first.")
        self.chat.set_config(controls.config)
        if compare:
            reference = self._all_tokens_chat()
            if not self.chat.config.query_aware:
                self.chat.prepare()
            reference.prepare()
        reply = None
        for reply in self.chat.stream(question):
            if reply.done and self.chat.config.query_aware:  # FastV's tokens for this question
                self.fastv = self.chat.merge_result
            yield reply, None
        if compare:
            for other in reference.stream(question):
                yield reply, other

    def _start_model_work(self, what: str) -> None:
        """Check that `what` can run (a model, a video) and mark this session as recent."""
        if not self.engine.has_model:
            raise UserError(f"{what} needs a model. " + self.engine.why_no_model)
        if self.chat is None or self.video is None:
            raise UserError("Load a video first.")
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
        from sttm_core.qa import QAError, load_qa

        try:
            items = load_qa(path, missing="skip")
        except QAError as err:
            raise UserError(str(err)) from err
        clip = self.clip
        mine = [i for i in items if clip and Path(i.video).name == Path(clip.path).name]
        self.qa = mine or items
        if not self.qa:
            raise UserError("No usable questions in that file.")
        return len(self.qa)


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
