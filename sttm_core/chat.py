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

import time
import warnings
from dataclasses import dataclass, field, replace
from typing import Iterator

import numpy as np
import torch

from .config import STTMConfig
from .merge import MergeResult
from .models.checkpoints import LoadedModel, load_model
from .prefix import VideoPrefix
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


class VideoChat:
    """A conversation about one video with one STTM-patched model (batch size 1): questions
    and answers on a cached VideoPrefix (sttm_core.prefix), turns from the adapter's chat
    template, streaming.

    time_merge=True times each prefill's merge (CUDA events on GPU; `Reply.timings["merge"]`),
    for benchmarks; off by default, so nothing waits for the device. Threads that share a chat
    (the app: a reply streaming while the settings change) are serialised by its lock.
    Frames are preprocessed by the model's settings: a frame-size cap is given when loading
    (`load_model(..., max_pixels=)`); `max_pixels=` here still applies one (deprecated)."""

    max_question_tokens = 4096  # longer questions are refused before any model work

    def __init__(self, model: LoadedModel, config: STTMConfig | None = None, *,
                 num_frames: int = 16, max_pixels: int | None = None,
                 max_new_tokens: int = 256, temperature: float = 0.0, time_merge: bool = False):
        if max_pixels is not None:
            warnings.warn("VideoChat(max_pixels=) is deprecated: cap the frames when loading, "
                          "load_model(..., max_pixels=) (or loaded.with_max_pixels(n))",
                          DeprecationWarning, stacklevel=2)
            model = model.with_max_pixels(max_pixels)
        self.prefix = VideoPrefix(model, config or STTMConfig(), time_merge=time_merge)
        self.num_frames = num_frames
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.last_first_logits: torch.Tensor | None = None  # [V] of the last reply's 1st token
        self._pending: list[int] = []  # sampled but not yet fed (the last token of an answer)
        self._asked: list[int] = []  # query-aware prefixes: the ids after the video in them
        with model.tokenizer_lock:  # the ids that close a question's turn (any video length)
            self._closing = model.adapter.closing_ids(model.tokenizer)

    # the prefix's model, video and settings, read through the chat
    loaded = property(lambda self: self.prefix.loaded)
    config = property(lambda self: self.prefix.config)
    clip = property(lambda self: self.prefix.clip)
    settings = property(lambda self: self.prefix.settings)

    @property
    def time_merge(self) -> bool:
        return self.prefix.time_merge

    @time_merge.setter
    def time_merge(self, value: bool) -> None:
        self.prefix.time_merge = bool(value)

    def sibling(self, config: STTMConfig) -> "VideoChat":
        """A new chat with the same model and frame settings but other STTM settings (e.g. all
        tokens, for comparison); it shares no video or cache with this one."""
        same_frames = replace(self.loaded, settings=dict(self.settings))
        return VideoChat(same_frames, config, num_frames=self.num_frames,
                         max_new_tokens=self.max_new_tokens, temperature=self.temperature,
                         time_merge=self.time_merge)

    @classmethod
    def from_pretrained(cls, name_or_path: str, config: STTMConfig | None = None, *,
                        device: str | None = None, dtype=None, device_map=None,
                        attn_implementation: str = "sdpa", trust_remote_code: bool = False,
                        max_pixels: int | None = None, **kwargs) -> "VideoChat":
        """Load a checkpoint (`load_model`: device, dtype, device_map="auto" to spread a big
        model over GPUs, attn_implementation, trust_remote_code, max_pixels: the frame-size
        cap of the Qwen-VL families) and start a chat on it; other keyword arguments go to
        VideoChat (num_frames, max_new_tokens, ...)."""
        loaded = load_model(name_or_path, device=device, dtype=dtype, device_map=device_map,
                            attn_implementation=attn_implementation,
                            trust_remote_code=trust_remote_code, max_pixels=max_pixels)
        return cls(loaded, config, **kwargs)

    # --- between processes (see VideoPrefix) ----------------------------------------------------
    def __getstate__(self) -> dict:
        logits = self.last_first_logits
        return {**self.__dict__, "last_first_logits": None if logits is None else logits.cpu()}

    def attach(self, model: LoadedModel) -> "VideoChat":
        """After unpickling: the model to run on; the cached tensors move to its device."""
        self.prefix.attach(model)
        return self

    # --- video and settings ---------------------------------------------------------------------
    def load_video(self, path, num_frames: int | None = None) -> VideoClip:
        """Decode a video (uniformly sampled frames); the next question builds its prefix."""
        start = time.perf_counter()
        clip = load_video(path, num_frames or self.num_frames)
        self.set_clip(clip)
        self.prefix.decode_s = time.perf_counter() - start
        return clip

    def set_clip(self, clip: VideoClip) -> None:
        with self.prefix.lock:
            self.prefix.set_clip(clip)
            self._pending = []

    def reset_prefix(self) -> None:
        """Forget the cached prefix (KV cache); the encoded video is kept."""
        with self.prefix.lock:  # not while another thread's reply reads it
            self.prefix.reset()
            self._pending = []

    def set_config(self, config: STTMConfig) -> None:
        """New STTM settings. Same merge layer: re-merge from the stored layer-k hidden states
        (encoder and layers < k are not re-run); another layer: the prefix is rebuilt.
        A reply streaming in another thread sees either the old prefix or (at its next token)
        that it changed."""
        with self.prefix.lock:
            self.prefix.set_config(config)
            self._pending = []

    def video_features(self) -> torch.Tensor:
        """[T, H, W, D] the video's hidden states entering the merge layer (after `prepare`):
        the features STTM merges, for drawing and fast what-if merges."""
        with self.prefix.lock:
            return self.prefix.video_features()

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
        return self.prefix.merge_result

    def prepare(self) -> dict:
        """Encode the video and prefill the prompt prefix with STTM, if not done yet.
        Returns the timings of that work."""
        with self.prefix.lock:
            return self.prefix.ensure()

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
        prefix = self.prefix
        with prefix.lock:
            continuing = follow_up and bool(prefix.appended or self._pending)
            turn = self._turn_ids(question_ids, continuing)
            reused = prefix.ready and not self.config.query_aware
            if self.config.query_aware:  # its tokens depend on the question: nothing to reuse
                self._asked = (self._asked + prefix.appended if continuing else []) + turn
                logits, question_s = prefix.build(self._asked), 0.0
            else:
                if not reused:
                    prefix.build()
                if not follow_up:
                    prefix.rollback()
                logits, question_s = prefix.append(turn)
            self._pending = []
            cached = prefix.cached
            charged = {} if reused else dict(prefix.timings)  # the work done for this reply
            fed = len(prefix.appended)  # after the prefix: earlier turns and this question
        tokenizer = self.loaded.tokenizer
        generated: list[int] = []
        stop = set(_eos_ids(self.loaded))
        limit = max_new_tokens or self.max_new_tokens
        merged = self.merge_result
        untimed = dict(decode_video=0.0, vision_encoder=0.0, llm_prefill=0.0,
                       merge=0.0 if self.time_merge else None)
        base = dict(cache_reused=reused, keep_ratio=merged.keep_ratio if merged else 1.0,
                    tokens_before=prefix.length + fed,
                    tokens_after=prefix.merged_length + fed,
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
            with prefix.lock:
                if prefix.cached is not cached:  # set_config / reset_prefix from another thread
                    raise RuntimeError("the video prefix changed during the reply (new settings "
                                       "or video); ask again")
                logits, _ = prefix.append([token])

    def _question_ids(self, question: str) -> list[int]:
        """The question's token ids, as plain text: "<video>" or "<|im_end|>" in it are
        spelled out, never parsed as special tokens. Empty or too long: ValueError."""
        if not isinstance(question, str) or not question.strip():
            raise ValueError("the question is empty")
        with self.loaded.tokenizer_lock:  # the tokenizer's special-token switch is shared
            ids = self.loaded.tokenizer.encode(question, add_special_tokens=False,
                                               split_special_tokens=True)
        if len(ids) > self.max_question_tokens:
            raise ValueError(f"the question is {len(ids)} tokens long; the limit is "
                             f"{self.max_question_tokens} tokens (VideoChat.max_question_tokens)")
        return ids

    def _turn_ids(self, question_ids: list[int], continue_conversation: bool) -> list[int]:
        """The ids a question appends: in the user turn right after the video, or (continuing
        the conversation) after closing the previous answer, in a new user turn (the
        family's chat template, from its adapter)."""
        if not continue_conversation:
            return question_ids + self._closing
        adapter = self.loaded.adapter
        with self.loaded.tokenizer_lock:
            reopen = adapter.next_turn_ids(self.loaded.tokenizer, self._pending)
        return reopen + question_ids + self._closing

    def _sample(self, logits: torch.Tensor) -> int:
        if self.temperature <= 0:
            return int(logits.argmax())
        probs = torch.softmax(logits / self.temperature, dim=-1)
        return int(torch.multinomial(probs, 1))


def _eos_ids(loaded: LoadedModel) -> list[int]:
    ids = loaded.model.generation_config.eos_token_id
    ids = [ids] if isinstance(ids, int) else list(ids or [])
    if loaded.tokenizer.eos_token_id is not None:
        ids.append(loaded.tokenizer.eos_token_id)
    return ids
