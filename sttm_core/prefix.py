"""VideoPrefix: one video's merged prompt prefix on one STTM-patched model, prefilled once.

    prefix = VideoPrefix(loaded, STTMConfig(0.85, 0.65))
    prefix.set_clip(clip)          # frames of one video
    prefix.ensure()                # encode the video, prefill up to it with STTM -> KV cache
    logits, s = prefix.append(ids) # tokens after the prefix (a question, a reply's tokens)
    prefix.rollback()              # back to the video prefix alone
    prefix.set_config(other)       # same merge layer: re-merge from layer k's stored input

The vision encoder runs once per clip; the prefix's prefill runs once per clip and merge
layer; new thresholds re-run only layers >= k. Every model call runs under an explicit plan
(`planned`): this prefix's config, keep layer k's input, time the merge if asked. The KV cache
carries how its prefill was merged, so tokens appended later find their mask and positions.
A prefix pickles without its model (its tensors packed, see `attach`): a ZeroGPU worker can
build it and another one continue it.
"""
from __future__ import annotations

import io
import threading
import time
from dataclasses import dataclass

import torch
from transformers import DynamicCache

from .config import STTMConfig
from .merge import MergeResult
from .models.base import VideoPrompt
from .models.checkpoints import LoadedModel
from .models.patching import LayerInput, MergedPrefill, Plan, Prefilled, patch, planned, remerge
from .video import VideoClip


@dataclass
class _Cached:
    """A prefilled prefix: its KV cache (carrying its MergedPrefill) and what it took."""

    cache: DynamicCache
    layer_lengths: list[int]  # per decoder layer: its cache length right after the prefix
    length: int               # prefix tokens before merging
    prefill: MergedPrefill
    layer_input: LayerInput   # layer k's input, to re-merge
    timings: dict             # seconds: decode_video, vision_encoder, llm_prefill, merge

    @property
    def merged_length(self) -> int:
        return self.prefill.merged_length


