"""Qwen2-VL and Qwen2.5-VL (M-RoPE: each merged token keeps its representative's (t, h, w) ids).

Frames are patchified in pairs (temporal patch 2) and 2x2 patches merge into one token, so a
video of T frames at h x w patches has T/2 x h/2 x w/2 tokens between <|vision_start|> and
<|vision_end|>. Frames are resized with Qwen's `smart_resize` (sides multiples of 28, area
within the video processor's min / max pixels; max_pixels is a hard cap).

Positions follow Qwen's reference rule (Qwen's own code; transformers 4.45, which the official
STTM runs used): the text after a vision block starts at max(its ids) + 1. transformers >= 5.3
starts it at start + max(H, W) instead, which for a video longer than its grid is wide puts
the question back inside the video's time range; `patch` swaps in `rope_index` below.
"""
from __future__ import annotations

import math
import numbers
from typing import Iterator

import torch
from torch import Tensor

from .base import (AttributeOverride, FrameSizeError, VideoLLMAdapter, VideoPrompt, normalise, pooled_only,
                   resize_frames, true_runs)

CLIP_MEAN, CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
VIDEO_PIXELS = (128 * 28 * 28, 768 * 28 * 28)  # the video processor's min / max pixels
QWEN25_VIT = dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16,
                  fullatt_block_indexes=[7, 15, 23, 31], window_size=112)  # Qwen2.5-VL's tower


