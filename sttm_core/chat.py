"""VideoChat: load a video once, ask many questions; the merged video prefix is prefilled once.

    chat = VideoChat.from_pretrained("llava-hf/llava-onevision-qwen2-0.5b-ov-hf",
                                     STTMConfig(0.85, 0.65))
    chat.load_video("clip.mp4")
    for reply in chat.stream("What happens?"): print(reply.text)   # token by token
    chat.ask("And then?").ttft_s                                      # the cached prefix is reused

Flow: decode frames -> pixel tensors -> ONE forward over the prompt prefix that ends with the
video (vision encoder, LLM layers, STTM merge at layer k) -> the KV cache of that prefix is
kept. Each question appends only its own tokens; afterwards the cache is rolled back to the
prefix (or kept for a follow-up turn). New tauS / tauT / root / budget re-merge from the
stored layer-k hidden states (layers >= k only); a new merge layer or video re-prefills.
Query-aware methods (FastV) prefill the video with the conversation up to the question, every
question. A question is plain text (special tokens in it are spelled out, never parsed) of at
most `max_question_tokens` tokens.
"""
from __future__ import annotations

import io
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch
from transformers import DynamicCache

from .config import STTMConfig
from .merge import MergeResult
from .models.base import VideoPrompt
from .models.checkpoints import LoadedModel, load_model
from .models.patching import patch, remerge
from .video import VideoClip, load_video


@dataclass
class Reply:
    """One answer (or, while streaming, the answer so far) and what it cost."""

    text: str
    done: bool
    ttft_s: float | None         # ask -> first token, including any prefix work done for it
    cache_reused: bool           # the video prefix came from the cache
    tokens_before: int           # prefill tokens (video prefix + question) without merging
    tokens_after: int            # ... with STTM
    keep_ratio: float            # video tokens kept
    timings: dict = field(default_factory=dict)  # seconds of the work done for this reply:
    #     decode_video, vision_encoder, llm_prefill, question (prefill of the question's
    #     tokens), merge (part of llm_prefill; None unless the chat has time_merge=True; 0
    #     when the prefix came from the cache)
    num_generated: int = 0
    total_s: float = 0.0


@dataclass
class _Prefix:
    """The cached video prefix of one chat."""

    cache: DynamicCache
    layer_lengths: list[int]  # per decoder layer: its cache length right after the prefix
    length: int               # prefix tokens before merging
    merged_length: int        # after merging
    prefill: object           # the model's MergedPrefill for it
    layer_input: object       # layer k's input, to re-merge
    timings: dict             # seconds the prefix took: decode_video, vision_encoder, ...


