"""One adapter per video-LLM family: what STTM needs to know about its layout, in one registry.

An adapter answers: where the decoder layers are, which tokens are video and on what grid
(T, H, W) they lie, how positions work (1D RoPE re-indexed, or M-RoPE ids kept), and, for the
chat runtime, how frames become pixel tensors and prompts become token ids. Nothing else in
the project asks what kind of model it holds.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn


class UnsupportedModelError(ValueError):
    """The model is not one of the families STTM knows how to patch."""


@dataclass
class VideoSpan:
    """One video's tokens in one row of a batch: `T*H*W` grid tokens in raster (t, y, x) order
    from `start`, then `extra` tokens (e.g. LLaVA's newline) that stay unmerged."""

    row: int
    start: int
    grid: tuple[int, int, int]  # (T, H, W)
    extra: int = 0

    @property
    def length(self) -> int:
        T, H, W = self.grid
        return T * H * W + self.extra


def _runs(mask: Tensor) -> list[tuple[int, int]]:
    """(start, length) of each run of True in a 1D bool mask."""
    padded = torch.cat([mask.new_zeros(1), mask, mask.new_zeros(1)]).int()
    edges = torch.diff(padded).nonzero().flatten().tolist()
    return [(a, b - a) for a, b in zip(edges[::2], edges[1::2])]


class VideoLLMAdapter:
    """Base adapter; subclasses fill in the family specifics."""

    family = ""
    position_mode = "reindex"  # "reindex": 1D RoPE, merged sequence renumbered; "keep": M-RoPE ids kept
    system_prompt = ""          # ChatML system turn before the user turn ("" = none)

    def __init__(self, model: nn.Module):
        self.model = model

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

    @property
    def video_token_id(self) -> int:
        return self.model.config.video_token_id

    def video_spans(self, input_ids: Tensor, call: dict) -> list[VideoSpan]:
        """Video token runs of a prefill call, each with its grid. call: the model's kwargs."""
        runs = [(row, start, length) for row in range(input_ids.shape[0])
                for start, length in _runs(input_ids[row] == self.video_token_id)]
        spans = []
        for index, (row, start, length) in enumerate(runs):
            grid, extra = self.video_grid(call, index, row, start, length)
            spans.append(VideoSpan(row, start, grid, extra))
        return spans

    def video_grid(self, call: dict, index: int, row: int, start: int,
                   length: int) -> tuple[tuple[int, int, int], int]:
        """(grid (T, H, W), extra tokens) of the index-th video of a call: `length` tokens from
        `start` in batch row `row`."""
        raise NotImplementedError

    # --- chat runtime ---------------------------------------------------------------------------
    def vision_module(self) -> nn.Module:
        raise NotImplementedError

    def video_inputs(self, frames: np.ndarray, settings: dict, fps: float) -> tuple[dict, int]:
        """frames [T, H, W, 3] uint8 -> (model kwargs with pixel tensors, video placeholder count)."""
        raise NotImplementedError

    def video_placeholder(self, tokenizer, count: int) -> list[int]:
        """Token ids standing for a video of `count` tokens in the user turn."""
        raise NotImplementedError

    def prompt_ids(self, tokenizer, count: int) -> tuple[list[int], list[int]]:
        """(prefix ids up to and including the video, ids of the question turn's closing text)
        for the ChatML conversation: [system] user: <video> question; assistant:"""
        system = (f"<|im_start|>system\n{self.system_prompt}<|im_end|>\n"
                  if self.system_prompt else "")
        prefix = tokenizer.encode(system + "<|im_start|>user\n", add_special_tokens=False)
        prefix += self.video_placeholder(tokenizer, count)
        closing = tokenizer.encode("<|im_end|>\n<|im_start|>assistant\n", add_special_tokens=False)
        return prefix, closing

    def text_positions(self, start: Tensor, length: int) -> Tensor:
        """Position ids of `length` text tokens from position `start` [B] on ([B, q], or
        [3, B, q] for M-RoPE where text has t = h = w)."""
        return start[:, None] + torch.arange(length, device=start.device)[None]


class LlavaOnevisionAdapter(VideoLLMAdapter):
    """LLaVA-OneVision and LLaVA-Video (Qwen2 LLM, 1D RoPE). Each frame's SigLIP patches are
    bilinearly pooled to ceil(side/2)^2 tokens; one newline token follows the whole video."""

    family = "llava_onevision"
    position_mode = "reindex"

    @property
    def frame_side(self) -> int:
        vision = self.model.config.vision_config
        return math.ceil(vision.image_size // vision.patch_size / 2)

    def video_grid(self, call, index, row, start, length):
        side = self.frame_side
        frames, rest = divmod(length - 1, side * side)  # the last token is the newline
        if rest or not frames:
            raise ValueError(f"a run of {length} video tokens is not T x {side} x {side} + 1")
        return (frames, side, side), 1

    def vision_module(self):
        return self.model.model.vision_tower

    def video_inputs(self, frames, settings, fps):
        size = settings["size"]
        pixels = _normalise(_resize(frames, (size, size)), settings)  # [T, 3, S, S]
        T = frames.shape[0]
        return {"pixel_values_videos": pixels[None]}, T * self.frame_side ** 2 + 1

    def video_placeholder(self, tokenizer, count):
        return [self.video_token_id] * count + tokenizer.encode("\n", add_special_tokens=False)


class Qwen2VLAdapter(VideoLLMAdapter):
    """Qwen2-VL and Qwen2.5-VL (M-RoPE). Frames are patchified in pairs (temporal patch 2) and
    2x2 patches merge into one token, so a video of T frames at h x w patches has
    T/2 x h/2 x w/2 tokens between <|vision_start|> and <|vision_end|>."""

    family = "qwen2_vl"
    position_mode = "keep"
    system_prompt = "You are a helpful assistant."

    def video_grid(self, call, index, row, start, length):
        grid_thw = call.get("video_grid_thw")
        if grid_thw is not None:  # a direct forward call
            m = self.model.config.vision_config.spatial_merge_size
            t, h, w = grid_thw[index].tolist()
            grid = (t, h // m, w // m)
        else:  # generate() passes encoder outputs and M-RoPE ids instead: read (t, h, w) off them
            positions = call.get("position_ids")
            if positions is None:
                raise ValueError("Qwen-VL video tokens need video_grid_thw or 3D position_ids")
            thw = positions[-3:, row, start:start + length]  # [3, n] time, row, column ids
            height, width = (len(torch.unique(ids)) for ids in thw[1:])
            grid = (length // (height * width), height, width)
        if grid[0] * grid[1] * grid[2] != length:
            raise ValueError(f"a run of {length} video tokens does not match its grid {grid}")
        return grid, 0

    def vision_module(self):
        return self.model.model.visual

    def video_inputs(self, frames, settings, fps):
        vision = self.model.config.vision_config
        p, m, tp = vision.patch_size, vision.spatial_merge_size, vision.temporal_patch_size
        height, width = smart_resize(*frames.shape[1:3], p * m, settings["min_pixels"],
                                     settings["max_pixels"])
        pixels = _normalise(_resize(frames, (height, width)), settings)  # [T, 3, h, w]
        if pad := -len(pixels) % tp:  # the last frame repeats to fill the last temporal patch
            pixels = torch.cat([pixels, pixels[-1:].expand(pad, -1, -1, -1)])
        gt, gh, gw = len(pixels) // tp, height // p, width // p
        patches = pixels.view(gt, tp, 3, gh // m, m, p, gw // m, m, p)
        patches = patches.permute(0, 3, 6, 4, 7, 2, 1, 5, 8).reshape(gt * gh * gw, -1)
        inputs = {"pixel_values_videos": patches, "video_grid_thw": torch.tensor([[gt, gh, gw]])}
        if "Qwen2_5" in type(self.model).__name__:  # seconds per temporal patch, for M-RoPE time ids
            inputs["second_per_grid_ts"] = torch.tensor([tp / fps])
        return inputs, gt * gh * gw // m ** 2

    def video_placeholder(self, tokenizer, count):
        config = self.model.config
        return [config.vision_start_token_id] + [self.video_token_id] * count + [
            config.vision_end_token_id]

    def text_positions(self, start, length):
        return super().text_positions(start, length)[None].expand(3, -1, -1)


ADAPTERS: dict[str, type[VideoLLMAdapter]] = {
    "LlavaOnevisionForConditionalGeneration": LlavaOnevisionAdapter,
    "Qwen2VLForConditionalGeneration": Qwen2VLAdapter,
    "Qwen2_5_VLForConditionalGeneration": Qwen2VLAdapter,
}


def adapter_for(model: nn.Module) -> VideoLLMAdapter:
    name = type(model).__name__
    if name not in ADAPTERS:
        raise UnsupportedModelError(
            f"STTM does not support {name}; supported model classes: {', '.join(ADAPTERS)} "
            "(LLaVA-OneVision / LLaVA-Video, Qwen2-VL, Qwen2.5-VL in transformers 5.x)")
    return ADAPTERS[name](model)


# --- frame preprocessing (the checkpoint's resize/normalise settings, in torch) -----------------

def smart_resize(height: int, width: int, factor: int, min_pixels: int,
                 max_pixels: int) -> tuple[int, int]:
    """Qwen-VL's resize rule: sides become multiples of `factor`, the area kept within
    [min_pixels, max_pixels], the aspect ratio nearly unchanged."""
    h, w = max(factor, round(height / factor) * factor), max(factor, round(width / factor) * factor)
    if h * w > max_pixels:
        scale = math.sqrt(height * width / max_pixels)
        h = max(factor, math.floor(height / scale / factor) * factor)
        w = max(factor, math.floor(width / scale / factor) * factor)
    elif h * w < min_pixels:
        scale = math.sqrt(min_pixels / (height * width))
        h, w = math.ceil(height * scale / factor) * factor, math.ceil(width * scale / factor) * factor
    return h, w


def _resize(frames: np.ndarray, size: tuple[int, int]) -> Tensor:
    """[T, H, W, 3] uint8 -> [T, 3, h, w] float in 0..255 (bicubic, antialiased like PIL)."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    if tuple(x.shape[2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bicubic", antialias=True).clamp(0, 255)


def _normalise(pixels: Tensor, settings: dict) -> Tensor:
    mean = torch.tensor(settings["image_mean"]).view(1, 3, 1, 1)
    std = torch.tensor(settings["image_std"]).view(1, 3, 1, 1)
    return (pixels / 255 - mean) / std
