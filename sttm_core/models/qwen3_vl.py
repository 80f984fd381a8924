"""Qwen3-VL, dense and MoE (M-RoPE: each merged token keeps its representative's (t, h, w) ids).

As Qwen2-VL (frames patchified in pairs, 2x2 patches per token), with three things STTM must
handle:

* Timestamps. Each token frame (a temporal patch: two frames) is its own block in the prompt,
  `<{t:.1f} seconds><|vision_start|>` H*W video tokens `<|vision_end|>`, t the mean time of
  its two frames. So a video's grid tokens are T runs (VideoSpan.positions lists them), and
  every token frame keeps a token of its own after merging (`keeps_every_frame`): no timestamp
  is left with nothing after it. The blocks replace the chat template's whole
  `<|vision_start|><|video_pad|><|vision_end|>`, as transformers 4.57's Qwen3VLProcessor (the
  one the models were released with) and vLLM write them; 5.23's generic processor keeps that
  outer pair around the blocks.
* DeepStack. Features of three vision blocks are added to the visual positions after decoder
  layers 0, 1, 2 (they come with the encoder's output, `encode_video`'s mm_encoder_outputs).
  The hooks take them out of the language model's call (`take_deepstack`) and add them
  themselves, merged like the hidden states from the merge layer on.
* Attention. Each head's queries and keys are RMS-normalised before RoPE (FastV's probe does
  the same), head_dim is its own number (128; not hidden / heads), M-RoPE is interleaved
  (inside the model's rotary embedding, which the hooks call).

Positions: each token frame is a block with one time step, and transformers >= 5.3 places the
text after a block at start + max(H, W), which then is max + 1, Qwen's reference rule; so
transformers' get_rope_index is used as it is (tests/test_positions.py checks it).
Frames: Qwen's own video rule (qwen-vl-utils): sides multiples of 32, 128..768 tokens per
frame, and a long video's frames share a budget of 0.9 x 128k tokens. transformers' video
processor instead bounds the whole video's pixels; per-frame bounds keep `max_pixels` meaning
the same for every Qwen family.
"""
from __future__ import annotations

import torch

from .base import DeepStack, VideoPrompt, VideoSpan, true_runs
from .qwen2_vl import Qwen2VLAdapter

QWEN3_MEAN = QWEN3_STD = [0.5, 0.5, 0.5]
FRAME_TOKENS = (128, 768)  # tokens per frame, min / max (qwen-vl-utils' video rule)
VIDEO_TOKEN_BUDGET = 0.9 * 128_000  # all frames' tokens together (ditto)
QWEN3_VIT = dict(depth=24, hidden_size=1024, intermediate_size=4096, num_heads=16,
                 num_position_embeddings=2304, deepstack_visual_indexes=[5, 11, 17])  # 2B, 4B
QWEN3_VIT_8B = dict(depth=27, hidden_size=1152, intermediate_size=4304, num_heads=16,
                    num_position_embeddings=2304, deepstack_visual_indexes=[8, 16, 24])
MROPE = [24, 20, 20]
TINY_TEXT = (64, 128, 4, 4, 2, 272, False)
TINY_VIT = dict(depth=3, hidden_size=32, intermediate_size=64, num_heads=2,
                num_position_embeddings=64, deepstack_visual_indexes=[0, 1, 2])
TINY_MOE = dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
                decoder_sparse_step=1, mlp_only_layers=[])


