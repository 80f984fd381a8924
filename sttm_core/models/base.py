"""What STTM needs to know about a video-LLM family: the adapter interface, shared by every family.

An adapter answers, for one loaded model: where the decoder layers are, which tokens are video
and on what grid (T, H, W) they lie, how positions work (1D RoPE re-indexed, or M-RoPE ids
kept), how frames become pixel tensors and encoder outputs (and whether a cap on their pixels
applies), how prompts become token ids and which special tokens they use, how token frames
map to video frames, whether every token frame must keep a token (timestamps), what the
language model adds to visual positions after its first layers (DeepStack), how to read the
attention FastV ranks by, and how to build a random-weight model of the family. One file per
family subclasses it; `registry.py` lists them. Nothing outside the adapters asks what kind of
model it holds.
Shape legend: B batch, L sequence, T H W a video's token grid, D hidden size.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn


class UnsupportedModelError(ValueError):
    """The model is not one of the families STTM knows how to patch."""


class FrameSizeError(ValueError):
    """A frame-size option (max_pixels) the model's family refuses; the message says why."""


@dataclass
class VideoSpan:
    """One video's grid tokens in one row of a batch: `positions` holds the sequence index of
    each of its T*H*W tokens in raster (t, y, x) order. Most families give one run of tokens;
    Qwen3-VL gives T runs, one per token frame, with the frame's timestamp text in between.
    Tokens of the row not listed (LLaVA's newline, the timestamps) stay unmerged."""

    row: int
    grid: tuple[int, int, int]  # (T, H, W)
    positions: Tensor           # [T*H*W] long, increasing

    @classmethod
    def run(cls, row: int, start: int, grid: tuple[int, int, int], device=None) -> "VideoSpan":
        """A video whose grid tokens are one run from `start`."""
        T, H, W = grid
        return cls(row, grid, torch.arange(start, start + T * H * W, device=device))

    @property
    def start(self) -> int:
        """Sequence index of the first grid token."""
        return int(self.positions[0])


@dataclass(frozen=True)
class VideoPrompt:
    """What a video's placeholder in the prompt holds: `count` video tokens, and for families
    that write a timestamp before each token frame (Qwen3-VL) the seconds of each frame."""

    count: int
    frame_times: tuple[float, ...] = ()  # seconds of each token frame (timestamps only)


@dataclass
class DeepStack:
    """What a language model adds to its visual positions after its first decoder layers
    (DeepStack, in Qwen3-VL): after layer j, features[j] ([n, D], rows in the row-major order
    of mask) is added to the hidden states where mask [B, L] is True."""

    mask: Tensor
    features: list[Tensor]


