"""One app user's session: their video, its merge-layer features, the merge, the chat.

The UI calls these methods; they return plain data (MergeResult, Reply, dicts) and raise
`UserError` with a message to show. Features come from the model's merge layer (through the
public VideoChat runtime) or, with no model, from per-patch pixels, so the token map and the
chains work either way. Moving tauS / tauT / root re-merges the cached features only (a
VideoTokenMerger); the chat's KV cache is re-merged lazily, at the next question.
"""
from __future__ import annotations

import logging
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from sttm_core import OFF, STTMConfig, VideoTokenMerger
from sttm_core.examples import examples_dir
from sttm_core.merge import MergeResult
from sttm_core.methods import reduce_tokens
from sttm_core.pixels import pixel_patch_features
from sttm_core.video import VideoClip, VideoError, load_video

log = logging.getLogger(__name__)


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


@dataclass
class Settings:
    """The app's controls, turned into an STTMConfig by `config`."""

    spatial_threshold: float = 0.8
    temporal_threshold: float = 0.6
    temporal: bool = True
    root_level: int = 1
    merge_layer: int = 2
    use_budget: bool = False
    keep_ratio: float = 0.3
    method: str = "sttm"  # STTM, or a baseline (sttm_core.methods), always at the token budget

    @property
    def config(self) -> STTMConfig:
        if self.method == "sttm" and not self.use_budget:
            return STTMConfig(self.spatial_threshold,
                              self.temporal_threshold if self.temporal else OFF,
                              self.root_level, self.merge_layer)
        method = self.method
        if method == "sttm":  # at the budget: with temporal merging off, space takes all of it
            method = "sttm_budget" if self.temporal else "spatial_only"
        return STTMConfig(root_level=self.root_level, merge_layer=self.merge_layer,
                          method=method, keep_ratio=self.keep_ratio)


