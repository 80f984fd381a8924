"""Model inputs for the tiny checkpoints: a video prompt built the way the chat runtime builds it."""
import torch

MAX_PIXELS = 28 * 28 * 15  # 15 Qwen2-VL tokens per frame (84x140)


def small(loaded):
    """The model with at most MAX_PIXELS pixels per frame where its family resizes frames within
    a pixel range (its settings have one), so tests run on few tokens; fixed-size frames as
    they are."""
    return loaded.with_max_pixels(MAX_PIXELS) if "max_pixels" in loaded.settings else loaded


def small_frames(loaded):
    """Frame-size settings for at most 15 tokens per frame (Qwen-VL families; LLaVA ignores
    them): on 84x140 frames Qwen2-VL gets a 3x5 token grid, Qwen3-VL (32-pixel tokens) 3x4."""
    vision = loaded.model.config.vision_config
    side = vision.patch_size * getattr(vision, "spatial_merge_size", 2)
    return dict(min_pixels=4 * side * side, max_pixels=15 * side * side)


def prompt_inputs(loaded, frames, questions=("What happens?",), fps=4.0):
    """Batch of prompts (one per question, left-padded) over the same video."""
    adapter, tokenizer = loaded.adapter, loaded.tokenizer
    video, prompt = adapter.video_inputs(frames, {**loaded.settings, **small_frames(loaded)}, fps)
    prefix, closing = adapter.prompt_ids(tokenizer, prompt)
    rows = [prefix + tokenizer.encode(q, add_special_tokens=False) + closing for q in questions]
    length = max(map(len, rows))
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([[pad] * (length - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (length - len(r)) + [1] * len(r) for r in rows])
    # every video tensor of a batch stacks (or concatenates) its rows' along dim 0
    batched = {k: v.repeat(len(rows), *[1] * (v.dim() - 1)) for k, v in video.items()}
    inputs = dict(input_ids=input_ids, attention_mask=mask, **batched,
                  **adapter.prefill_inputs(input_ids))
    return inputs, len(prefix)