class VideoLLMAdapter:
    """The family-independent part; subclasses fill in the family specifics."""

    model_classes: tuple[str, ...] = ()  # transformers classes served (subclasses match too)
    position_mode = "reindex"  # "reindex": 1D RoPE, merged sequence renumbered; "keep": M-RoPE ids kept
    system_prompt = ""         # ChatML system turn before the user turn ("" = none)
    frames_per_token_frame = 1  # video frames folded into one frame of the token grid
    # every token frame keeps at least one token of its own (the prompt has a timestamp
    # before each token frame, which must not be left with nothing after it)
    keeps_every_frame = False
    architectures: dict[str, dict] = {}  # published (and tiny test) shapes, for random models
    # the paper's (tauS, tauT) for this family at its ~50% and ~30% budgets, and the model they
    # were tuned on (benchmarks and the app's presets use them)
    paper_thresholds: tuple[tuple[float, float], ...] = ()
    paper_model = ""
    # the special tokens the family's prompts use (ChatML's here; families add their video
    # tokens): a random-weight model's byte tokenizer numbers them from 256 in this order
    special_tokens: tuple[str, ...] = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
    pad_token = "<|endoftext|>"   # pads a batch (and stands for unknown text)
    end_of_turn = "<|im_end|>"    # ends an answer: the random-weight model's eos

    def __init__(self, model: nn.Module):
        self.model = model

    @classmethod
    def matches(cls, model: nn.Module) -> bool:
        """The model is (a subclass of) one of `model_classes`."""
        return any(base.__name__ in cls.model_classes for base in type(model).__mro__)

    # --- model layout -------------------------------------------------------------------------
    @property
    def language_model(self) -> nn.Module:
        return self.model.model.language_model

    @property
    def decoder_layers(self) -> nn.ModuleList:
        return self.language_model.layers

    @property
    def num_layers(self) -> int:
        return len(self.decoder_layers)

    def check_merge_layer(self, merge_layer: int) -> None:
        if not 0 <= merge_layer < self.num_layers:
            raise ValueError(f"merge_layer={merge_layer} is out of range: this model has "
                             f"{self.num_layers} decoder layers (0..{self.num_layers - 1})")

    def check_position_rule(self, rule: str | None) -> None:
        """'reassign' renumbers the merged sequence 0..L'-1: only 1D RoPE allows that."""
        if rule == "reassign" and self.position_mode != "reindex":
            raise ValueError(
                f"position_rule='reassign' renumbers the merged sequence 0..L'-1, which only 1D "
                f"RoPE models allow; {type(self.model).__name__} uses M-RoPE, whose (t, h, w) "
                "ids place each token on the video grid: use 'survivor' (its default) or 'mean'")

    @property
    def video_token_id(self) -> int:
        return self.model.config.video_token_id

    def video_spans(self, input_ids: Tensor, call: dict) -> list[VideoSpan]:
        """Video token runs of a prefill call, each with its grid. call: the model's kwargs."""
        runs = [(row, start, length) for row in range(input_ids.shape[0])
                for start, length in true_runs(input_ids[row] == self.video_token_id)]
        return [VideoSpan.run(row, start, self.video_grid(call, index, row, start, length),
                              input_ids.device)
                for index, (row, start, length) in enumerate(runs)]

    def video_grid(self, call: dict, index: int, row: int, start: int,
                   length: int) -> tuple[int, int, int]:
        """Grid (T, H, W) of the index-th video of a call: `length` tokens from `start` in
        batch row `row`; any tokens beyond T*H*W at its end stay unmerged."""
        raise NotImplementedError

    def carries_video(self, call: dict) -> bool:
        """A model call holds a video's pixels or its encoder outputs. call: the model's kwargs."""
        encoded = call.get("mm_encoder_outputs") or {}
        return call.get("pixel_values_videos") is not None or encoded.get("video") is not None

    # --- frames, encoder, prompt ----------------------------------------------------------------
    @classmethod
    def preprocessing(cls, processor, config) -> dict:
        """Frame resize / normalise settings from the checkpoint's image processor (None: the
        family's published defaults)."""
        raise NotImplementedError

    @classmethod
    def frame_settings(cls, settings: dict, max_pixels: int | None) -> dict:
        """`preprocessing`'s settings with at most `max_pixels` pixels per frame (None: as
        they are). A family whose frames have one fixed size refuses a cap (FrameSizeError);
        families that resize frames within a pixel range apply it."""
        if max_pixels is None:
            return dict(settings)
        raise FrameSizeError(f"max_pixels={max_pixels}: {cls.__name__} takes no frame-size cap "
                         "(its frames have a fixed size); leave max_pixels out")

    def vision_module(self) -> nn.Module:
        raise NotImplementedError

    def video_inputs(self, frames: np.ndarray, settings: dict, fps: float,
                     times: np.ndarray | None = None) -> tuple[dict, VideoPrompt]:
        """frames [T, H, W, 3] uint8 -> (model kwargs with pixel tensors, what the prompt's
        placeholder must hold). fps: frames per second of the sampled frames; times: [T]
        seconds of each frame (default i / fps), for families that write timestamps."""
        raise NotImplementedError

    def encode_video(self, video: dict) -> dict:
        """Run the vision encoder on `video_inputs`' kwargs: the prefill's kwargs carrying its
        output instead of the pixels."""
        raise NotImplementedError

    def prefill_inputs(self, input_ids: Tensor) -> dict:
        """Extra kwargs a prefill over `input_ids` [B, L] needs besides the video's."""
        return {}

    def video_placeholder(self, tokenizer, video: VideoPrompt) -> list[int]:
        """Token ids standing for a video (`video_inputs`' VideoPrompt) in the user turn."""
        raise NotImplementedError

    def prompt_ids(self, tokenizer, video: VideoPrompt) -> tuple[list[int], list[int]]:
        """(prefix ids up to and including the video, ids of the question turn's closing text)
        for the ChatML conversation: [system] user: <video> question; assistant:"""
        system = (f"<|im_start|>system\n{self.system_prompt}<|im_end|>\n"
                  if self.system_prompt else "")
        prefix = tokenizer.encode(system + "<|im_start|>user\n", add_special_tokens=False)
        prefix += self.video_placeholder(tokenizer, video)
        return prefix, self.closing_ids(tokenizer)

    def closing_ids(self, tokenizer) -> list[int]:
        """Ids that close a question's turn and open the assistant's."""
        return tokenizer.encode("<|im_end|>\n<|im_start|>assistant\n", add_special_tokens=False)

    def next_turn_ids(self, tokenizer, answer_end: list[int]) -> list[int]:
        """Ids that follow an answer's last sampled token(s) `answer_end` (not yet fed) to close
        the answer and open the next user turn (ChatML)."""
        end_of_turn = tokenizer.encode(self.end_of_turn, add_special_tokens=False)
        end = answer_end if answer_end[-1:] == end_of_turn else answer_end + end_of_turn
        return end + tokenizer.encode("\n<|im_start|>user\n", add_special_tokens=False)

    def use_reference_positions(self) -> "AttributeOverride | None":
        """Make the model number a prefill's positions by the family's reference rule where the
        installed transformers numbers them otherwise. Returns a handle whose `remove()` undoes
        it; None: transformers' numbering is the reference (nothing to change)."""
        return None

    def rope_positions(self, positions: Tensor) -> Tensor:
        """A call's position ids as its RoPE reads them: [B, L] (1D RoPE) or [3, B, L] (M-RoPE:
        time, row, column)."""
        return positions

    def text_positions(self, start: Tensor, length: int) -> Tensor:
        """Position ids of `length` text tokens from position `start` [B] on ([B, q], or
        [3, B, q] for M-RoPE where text has t = h = w)."""
        return start[:, None] + torch.arange(length, device=start.device)[None]

    # --- DeepStack ------------------------------------------------------------------------------
    @property
    def deepstack_layers(self) -> int:
        """Decoder layers after which the language model adds DeepStack features (0: none)."""
        return 0

    def take_deepstack(self, kwargs: dict) -> DeepStack | None:
        """A language-model call's DeepStack inputs, taken out of its kwargs (in place): the
        hooks add them after each layer instead, merged from the merge layer on. None: the call
        has none (this family, or a call without pixels)."""
        return None

    # --- FastV's probe --------------------------------------------------------------------------
    def last_token_attention(self, layer: nn.Module, hidden: Tensor, position_embeddings,
                             valid: Tensor) -> Tensor:
        """Attention (mean over heads) from each row's last token to every token at a decoder
        layer of the Qwen2 kind, computed from its input like the layer would (the layer's
        attention map, last row). hidden [B, L, D], valid [B, L] -> [B, L], on hidden's device."""
        attn = layer.self_attn
        device = attn.q_proj.weight.device  # the layer's (device_map may put it elsewhere)
        x = layer.input_layernorm(hidden.to(device))
        position_embeddings = [e.to(device) for e in position_embeddings]
        valid = valid.to(device)
        B, L, _ = x.shape
        head_dim = attn.head_dim
        q = attn.q_proj(x[:, -1:]).view(B, 1, -1, head_dim)  # [B, 1, nh, hd]
        k = attn.k_proj(x).view(B, L, -1, head_dim)          # [B, L, nkv, hd]
        q, k = self.normalise_heads(attn, q, k)
        q, k = q.transpose(1, 2), k.transpose(1, 2)          # [B, nh, 1, hd], [B, nkv, L, hd]
        cos, sin = (e.unsqueeze(1) for e in position_embeddings)             # [B, 1, L, hd]
        q = q * cos[:, :, -1:] + _rotate_half(q) * sin[:, :, -1:]
        k = k * cos + _rotate_half(k) * sin
        k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
        scores = (q @ k.transpose(-1, -2))[:, :, 0] * attn.scaling              # [B, nh, L]
        scores = scores.masked_fill(~valid[:, None], -torch.inf)
        return scores.float().softmax(-1).mean(1).to(hidden.device)

    def normalise_heads(self, attn: nn.Module, q: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
        """Queries and keys per head ([B, n, heads, hd]) as the attention has them just before
        RoPE (Qwen2: as projected)."""
        return q, k

    # --- random-weight models -------------------------------------------------------------------
    @classmethod
    def random_config(cls, spec: dict, text: dict, token_id: dict):
        """(model config, image processor) of an `architectures` spec; `text`: the text model's
        config kwargs, `token_id`: the ids of `special_tokens` in the byte tokenizer."""
        raise NotImplementedError


class AttributeOverride:
    """`obj.name = value` on one instance until `remove()`, which shows the class's own
    attribute again (how `patch` swaps a model's position rule and `unpatch` restores it)."""

    def __init__(self, obj, name: str, value):
        self.obj, self.name = obj, name
        setattr(obj, name, value)

    def remove(self) -> None:
        if self.name in vars(self.obj):
            delattr(self.obj, self.name)


def true_runs(mask: Tensor) -> list[tuple[int, int]]:
    """(start, length) of each run of True in a 1D bool mask."""
    padded = torch.cat([mask.new_zeros(1), mask, mask.new_zeros(1)]).int()
    edges = torch.diff(padded).nonzero().flatten().tolist()
    return [(a, b - a) for a, b in zip(edges[::2], edges[1::2])]


def _rotate_half(x: Tensor) -> Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def pooled_only(features):
    """A vision encoder's output as the language model reads it (pooler_output, and DeepStack
    features where the family has them) without the tower's last and per-layer hidden states,
    which a cached video would otherwise hold on to (LLaVA-OV: every SigLIP layer, ~6 GB for 64
    frames in fp32). The output keeps its own class."""
    kept = {k: v for k, v in features.items() if k not in TOWER_STATES}
    return type(features)(**kept)


TOWER_STATES = ("last_hidden_state", "hidden_states", "attentions")


# --- frame preprocessing (the checkpoint's resize/normalise settings, in torch) -----------------

def resize_frames(frames: np.ndarray, size: tuple[int, int]) -> Tensor:
    """[T, H, W, 3] uint8 -> [T, 3, h, w] float in 0..255 (bicubic, antialiased like PIL)."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    if tuple(x.shape[2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bicubic", antialias=True).clamp(0, 255)


def normalise(pixels: Tensor, settings: dict) -> Tensor:
    """[T, 3, h, w] in 0..255 -> standardised with the checkpoint's mean and std."""
    mean = torch.tensor(settings["image_mean"]).view(1, 3, 1, 1)
    std = torch.tensor(settings["image_std"]).view(1, 3, 1, 1)
    return (pixels / 255 - mean) / std