class Qwen3VLAdapter(Qwen2VLAdapter):
    model_classes = ("Qwen3VLForConditionalGeneration", "Qwen3VLMoeForConditionalGeneration")
    system_prompt = ""  # Qwen3-VL's chat template has no default system turn
    keeps_every_frame = True
    paper_thresholds, paper_model = (), ""  # the paper did not run Qwen3-VL
    # text: hidden, ffn, layers, heads, kv heads, vocab, tied embeddings (head_dim apart)
    architectures = {
        "Qwen3-VL-2B-Instruct": dict(text=(2048, 6144, 28, 16, 8, 151936, True), head_dim=128,
                                     vision=QWEN3_VIT, mrope_section=MROPE),
        "Qwen3-VL-4B-Instruct": dict(text=(2560, 9728, 36, 32, 8, 151936, True), head_dim=128,
                                     vision=QWEN3_VIT, mrope_section=MROPE),
        "Qwen3-VL-8B-Instruct": dict(text=(4096, 12288, 36, 32, 8, 151936, False), head_dim=128,
                                     vision=QWEN3_VIT_8B, mrope_section=MROPE),
        # head_dim 32 != 64 / 4 heads, as in the 4B model (2560 / 32 = 80 != 128)
        "tiny-qwen3-vl": dict(text=TINY_TEXT, head_dim=32, vision=TINY_VIT,
                              mrope_section=[6, 5, 5]),
        "tiny-qwen3-vl-moe": dict(text=TINY_TEXT, head_dim=32, vision=TINY_VIT,
                                  mrope_section=[6, 5, 5], moe=TINY_MOE),
    }

    # --- the video's tokens: one run per token frame ---------------------------------------------
    def video_spans(self, input_ids, call):
        """Each video's T runs of H*W tokens (one per token frame, in order) as one span."""
        runs = [(row, start, length) for row in range(input_ids.shape[0])
                for start, length in true_runs(input_ids[row] == self.video_token_id)]
        spans, used = [], 0
        for video in self._videos(call):
            row, start, length = runs[used] if used < len(runs) else (None, 0, 0)
            T, H, W = video if isinstance(video, tuple) else self._grid_from_positions(
                call, video, row, start, length)
            frames = runs[used:used + T]
            if len(frames) < T or any(r != row or n != H * W for r, _, n in frames):
                raise ValueError(f"a Qwen3-VL video of grid {(T, H, W)} needs {T} runs of "
                                 f"{H * W} video tokens in one row; found {frames}")
            positions = torch.cat([torch.arange(s, s + n) for _, s, n in frames])
            spans.append(VideoSpan(row, (T, H, W), positions.to(input_ids.device)))
            used += T
        if used != len(runs):
            raise ValueError(f"{len(runs)} runs of video tokens, but the videos' grids account "
                             f"for {used}")
        return spans

    def _videos(self, call) -> list:
        """Per video of a call: its token grid (T, H, W), or only its token count when the call
        carries encoder outputs but no grids (generate())."""
        grid_thw = call.get("video_grid_thw")
        if grid_thw is not None:
            m = self.model.config.vision_config.spatial_merge_size
            return [(t, h // m, w // m) for t, h, w in grid_thw.tolist()]
        encoded = (call.get("mm_encoder_outputs") or {}).get("video")
        if encoded is None:
            if call.get("pixel_values_videos") is not None:
                raise ValueError("Qwen3-VL video pixels need their video_grid_thw")
            return []
        return [len(tokens) for tokens in encoded.pooler_output]

    def _grid_from_positions(self, call, count, row, start, length) -> tuple[int, int, int]:
        """(T, H, W) of a video of `count` tokens whose first token frame is the run `length`
        tokens from `start`: H and W from its M-RoPE ids (distinct rows / columns)."""
        positions = call.get("position_ids")
        if positions is None or row is None:
            raise ValueError("Qwen-VL video tokens need video_grid_thw or 3D position_ids")
        _, rows, cols = positions[-3:, row, start:start + length]  # [n] each
        H, W = len(torch.unique(rows)), len(torch.unique(cols))
        return count // (H * W), H, W

    def use_reference_positions(self):
        return None  # transformers' numbering already is the reference rule (module docstring)

    # --- frames, encoder, prompt -------------------------------------------------------------------
    @classmethod
    def preprocessing(cls, processor, config):
        vision = config.vision_config
        side = vision.patch_size * vision.spatial_merge_size
        return dict(min_pixels=FRAME_TOKENS[0] * side * side,
                    max_pixels=FRAME_TOKENS[1] * side * side,
                    budget_pixels=int(VIDEO_TOKEN_BUDGET * side * side),
                    image_mean=getattr(processor, "image_mean", QWEN3_MEAN),
                    image_std=getattr(processor, "image_std", QWEN3_STD))

    def video_inputs(self, frames, settings, fps, times=None):
        vision = self.model.config.vision_config
        tp = vision.temporal_patch_size
        padded = len(frames) + -len(frames) % tp
        # a long video's frames share the token budget (never below 1.05 x the minimum)
        shared = max(settings["budget_pixels"] * tp / padded, int(settings["min_pixels"] * 1.05))
        inputs = self.patchify(frames, settings, int(min(settings["max_pixels"], shared)))
        count = int(inputs["video_grid_thw"].prod()) // vision.spatial_merge_size ** 2
        times = [i / fps for i in range(len(frames))] if times is None else list(times)
        return inputs, VideoPrompt(count, frame_times(times, tp))

    def video_placeholder(self, tokenizer, video):
        config = self.model.config
        per_frame = video.count // len(video.frame_times)
        ids = []
        for seconds in video.frame_times:
            ids += tokenizer.encode(f"<{seconds:.1f} seconds>", add_special_tokens=False)
            ids += [config.vision_start_token_id] + [self.video_token_id] * per_frame
            ids += [config.vision_end_token_id]
        return ids

    # --- DeepStack and attention --------------------------------------------------------------------
    @property
    def deepstack_layers(self):
        return len(self.model.config.vision_config.deepstack_visual_indexes)

    def take_deepstack(self, kwargs):
        features = kwargs.get("deepstack_visual_embeds")
        if features is None:
            return None
        mask = kwargs["visual_pos_masks"]
        kwargs["deepstack_visual_embeds"] = kwargs["visual_pos_masks"] = None
        return DeepStack(mask, list(features))

    def normalise_heads(self, attn, q, k):
        return attn.q_norm(q), attn.k_norm(k)

    # --- random-weight models -----------------------------------------------------------------------
    @classmethod
    def random_config(cls, spec, text, token_id):
        from transformers import Qwen3VLConfig, Qwen3VLMoeConfig

        text = dict(text, head_dim=spec["head_dim"], **spec.get("moe", {}))
        vision = dict(out_hidden_size=text["hidden_size"], **spec["vision"])
        config_class = Qwen3VLMoeConfig if "moe" in spec else Qwen3VLConfig
        return cls._qwen_config(config_class, spec, text, token_id, vision, patch_size=16,
                                mean_std=(QWEN3_MEAN, QWEN3_STD),
                                rope={"rope_theta": 5e6, "mrope_interleaved": True})


def frame_times(times: list[float], temporal_patch: int) -> tuple[float, ...]:
    """Seconds of each token frame: the mean of its first and last frame's times (the last
    frame repeats to fill the last temporal patch, as its pixels do)."""
    times = times + times[-1:] * (-len(times) % temporal_patch)
    return tuple((times[i] + times[i + temporal_patch - 1]) / 2
                 for i in range(0, len(times), temporal_patch))