class VideoChat:
    """A chat session about one video with one STTM-patched model (batch size 1).

    time_merge=True times each prefill's merge (CUDA events on GPU; `Reply.timings["merge"]`),
    for benchmarks; off by default, so nothing waits for the device."""

    max_question_tokens = 4096  # longer questions are refused before any model work

    def __init__(self, model: LoadedModel, config: STTMConfig | None = None, *,
                 num_frames: int = 16, max_pixels: int | None = None,
                 max_new_tokens: int = 256, temperature: float = 0.0, time_merge: bool = False):
        self.loaded = model
        self.config = config or STTMConfig()
        model.adapter.check_merge_layer(self.config.merge_layer)
        self.num_frames = num_frames
        self.settings = dict(model.settings)
        if max_pixels is not None:
            self.settings["max_pixels"] = max_pixels
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.time_merge = time_merge
        self.clip: VideoClip | None = None
        self._decode_s = 0.0
        self._prefix: _Prefix | None = None
        self._encoded = None  # (model kwargs without pixels, VideoPrompt) of self.clip
        self.last_first_logits: torch.Tensor | None = None  # [V] of the last reply's 1st token
        self._history: list[int] = []  # follow-up turns kept after the prefix (token ids fed)
        self._pending: list[int] = []  # sampled but not yet fed (the last token of an answer)
        self._asked: list[int] = []  # query-aware prefixes: the ids after the video in them
        with model.tokenizer_lock:  # the ids that close a question's turn (any video length)
            self._closing = model.adapter.closing_ids(model.tokenizer)
        if not hasattr(model.model, "sttm"):
            patch(model.model, self.config)

    def sibling(self, config: STTMConfig) -> "VideoChat":
        """A new chat with the same model and frame settings but other STTM settings (e.g. all
        tokens, for comparison); it shares no video or cache with this one."""
        return VideoChat(self.loaded, config, num_frames=self.num_frames,
                         max_pixels=self.settings.get("max_pixels"),
                         max_new_tokens=self.max_new_tokens, temperature=self.temperature,
                         time_merge=self.time_merge)

    @classmethod
    def from_pretrained(cls, name_or_path: str, config: STTMConfig | None = None, *,
                        device: str | None = None, dtype=None, device_map=None,
                        attn_implementation: str = "sdpa", trust_remote_code: bool = False,
                        **kwargs) -> "VideoChat":
        """Load a checkpoint (`load_model`: device, dtype, device_map="auto" to spread a big
        model over GPUs, attn_implementation, trust_remote_code) and start a chat on it;
        other keyword arguments go to VideoChat (num_frames, max_pixels, ...)."""
        loaded = load_model(name_or_path, device=device, dtype=dtype, device_map=device_map,
                            attn_implementation=attn_implementation,
                            trust_remote_code=trust_remote_code)
        return cls(loaded, config, **kwargs)

    # --- between processes ---------------------------------------------------------------------
    # A ZeroGPU Space runs each GPU call in a forked worker and pickles what goes in and out, so
    # a chat travels without its model: the tensors it caches (the encoded video, the merged
    # prefix's KV cache and the hidden states to re-merge from) as torch.save blobs, which load
    # on the CPU or, once `attach`ed, on the model's device (never a CUDA tensor in the pickle).
    _PACKED = ("_encoded", "_prefix", "last_first_logits")

    def __getstate__(self) -> dict:
        state = {k: v for k, v in self.__dict__.items() if k != "loaded"}
        for name in self._PACKED:
            if not isinstance(state[name], _Packed) and state[name] is not None:
                state[name] = _Packed.of(state[name])
        return state

    def attach(self, model: LoadedModel) -> "VideoChat":
        """After unpickling: the model to run on (patched if it is not yet); the cached tensors
        move to its device. Returns self."""
        self.loaded = model
        if not hasattr(model.model, "sttm"):
            patch(model.model, self.config)
        for name in self._PACKED:
            if isinstance(packed := getattr(self, name), _Packed):
                setattr(self, name, packed.unpack(model.model.device))
        return self

    # --- video and settings ---------------------------------------------------------------------
    def load_video(self, path, num_frames: int | None = None) -> VideoClip:
        """Decode a video (uniformly sampled frames); the next question builds its prefix."""
        start = time.perf_counter()
        clip = load_video(path, num_frames or self.num_frames)
        self._decode_s = time.perf_counter() - start
        self.set_clip(clip)
        return clip

    def set_clip(self, clip: VideoClip) -> None:
        if clip is not self.clip:
            self._encoded = None
        self.clip = clip
        self.reset_prefix()

    def reset_prefix(self) -> None:
        """Forget the cached prefix (KV cache); the encoded video is kept."""
        loaded = self.__dict__.get("loaded")  # None: a chat between processes (see attach)
        with loaded.model.sttm.lock if loaded else nullcontext():  # not while a reply reads it
            self._prefix = None
            self._history, self._pending = [], []

    def set_config(self, config: STTMConfig) -> None:
        """New STTM settings. Same merge layer: re-merge from the stored layer-k hidden states
        (encoder and layers < k are not re-run); another layer: the prefix is rebuilt.
        Done under the model's lock, so a reply streaming in another thread sees either the
        old prefix or (at its next token) that it changed."""
        self.loaded.adapter.check_merge_layer(config.merge_layer)
        with self.loaded.model.sttm.lock:
            old, self.config = self.config, config
            if self._prefix is None or config == old:
                return
            if config.merge_layer != old.merge_layer or config.query_aware or old.query_aware:
                self._prefix = None  # query-aware prefixes hold a question: nothing to re-merge
                return
            with self._model_turn():
                start = time.perf_counter()
                self._rollback()
                remerge(self.loaded.model, self._prefix.cache)
                timings = dict(self._prefix.timings, remerge=time.perf_counter() - start,
                               merge=self._merge_seconds())
                self._store_prefix(self._prefix.cache, self._prefix.length, timings)

    def video_features(self) -> torch.Tensor:
        """[T, H, W, D] the video's hidden states entering the merge layer (after `prepare`):
        the features STTM merges, for drawing and fast what-if merges."""
        self.prepare()
        prefill, saved = self._prefix.prefill, self._prefix.layer_input
        span = prefill.spans[0]
        grid_positions = span.positions.to(saved.hidden.device)
        return saved.hidden[span.row, grid_positions].reshape(*span.grid, -1)

    @property
    def keeps_every_frame(self) -> bool:
        """The model needs a token in every token frame (a timestamp before each), so
        its merges give every frame one; merge the chat's `video_features` with
        `VideoTokenMerger(features, keep_every_frame=chat.keeps_every_frame)` to get its tokens."""
        return self.loaded.adapter.keeps_every_frame

    def token_frame_starts(self) -> np.ndarray:
        """[T'] index of the first video frame of each frame of the token grid (models that
        fold frames together, like Qwen-VL's pairs, have fewer token frames than frames)."""
        step = self.loaded.adapter.frames_per_token_frame
        return np.arange(0, self.clip.num_frames, step)

    @property
    def merge_result(self) -> MergeResult | None:
        """The MergeResult of the current video prefix (None before `prepare`, or when the
        config merges nothing)."""
        merges = self._prefix.prefill.merges if self._prefix else []
        return merges[0] if merges else None

    # --- the prefix ----------------------------------------------------------------------------
    def prepare(self) -> dict:
        """Encode the video and prefill the prompt prefix with STTM, if not done yet.
        Returns the timings of that work."""
        if self._prefix is None:
            with self._model_turn():
                self._build_prefix()
        return self._prefix.timings

    def _build_prefix(self, asked: list[int] = ()) -> torch.Tensor:
        """Prefill the prompt up to the video (and, for query-aware methods, the ids `asked`
        after it: the conversation up to the question). Returns the last position's logits [V]."""
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
        prefix_ids = prefix_ids + list(asked)
        input_ids = torch.tensor([prefix_ids], device=model.device)
        inputs = {"input_ids": input_ids, **video, **adapter.prefill_inputs(input_ids)}
        cache = DynamicCache(config=model.config)
        start = _now(model)
        with torch.no_grad():
            out = model(**inputs, past_key_values=cache, use_cache=True, logits_to_keep=1)
        timings = dict(decode_video=self._decode_s, vision_encoder=encoder_s,
                       llm_prefill=_now(model) - start, merge=self._merge_seconds())
        self._decode_s = 0.0  # decoding happened once, charged to this prefix
        self._store_prefix(cache, len(prefix_ids), timings)
        self._history, self._pending, self._asked = [], [], list(asked)
        return out.logits[0, -1].float()

    def _merge_seconds(self) -> float | None:
        """The last prefill's merge time (0 when it merged nothing); None when untimed."""
        return (self.loaded.model.sttm.merge_seconds or 0.0) if self.time_merge else None

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

    def _store_prefix(self, cache, length: int, timings: dict) -> None:
        state = self.loaded.model.sttm
        self._prefix = _Prefix(cache, [layer.get_seq_length() for layer in cache.layers], length,
                               state.prefill.merged_length, state.prefill, state.layer_input,
                               timings)

    def _rollback(self) -> None:
        """Drop everything after the video prefix from the cache."""
        for layer, length in zip(self._prefix.cache.layers, self._prefix.layer_lengths):
            extra = layer.get_seq_length() - length
            if extra > 0:
                layer.crop(-extra)
        self._history, self._pending = [], []

    def _model_turn(self):
        """The shared model, held for this chat: its config and its prefix's state in place."""
        prefix = self._prefix
        return self.loaded.model.sttm.using(self.config, prefix and prefix.prefill,
                                            prefix and prefix.layer_input,
                                            time_merge=self.time_merge)

    # --- questions -----------------------------------------------------------------------------
    def ask(self, question: str, *, follow_up: bool = False, max_new_tokens: int | None = None) -> Reply:
        """Answer a question about the video (the whole reply at once)."""
        reply = None
        for reply in self.stream(question, follow_up=follow_up, max_new_tokens=max_new_tokens):
            pass
        return reply

    def stream(self, question: str, *, follow_up: bool = False,
               max_new_tokens: int | None = None) -> Iterator[Reply]:
        """Answer token by token: yields the reply so far; the last one has done=True.

        follow_up=False: the question is asked on the video alone (earlier turns are dropped);
        True: it continues the conversation after the previous answer."""
        start = time.perf_counter()
        question_ids = self._question_ids(question)  # checked before any model work
        with self._model_turn():
            continuing = follow_up and bool(self._history or self._pending)
            turn = self._turn_ids(question_ids, continuing)
            reused = self._prefix is not None and not self.config.query_aware
            if self.config.query_aware:  # its tokens depend on the question: nothing to reuse
                earlier = self._asked + self._history if continuing else []
                logits, question_s = self._build_prefix(earlier + turn), 0.0
            else:
                if not reused:
                    self._build_prefix()
                if not follow_up:
                    self._rollback()
                logits, question_s = self._feed(turn)
            prefix = self._prefix
            charged = {} if reused else dict(prefix.timings)  # the work done for this reply
        tokenizer = self.loaded.tokenizer
        generated: list[int] = []
        stop = set(_eos_ids(self.loaded))
        limit = max_new_tokens or self.max_new_tokens
        merged = self.merge_result
        untimed = dict(decode_video=0.0, vision_encoder=0.0, llm_prefill=0.0,
                       merge=0.0 if self.time_merge else None)
        base = dict(cache_reused=reused, keep_ratio=merged.keep_ratio if merged else 1.0,
                    tokens_before=prefix.length + len(self._history),
                    tokens_after=prefix.merged_length + len(self._history),
                    timings={**untimed, **charged, "question": question_s})
        ttft = None
        self.last_first_logits = logits
        while len(generated) < limit:
            token = self._sample(logits)
            generated.append(token)
            if ttft is None:
                ttft = time.perf_counter() - start
            done = token in stop or len(generated) == limit
            text = tokenizer.decode(generated, skip_special_tokens=True)
            yield Reply(text, done, ttft, num_generated=len(generated),
                        total_s=time.perf_counter() - start, **base)
            if done:
                self._pending = [token]  # sampled, never fed: a follow-up turn starts with it
                break
            with self._model_turn():
                if self._prefix is not prefix:  # set_config / reset_prefix from another thread
                    raise RuntimeError("the video prefix changed during the reply (new settings "
                                       "or video); ask again")
                logits, _ = self._feed([token])

    def _question_ids(self, question: str) -> list[int]:
        """The question's token ids, as plain text: "<video>" or "<|im_end|>" in it are
        spelled out, never parsed as special tokens. Empty or too long: ValueError."""
        if not isinstance(question, str) or not question.strip():
            raise ValueError("the question is empty")
        ids = self._encode_text(question, plain=True)
        if len(ids) > self.max_question_tokens:
            raise ValueError(f"the question is {len(ids)} tokens long; the limit is "
                             f"{self.max_question_tokens} tokens (VideoChat.max_question_tokens)")
        return ids

    def _turn_ids(self, question_ids: list[int], continue_conversation: bool) -> list[int]:
        """The ids a question appends: in the user turn right after the video, or (continuing
        the conversation) after closing the previous answer, in a new user turn."""
        if not continue_conversation:
            return question_ids + self._closing
        end_of_turn = self._encode_text("<|im_end|>")
        end = self._pending if self._pending[-1:] == end_of_turn else self._pending + end_of_turn
        return end + self._encode_text("\n<|im_start|>user\n") + question_ids + self._closing

    def _encode_text(self, text: str, plain: bool = False) -> list[int]:
        """Token ids of chat-template text (special tokens parsed) or of user text (plain)."""
        with self.loaded.tokenizer_lock:  # the tokenizer's special-token switch is shared
            return self.loaded.tokenizer.encode(text, add_special_tokens=False,
                                                split_special_tokens=plain)

    def _feed(self, ids: list[int]) -> tuple[torch.Tensor, float]:
        """Append tokens after the prefix (+ history); returns the last logits [V] and seconds."""
        model, adapter = self.loaded.model, self.loaded.adapter
        start = _now(model)
        input_ids = torch.tensor([ids], device=model.device)
        first = self._prefix.prefill.next_position + len(self._history)
        positions = adapter.text_positions(first.to(model.device), len(ids))
        with torch.no_grad():
            out = model(input_ids=input_ids, position_ids=positions, use_cache=True,
                        past_key_values=self._prefix.cache, logits_to_keep=1)
        self._history += ids
        self._pending = []
        return out.logits[0, -1].float(), _now(model) - start

    def _sample(self, logits: torch.Tensor) -> int:
        if self.temperature <= 0:
            return int(logits.argmax())
        probs = torch.softmax(logits / self.temperature, dim=-1)
        return int(torch.multinomial(probs, 1))


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


def _eos_ids(loaded: LoadedModel) -> list[int]:
    ids = loaded.model.generation_config.eos_token_id
    ids = [ids] if isinstance(ids, int) else list(ids or [])
    if loaded.tokenizer.eos_token_id is not None:
        ids.append(loaded.tokenizer.eos_token_id)
    return ids