class Qwen2VLAdapter(VideoLLMAdapter):
    model_classes = ("Qwen2VLForConditionalGeneration",)
    position_mode = "keep"
    system_prompt = "You are a helpful assistant."
    frames_per_token_frame = 2  # temporal patch size
    paper_thresholds = ((0.85, 0.60), (0.80, 0.60))  # Qwen2-VL-7B on VideoMME
    paper_model = "Qwen2-VL-7B"
    special_tokens = VideoLLMAdapter.special_tokens + (
        "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")
    architectures = {
        "tiny-qwen2-vl": dict(
            text=(64, 128, 4, 4, 2, 272, False),
            vision=dict(depth=2, embed_dim=32, num_heads=2, mlp_ratio=2), mrope_section=[2, 3, 3]),
    }

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
        return grid

    @classmethod
    def preprocessing(cls, processor, config):
        return dict(min_pixels=VIDEO_PIXELS[0], max_pixels=VIDEO_PIXELS[1],
                    image_mean=getattr(processor, "image_mean", CLIP_MEAN),
                    image_std=getattr(processor, "image_std", CLIP_STD))

    @classmethod
    def frame_settings(cls, settings, max_pixels):
        """max_pixels replaces the video processor's maximum: a hard cap per frame, which
        below the minimum lowers it too (`smart_resize`)."""
        if max_pixels is None:
            return dict(settings)
        if isinstance(max_pixels, bool) or not isinstance(max_pixels, numbers.Integral) \
                or max_pixels < 1:
            raise FrameSizeError(f"max_pixels={max_pixels!r} is not a positive whole number of "
                             "pixels per frame")
        return {**settings, "max_pixels": int(max_pixels)}

    def vision_module(self):
        return self.model.model.visual

    def video_inputs(self, frames, settings, fps, times=None):
        inputs = self.patchify(frames, settings, settings["max_pixels"])
        vision = self.model.config.vision_config
        count = int(inputs["video_grid_thw"].prod()) // vision.spatial_merge_size ** 2
        return {**inputs, **self.time_inputs(vision.temporal_patch_size / fps)}, VideoPrompt(count)

    def patchify(self, frames, settings: dict, max_pixels: int) -> dict:
        """frames [T, H, W, 3] uint8 -> pixel_values_videos [gt*gh*gw, 3*tp*p*p] (resized
        within min_pixels .. max_pixels per frame, normalised, in the vision tower's order:
        temporal patch, 2x2 merge blocks, then the patches inside) and video_grid_thw [1, 3]."""
        vision = self.model.config.vision_config
        p, m, tp = vision.patch_size, vision.spatial_merge_size, vision.temporal_patch_size
        height, width = smart_resize(*frames.shape[1:3], p * m, settings["min_pixels"], max_pixels)
        pixels = normalise(resize_frames(frames, (height, width)), settings)  # [T, 3, h, w]
        if pad := -len(pixels) % tp:  # the last frame repeats to fill the last temporal patch
            pixels = torch.cat([pixels, pixels[-1:].expand(pad, -1, -1, -1)])
        gt, gh, gw = len(pixels) // tp, height // p, width // p
        patches = pixels.view(gt, tp, 3, gh // m, m, p, gw // m, m, p)
        patches = patches.permute(0, 3, 6, 4, 7, 2, 1, 5, 8).reshape(gt * gh * gw, -1)
        return {"pixel_values_videos": patches, "video_grid_thw": torch.tensor([[gt, gh, gw]])}

    def time_inputs(self, seconds_per_patch: float) -> dict:
        """Inputs that set the M-RoPE time ids' scale (Qwen2-VL: none)."""
        return {}

    def encode_video(self, video):
        features = self.model.model.get_video_features(
            video["pixel_values_videos"], video["video_grid_thw"], return_dict=True)
        rest = {k: v for k, v in video.items() if k != "pixel_values_videos"}
        return {**rest, "mm_encoder_outputs": {"video": pooled_only(features)}}

    def prefill_inputs(self, input_ids):
        return {"mm_token_type_ids": (input_ids == self.video_token_id).int() * 2}

    def video_placeholder(self, tokenizer, video):
        config = self.model.config
        return [config.vision_start_token_id] + [self.video_token_id] * video.count + [
            config.vision_end_token_id]

    def text_positions(self, start, length):
        return super().text_positions(start, length)[None].expand(3, -1, -1)

    def rope_positions(self, positions):
        if positions.dim() == 3 and positions.shape[0] == 4:  # transformers: a text row first
            return positions[1:]
        return positions

    # --- positions: Qwen's reference rule -------------------------------------------------------
    def use_reference_positions(self):
        return AttributeOverride(self.model.model, "get_rope_index", self.rope_index)

    def rope_index(self, input_ids: Tensor, mm_token_type_ids=None, image_grid_thw=None,
                   video_grid_thw=None, attention_mask=None, second_per_grid_ts=None, **_):
        """Qwen's reference M-RoPE ids, in the place of transformers' `get_rope_index` (same
        arguments and results; image and video tokens are found by their ids).

        input_ids [B, L] -> (ids [3, B, L]: rows t, h, w, 0 on padding; rope deltas [B, 1]: a
        token after the prompt at plain index p gets id p + delta, i.e. max + 1 onwards).
        Text counts on by one on all three rows. A vision block whose first id is s (one more
        than every id before it) gives its token (t, y, x) the ids (s + time(t), s + y, s + x),
        and the text after it starts at max(its ids) + 1. Grids ([N, 3] patch grids, before the
        2x2 merge) and second_per_grid_ts are taken in order, row by row."""
        B, L = input_ids.shape
        valid = (torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None
                 else attention_mask.bool())
        config = self.model.config
        blocks = {config.image_token_id: _grid_rows(image_grid_thw, None),
                  config.video_token_id: _grid_rows(video_grid_thw, second_per_grid_ts)}
        positions = torch.zeros(3, B, L, dtype=torch.long)
        deltas = torch.zeros(B, 1, dtype=torch.long)
        for row in range(B):
            ids = input_ids[row, valid[row]].cpu()
            ids_of_row = self._row_positions(ids, blocks)  # [3, n]
            positions[:, row, valid[row].cpu()] = ids_of_row
            if len(ids):
                deltas[row] = int(ids_of_row.max()) + 1 - len(ids)
        return positions.to(input_ids.device), deltas.to(input_ids.device)

    def _row_positions(self, ids: Tensor, blocks: dict) -> Tensor:
        """ids [n] of one unpadded row -> [3, n]; `blocks` maps a vision token id to an
        iterator over its (grid, seconds per temporal patch)."""
        m = self.model.config.vision_config.spatial_merge_size
        runs = sorted((start, length, token) for token in blocks
                      for start, length in true_runs(ids == token))
        pieces, next_id, done = [], 0, 0
        for start, length, token in runs + [(len(ids), 0, None)]:
            pieces.append(torch.arange(next_id, next_id + start - done).expand(3, -1))  # text
            next_id += start - done
            if token is None:
                break
            (t, h, w), seconds = next(blocks[token], ((0, 0, 0), None))
            T, H, W = t, h // m, w // m
            if T * H * W != length:
                raise ValueError(f"a run of {length} vision tokens does not match its grid "
                                 f"{(T, H, W)} (video_grid_thw / image_grid_thw)")
            time = self.time_ids(T, seconds)
            block = torch.stack(torch.meshgrid(time, torch.arange(H), torch.arange(W),
                                               indexing="ij")).reshape(3, -1) + next_id
            pieces.append(block)
            next_id, done = int(block.max()) + 1, start + length
        return torch.cat(pieces, dim=1)

    def time_ids(self, T: int, seconds_per_patch: float | None) -> Tensor:
        """[T] relative time ids of a block's temporal patches (Qwen2-VL: their index)."""
        return torch.arange(T)

    @classmethod
    def random_config(cls, spec, text, token_id):
        from transformers import Qwen2VLConfig

        vision = dict(spec["vision"], hidden_size=text["hidden_size"])
        return cls._qwen_config(Qwen2VLConfig, spec, text, token_id, vision)

    @staticmethod
    def _qwen_config(config_class, spec, text, token_id, vision, *, patch_size=14,
                     mean_std=(CLIP_MEAN, CLIP_STD), rope=None):
        """A Qwen-VL config and image processor from an architecture spec (random weights)."""
        from transformers import Qwen2VLImageProcessorPil

        rope = rope or {"rope_theta": 1e6}
        text = dict(text, rope_parameters={"rope_type": "default",
                                           "mrope_section": spec["mrope_section"], **rope})
        vision = dict(patch_size=patch_size, spatial_merge_size=2, temporal_patch_size=2, **vision)
        config = config_class(
            text_config=text, vision_config=vision, tie_word_embeddings=text["tie_word_embeddings"],
            image_token_id=token_id["<|image_pad|>"], video_token_id=token_id["<|video_pad|>"],
            vision_start_token_id=token_id["<|vision_start|>"],
            vision_end_token_id=token_id["<|vision_end|>"])
        mean, std = mean_std
        processor = Qwen2VLImageProcessorPil(
            image_mean=mean, image_std=std, patch_size=patch_size, temporal_patch_size=2,
            merge_size=2)
        return config, processor


class Qwen25VLAdapter(Qwen2VLAdapter):
    """Qwen2.5-VL: as Qwen2-VL, with time ids scaled by the seconds each temporal patch spans."""

    model_classes = ("Qwen2_5_VLForConditionalGeneration",)
    architectures = {
        "Qwen2.5-VL-3B-Instruct": dict(
            text=(2048, 11008, 36, 16, 2, 151936, True), vision=QWEN25_VIT,
            mrope_section=[16, 24, 24]),
        "Qwen2.5-VL-7B-Instruct": dict(
            text=(3584, 18944, 28, 28, 4, 152064, False), vision=QWEN25_VIT,
            mrope_section=[16, 24, 24]),
        "tiny-qwen2.5-vl": dict(
            text=(64, 128, 4, 4, 2, 272, False),
            vision=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2,
                        fullatt_block_indexes=[1], window_size=56),
            mrope_section=[2, 3, 3]),
    }

    def time_inputs(self, seconds_per_patch):
        return {"second_per_grid_ts": torch.tensor([seconds_per_patch], dtype=torch.float32)}

    def time_ids(self, T, seconds_per_patch):
        """Absolute time: floor(t * seconds per patch * tokens_per_second), in fp32 as Qwen's
        code computes it (a bf16 seconds value would shift late ids; VideoChat keeps it fp32)."""
        if seconds_per_patch is None:  # images, or no second_per_grid_ts given
            return torch.arange(T)
        tokens_per_second = self.model.config.vision_config.tokens_per_second
        seconds = torch.tensor(seconds_per_patch, dtype=torch.float32)
        return (torch.arange(T, dtype=torch.float32) * seconds * tokens_per_second).long()

    @classmethod
    def random_config(cls, spec, text, token_id):
        from transformers import Qwen2_5_VLConfig

        vision = dict(spec["vision"], out_hidden_size=text["hidden_size"], tokens_per_second=2)
        return cls._qwen_config(Qwen2_5_VLConfig, spec, text, token_id, vision)


