"""Model inputs for the tiny checkpoints: a video prompt built the way the chat runtime builds it."""
import torch

SMALL_FRAMES = dict(min_pixels=56 * 56, max_pixels=28 * 28 * 15)  # Qwen: a 3x5 token grid


def prompt_inputs(loaded, frames, questions=("What happens?",), fps=4.0):
    """Batch of prompts (one per question, left-padded) over the same video."""
    adapter, tokenizer = loaded.adapter, loaded.tokenizer
    video, count = adapter.video_inputs(frames, {**loaded.settings, **SMALL_FRAMES}, fps)
    prefix, closing = adapter.prompt_ids(tokenizer, count)
    rows = [prefix + tokenizer.encode(q, add_special_tokens=False) + closing for q in questions]
    length = max(map(len, rows))
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([[pad] * (length - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (length - len(r)) + [1] * len(r) for r in rows])
    inputs = dict(input_ids=input_ids, attention_mask=mask)
    if adapter.family == "qwen2_vl":
        n = len(rows)
        inputs["mm_token_type_ids"] = (input_ids == adapter.video_token_id).int() * 2
        inputs["pixel_values_videos"] = video["pixel_values_videos"].repeat(n, 1)
        inputs["video_grid_thw"] = video["video_grid_thw"].repeat(n, 1)
        if "second_per_grid_ts" in video:
            inputs["second_per_grid_ts"] = video["second_per_grid_ts"].repeat(n)
    else:
        inputs["pixel_values_videos"] = video["pixel_values_videos"].repeat(len(rows), 1, 1, 1, 1)
    return inputs, len(prefix)