class VideoPrefix:
    """The cached prompt prefix (system + user turn up to the video, merged) of one clip.

    settings: frame preprocessing, a copy of the model's (any frame-size cap was applied when
    it loaded); time_merge: time each prefill's merge (CUDA events on GPU), for benchmarks. Not
    thread-safe by itself: callers that share one across threads hold `lock` around a use."""

    def __init__(self, model: LoadedModel, config: STTMConfig, *, time_merge: bool = False):
        model.adapter.check_merge_layer(config.merge_layer)
        self.loaded = model
        self.config = config
        self.settings = dict(model.settings)
        self.time_merge = time_merge
        self.clip: VideoClip | None = None
        self.decode_s = 0.0          # charged to the next prefill's timings
        self.appended: list[int] = []  # ids fed after the prefix (a question, a reply so far)
        self.lock = threading.RLock()
        self._encoded = None  # (model kwargs with the encoder's output, VideoPrompt) of clip
        self._cached: _Cached | None = None
        if not hasattr(model.model, "sttm"):
            patch(model.model, config)

    # --- what it holds --------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self._cached is not None

    @property
    def cached(self) -> object | None:
        """The prefilled prefix (None: not built); a new object whenever it is rebuilt or
        re-merged, so a reader can tell that it changed."""
        return self._cached

    @property
    def length(self) -> int:
        """Tokens of the prefix before merging."""
        return self._cached.length

    @property
    def merged_length(self) -> int:
        return self._cached.merged_length

    @property
    def timings(self) -> dict:
        return self._cached.timings

    @property
    def merge_result(self) -> MergeResult | None:
        """The MergeResult of the prefix's video (None before `ensure`, or when the config
        merges nothing)."""
        merges = self._cached.prefill.merges if self._cached else []
        return merges[0] if merges else None

    def video_features(self) -> torch.Tensor:
        """[T, H, W, D] the video's hidden states entering the merge layer (builds the prefix)."""
        self.ensure()
        cached = self._cached
        span = cached.prefill.spans[0]
        grid_positions = span.positions.to(cached.layer_input.hidden.device)
        return cached.layer_input.hidden[span.row, grid_positions].reshape(*span.grid, -1)

    # --- changes ------------------------------------------------------------------------------
    def set_clip(self, clip: VideoClip) -> None:
        if clip is not self.clip:
            self._encoded = None
        self.clip = clip
        self.reset()

    def reset(self) -> None:
        """Forget the prefilled prefix (KV cache); the encoded video is kept."""
        self._cached = None
        self.appended = []

    def set_config(self, config: STTMConfig) -> None:
        """New settings. Same merge layer: re-merge from the stored layer-k input (the encoder
        and layers < k are not re-run); another layer, or a query-aware method either side:
        the prefix is rebuilt when next needed."""
        self.loaded.adapter.check_merge_layer(config.merge_layer)
        old, self.config = self.config, config
        if self._cached is None or config == old:
            return
        if config.merge_layer != old.merge_layer or config.query_aware or old.query_aware:
            self.reset()  # query-aware prefixes hold a question: nothing to re-merge
            return
        start = time.perf_counter()
        self.rollback()
        cached = self._cached
        outcome = remerge(self.loaded.model, cached.cache, cached.layer_input, self.plan())
        timings = dict(cached.timings, remerge=time.perf_counter() - start,
                       merge=self._merge_seconds(outcome))
        self._store(cached.cache, cached.length, timings, outcome)

    # --- the model's work -----------------------------------------------------------------------
    def plan(self) -> Plan:
        """What the model does in this prefix's calls."""
        return Plan(self.config, keep_layer_input=True, time_merge=self.time_merge)

    def ensure(self) -> dict:
        """Encode the video and prefill the prefix with STTM, if not done yet; its timings."""
        if self._cached is None:
            self.build()
        return self._cached.timings

    def build(self, after: list[int] = ()) -> torch.Tensor:
        """Prefill the prompt up to the video and the ids `after` it (query-aware methods: the
        conversation up to the question). Returns the last position's logits [V]."""
        if self.clip is None:
            raise RuntimeError("no video loaded: call load_video(path) first")
        adapter, model = self.loaded.adapter, self.loaded.model
        encoder_s = 0.0
        if self._encoded is None:  # the vision encoder runs once per video, whatever k is
            start = _now(model)
            self._encoded = self._encode()
            encoder_s = _now(model) - start
        video, prompt = self._encoded
        with self.loaded.tokenizer_lock:
            prefix_ids, _ = adapter.prompt_ids(self.loaded.tokenizer, prompt)
        ids = prefix_ids + list(after)
        input_ids = torch.tensor([ids], device=model.device)
        inputs = {"input_ids": input_ids, **video, **adapter.prefill_inputs(input_ids)}
        cache = DynamicCache(config=model.config)
        start = _now(model)
        with torch.no_grad(), planned(model, self.plan()) as outcome:
            out = model(**inputs, past_key_values=cache, use_cache=True, logits_to_keep=1)
        timings = dict(decode_video=self.decode_s, vision_encoder=encoder_s,
                       llm_prefill=_now(model) - start, merge=self._merge_seconds(outcome))
        self.decode_s = 0.0  # decoding happened once, charged to this prefix
        self._store(cache, len(ids), timings, outcome)
        return out.logits[0, -1].float()

    def append(self, ids: list[int]) -> tuple[torch.Tensor, float]:
        """Feed tokens after the prefix (and what was appended before); returns the last
        logits [V] and the seconds it took."""
        model, adapter = self.loaded.model, self.loaded.adapter
        start = _now(model)
        input_ids = torch.tensor([ids], device=model.device)
        first = self._cached.prefill.next_position + len(self.appended)
        positions = adapter.text_positions(first.to(model.device), len(ids))
        with torch.no_grad(), planned(model, self.plan()):
            out = model(input_ids=input_ids, position_ids=positions, use_cache=True,
                        past_key_values=self._cached.cache, logits_to_keep=1)
        self.appended += ids
        return out.logits[0, -1].float(), _now(model) - start

    def rollback(self) -> None:
        """Drop everything after the video prefix from the cache."""
        for layer, length in zip(self._cached.cache.layers, self._cached.layer_lengths):
            extra = layer.get_seq_length() - length
            if extra > 0:
                layer.crop(-extra)
        self.appended = []

    def _encode(self) -> tuple[dict, VideoPrompt]:
        """Run the vision encoder on the clip: (forward kwargs carrying its output, what the
        prompt's video placeholder holds)."""
        adapter, model = self.loaded.adapter, self.loaded.model
        video, prompt = adapter.video_inputs(self.clip.frames, self.settings,
                                             self.clip.sampled_fps, self.clip.timestamps)
        # pixels in the model's dtype; other numbers as they are (Qwen2.5-VL's seconds per
        # temporal patch set its time ids: fp32, as transformers' processor gives them)
        video = {k: v.to(model.device, dtype=model.dtype) if k.startswith("pixel_values")
                 else v.to(model.device) for k, v in video.items()}
        with torch.no_grad():
            return adapter.encode_video(video), prompt

    def _store(self, cache, length: int, timings: dict, outcome: Prefilled) -> None:
        self._cached = _Cached(cache, [layer.get_seq_length() for layer in cache.layers], length,
                               outcome.prefill, outcome.layer_input, timings)
        self.appended = []

    def _merge_seconds(self, outcome: Prefilled) -> float | None:
        """The prefill's merge time (0 when it merged nothing); None when untimed."""
        return (outcome.merge_seconds or 0.0) if self.time_merge else None

    # --- between processes ----------------------------------------------------------------------
    # A ZeroGPU Space runs each GPU call in a forked worker and pickles what goes in and out, so
    # a prefix travels without its model: the tensors it caches (the encoded video, the KV
    # cache and the hidden states to re-merge from) as torch.save blobs, which load on the CPU
    # or, once `attach`ed, on the model's device (never a CUDA tensor in the pickle).
    _PACKED = ("_encoded", "_cached")

    def __getstate__(self) -> dict:
        state = {k: v for k, v in self.__dict__.items() if k not in ("loaded", "lock")}
        for name in self._PACKED:
            if not isinstance(state[name], _Packed) and state[name] is not None:
                state[name] = _Packed.of(state[name])
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, loaded=None, lock=threading.RLock())

    def attach(self, model: LoadedModel) -> "VideoPrefix":
        """After unpickling: the model to run on (patched if it is not yet); the cached tensors
        move to its device. Returns self."""
        self.loaded = model
        if not hasattr(model.model, "sttm"):
            patch(model.model, self.config)
        for name in self._PACKED:
            if isinstance(packed := getattr(self, name), _Packed):
                setattr(self, name, packed.unpack(model.model.device))
        return self


class _Packed:
    """Tensors (in any object) as torch.save bytes: unpickled anywhere without touching a GPU,
    loaded onto one device when needed (map_location moves every storage)."""

    def __init__(self, blob: bytes):
        self.blob = blob

    @classmethod
    def of(cls, obj) -> "_Packed":
        buffer = io.BytesIO()
        torch.save(obj, buffer)
        return cls(buffer.getvalue())

    def unpack(self, device):
        return torch.load(io.BytesIO(self.blob), map_location=device, weights_only=False)


def _now(model) -> float:
    """time.perf_counter() after the model's GPUs (all of them, with device_map) have finished
    their queued work."""
    for device in {p.device for p in model.parameters() if p.device.type == "cuda"}:
        torch.cuda.synchronize(device)
    return time.perf_counter()
