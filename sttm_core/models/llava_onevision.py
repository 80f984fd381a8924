"""LLaVA-OneVision and LLaVA-Video (Qwen2 LLM, 1D RoPE).

Each frame's SigLIP patches are bilinearly pooled to ceil(side/2)^2 tokens; one newline token
follows the whole video and stays unmerged. Frames are resized square to the SigLIP size.
"""
from __future__ import annotations

import math

from .base import FrameSizeError, VideoLLMAdapter, VideoPrompt, normalise, pooled_only, resize_frames

SIGLIP_MEAN = SIGLIP_STD = [0.5, 0.5, 0.5]
SIGLIP_SO400M = dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=26,
                     num_attention_heads=16, image_size=384, patch_size=14)  # LLaVA-OV's tower


class LlavaOnevisionAdapter(VideoLLMAdapter):
    model_classes = ("LlavaOnevisionForConditionalGeneration",)
    position_mode = "reindex"
    paper_thresholds = ((0.85, 0.65), (0.85, 0.55))  # LLaVA-OV-7B on VideoMME
    paper_model = "LLaVA-OneVision-7B"
    special_tokens = VideoLLMAdapter.special_tokens + ("<image>", "<video>")
    # text: hidden, ffn, layers, heads, kv heads, vocab, tied embeddings
    architectures = {
        "llava-onevision-qwen2-0.5b-ov-hf": dict(
            text=(896, 4864, 24, 14, 2, 151936, True), vision=SIGLIP_SO400M),
        "llava-onevision-qwen2-7b-ov-hf": dict(
            text=(3584, 18944, 28, 28, 4, 152064, False), vision=SIGLIP_SO400M),
        "tiny-llava-onevision": dict(
            text=(64, 128, 4, 4, 2, 272, False),
            vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=2, image_size=70, patch_size=14)),
        # the real 14x14 token grid per frame (SigLIP 384 / 14, pooled) with tiny layers:
        # the app's latency on a model's features without the cost of a real model
        "tiny-llava-onevision-14x14": dict(
            text=(64, 128, 4, 4, 2, 272, False),
            vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                        num_attention_heads=2, image_size=384, patch_size=14)),
    }

    @property
    def frame_side(self) -> int:
        vision = self.model.config.vision_config
        return math.ceil(vision.image_size // vision.patch_size / 2)

    def video_grid(self, call, index, row, start, length):
        side = self.frame_side
        frames, rest = divmod(length - 1, side * side)  # the last token is the newline
        if rest or not frames:
            raise ValueError(f"a run of {length} video tokens is not T x {side} x {side} + 1")
        return frames, side, side

    @classmethod
    def preprocessing(cls, processor, config):
        size = getattr(processor, "size", None) or {}
        return dict(size=size.get("height") or config.vision_config.image_size,
                    image_mean=getattr(processor, "image_mean", SIGLIP_MEAN),
                    image_std=getattr(processor, "image_std", SIGLIP_STD))

    @classmethod
    def frame_settings(cls, settings, max_pixels):
        if max_pixels is None:
            return dict(settings)
        side = settings["size"]
        raise FrameSizeError(
            f"max_pixels={max_pixels}: a frame-size cap applies to the Qwen-VL families (Qwen2-VL, "
            "Qwen2.5-VL, Qwen3-VL), which resize frames within a pixel range; LLaVA-OneVision "
            f"resizes every frame to the same {side}x{side} pixels. Leave max_pixels out "
            "(fewer frames make its videos cheaper).")

    def vision_module(self):
        return self.model.model.vision_tower

    def video_inputs(self, frames, settings, fps, times=None):
        size = settings["size"]
        pixels = normalise(resize_frames(frames, (size, size)), settings)  # [T, 3, S, S]
        count = len(frames) * self.frame_side ** 2 + 1
        return {"pixel_values_videos": pixels[None]}, VideoPrompt(count)

    def encode_video(self, video):
        features = self.model.model.get_video_features(video["pixel_values_videos"],
                                                       return_dict=True)
        return {"mm_encoder_outputs": {"video": pooled_only(features)}}

    def video_placeholder(self, tokenizer, video):
        return [self.video_token_id] * video.count + tokenizer.encode("\n", add_special_tokens=False)

    @classmethod
    def random_config(cls, spec, text, token_id):
        from transformers import (LlavaOnevisionConfig, LlavaOnevisionImageProcessorPil,
                                  Qwen2Config, SiglipVisionConfig)

        vision = SiglipVisionConfig(vision_use_head=False, **spec["vision"])
        side = vision.image_size
        config = LlavaOnevisionConfig(
            vision_config=vision, text_config=Qwen2Config(rope_theta=1e6, **text),
            image_token_index=token_id["<image>"], video_token_index=token_id["<video>"],
            vision_feature_select_strategy="full", vision_feature_layer=-1,
            image_grid_pinpoints=[[side, side]], tie_word_embeddings=text["tie_word_embeddings"])
        processor = LlavaOnevisionImageProcessorPil(
            size={"height": side, "width": side}, image_mean=SIGLIP_MEAN, image_std=SIGLIP_STD,
            image_grid_pinpoints=[[side, side]])
        return config, processor
