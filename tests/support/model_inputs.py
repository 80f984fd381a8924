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
    # every video tensor of a batch stacks (or concatenates) its rows' along dim 0
    batched = {k: v.repeat(len(rows), *[1] * (v.dim() - 1)) for k, v in video.items()}
    inputs = dict(input_ids=input_ids, attention_mask=mask, **batched,
                  **adapter.prefill_inputs(input_ids))
    return inputs, len(prefix)