def _grid_rows(grids: Tensor | None, seconds: Tensor | None) -> Iterator:
    """Iterator over ((t, h, w), seconds per temporal patch or None) of [N, 3] grids."""
    rows = [] if grids is None else grids.tolist()
    times = [None] * len(rows) if seconds is None else seconds.float().tolist()
    return iter(list(zip(rows, times)))


def smart_resize(height: int, width: int, factor: int, min_pixels: int,
                 max_pixels: int) -> tuple[int, int]:
    """Qwen-VL's resize rule: sides become multiples of `factor`, the area kept within
    [min_pixels, max_pixels], the aspect ratio nearly unchanged.

    max_pixels is a hard cap: below min_pixels it lowers the minimum to itself (qwen-vl-utils
    refuses min > max; transformers then grows the frame past the cap)."""
    if max_pixels < factor * factor:
        raise ValueError(f"max_pixels={max_pixels} is smaller than one {factor}x{factor} token "
                         f"({factor * factor} pixels)")
    min_pixels = min(min_pixels, max_pixels)
    h, w = max(factor, round(height / factor) * factor), max(factor, round(width / factor) * factor)
    if h * w > max_pixels:
        scale = math.sqrt(height * width / max_pixels)
        h = max(factor, math.floor(height / scale / factor) * factor)
        w = max(factor, math.floor(width / scale / factor) * factor)
    elif h * w < min_pixels:
        scale = math.sqrt(min_pixels / (height * width))
        h, w = math.ceil(height * scale / factor) * factor, math.ceil(width * scale / factor) * factor
    while h * w > max_pixels:  # a side floored at `factor`, or rounded up: shorten the longer
        if h >= w:
            h = max(factor, max_pixels // w // factor * factor)
        else:
            w = max(factor, max_pixels // h // factor * factor)
    return h, w