@dataclass
class Session:
    engine: Engine
    clip: VideoClip | None = None
    features_layer: int | None = None  # merge layer the features come from (None: pixels)
    merger: VideoTokenMerger | None = None
    result: MergeResult | None = None
    chat: object | None = None          # VideoChat with the model
    qa: list = field(default_factory=list)
    messages: list = field(default_factory=list)  # chat history shown in the UI
    reference: object | None = None     # VideoChat with all tokens, for "compare"
    note: str = ""                      # what the readout should add about the current view

    # --- video -----------------------------------------------------------------------------------
    def load(self, path, num_frames: int, settings: Settings) -> MergeResult:
        if not path:
            raise UserError("Choose a video first: upload one or click an example.")
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
        self.clip, self.messages = clip, []
        self.qa = _bundled_qa(path, self.engine.examples_dir)
        if self.engine.has_model:
            from sttm_core.chat import VideoChat

            self.chat = VideoChat(self.engine.loaded, settings.config,
                                  num_frames=num_frames, max_pixels=self.engine.max_pixels)
            self.chat.set_clip(clip)
        self.features_layer = None
        self.merger = None
        return self.apply(settings)

    # --- merging ---------------------------------------------------------------------------------
    def apply(self, settings: Settings) -> MergeResult:
        """Reduce the cached features with new settings (features are recomputed only when the
        video or the merge layer changed)."""
        if self.clip is None:
            raise UserError("Load a video first.")
        config = settings.config
        if self.merger is None or (self.chat and self.features_layer != config.merge_layer):
            self.merger = VideoTokenMerger(self._features(config))
            self.features_layer = config.merge_layer if self.chat else None
        self.note = ""
        if config.query_aware:  # FastV: its tokens exist only once a question was asked
            asked = self.chat and self.chat.config.query_aware and self.chat.merge_result
            if asked:
                self.result = self.chat.merge_result
                return self.result
            self.note = ("FastV picks tokens by the question's attention: ask a question in the "
                         "Chat tab to see its token map; shown meanwhile: all tokens.")
            config = STTMConfig.all_tokens(config.merge_layer)
        self.result = reduce_tokens(self.merger, config)  # the chat's cache follows at the next question
        return self.result

    def _features(self, config: STTMConfig):
        if not self.chat:
            return pixel_patch_features(self.clip.frames)
        self.engine.touch(self)
        if config.query_aware:  # its merge needs a question: prefill the video unmerged
            config = STTMConfig.all_tokens(config.merge_layer)
        self.chat.set_config(config)
        return self.chat.video_features().float()

    @property
    def frames(self):
        """[T, H_img, W_img, 3] one picture per token frame of the merge: a model that folds
        frames together (Qwen-VL's pairs) shows the first frame of each fold."""
        if not self.chat:
            return self.clip.frames
        return self.clip.frames[self.chat.token_frame_starts()]

    @property
    def root_choices(self) -> list[str]:
        """The root grid of each root level, e.g. ['2x2', '4x4', '7x7', '14x14']."""
        if self.merger is None:
            return ["2x2", "4x4", "7x7", "14x14"]
        return [f"{h}x{w}" for h, w in self.merger.level_sizes]

    # --- chat ------------------------------------------------------------------------------------
    def ask(self, question: str, settings: Settings, compare: bool = False):
        """Yields (reply with STTM, reply with all tokens or None) as the answer streams."""
        self._start_model_work("Chat")
        if not question or not question.strip():
            raise UserError("Type a question first.")
        self.chat.set_config(settings.config)
        reply = None
        for reply in self.chat.stream(question):
            yield reply, None
        if compare:
            reference = self._all_tokens_chat()
            for other in reference.stream(question):
                yield reply, other

    def _start_model_work(self, what: str) -> None:
        """Check that `what` can run (a model, a video) and mark this session as recent."""
        if not self.engine.has_model:
            raise UserError(f"{what} needs a model. " + self.engine.why_no_model)
        if self.chat is None:
            raise UserError("Load a video first.")
        self.engine.touch(self)

    def _all_tokens_chat(self):
        if self.reference is None or self.reference.clip is not self.clip:
            self.reference = self.chat.sibling(STTMConfig.all_tokens(self.chat.config.merge_layer))
            self.reference.set_clip(self.clip)
        return self.reference

    def drop_caches(self) -> None:
        """Forget the KV caches (memory); the next question rebuilds them."""
        for chat in (self.chat, self.reference):
            if chat is not None and chat.clip is not None:
                chat.set_clip(chat.clip)

    def measure_ttft(self, settings: Settings, question: str = "Describe the video.") -> dict:
        """TTFT of a first question (a fresh video prefix) with all tokens vs with STTM. The
        encoded video is reused, so both times are the language model's alone."""
        self._start_model_work("TTFT")
        config = settings.config
        out = {}
        self.chat.time_merge = True  # a measurement: the merge is timed too
        try:
            for name, setting in [("all", STTMConfig.all_tokens(config.merge_layer)),
                                  ("sttm", config)]:
                self.chat.set_config(setting)
                self.chat.reset_prefix()
                reply = self.chat.ask(question, max_new_tokens=1)
                out[name] = dict(ttft_s=reply.ttft_s, tokens=reply.tokens_after, **reply.timings)
        finally:
            self.chat.time_merge = False
        out["speedup"] = out["all"]["ttft_s"] / out["sttm"]["ttft_s"]
        return out

    def score(self, settings: Settings, progress=None):
        """Accuracy of STTM vs all tokens on this video's QA set."""
        self._start_model_work("Scoring")
        if not self.qa:
            raise UserError("This video has no QA set: upload a JSON/JSONL/CSV of questions.")
        from sttm_core.scoring import score

        scorer = self.chat.sibling(settings.config)  # keeps self.chat's video
        return score(scorer, self.qa, num_frames=self.clip.num_frames, progress=progress)

    def set_qa(self, path) -> int:
        from sttm_core.qa import QAError, load_qa

        try:
            items = load_qa(path, missing="skip")
        except QAError as err:
            raise UserError(str(err)) from err
        mine = [i for i in items if self.clip and Path(i.video).name == Path(self.clip.path).name]
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

