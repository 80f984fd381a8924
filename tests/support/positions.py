"""Qwen's reference M-RoPE rule, written out plainly from the rule (token by token, nothing
shared with sttm_core), to check the positions the runtime gives the model.

The rule (Qwen's own code; transformers 4.45 for Qwen2-VL, up to 5.2 for Qwen2.5-VL):
* a text token's id is the same on all three rows (t, h, w), one more than the previous token's,
  except that the first text token after a vision block gets max(every id so far) + 1;
* a vision block with merged grid (T, H, W) starting at id b (= max so far + 1, 0 at the very
  start) gives its token (t, y, x), in raster order, the ids (b + time(t), b + y, b + x), where
  time(t) = t (Qwen2-VL) or floor(t * seconds_per_patch * tokens_per_second) (Qwen2.5-VL video);
* a token after the prompt continues at max(all ids) + 1.
"""
from fractions import Fraction

import torch


def reference_positions(input_ids, vision_token, grids, merge=2, seconds=None,
                        tokens_per_second=None):
    """ids [3, L] of ONE unpadded prompt. input_ids: [L] ids; vision_token: the pad id of the
    blocks; grids: [(t, h, w), ...] patch grids before the 2x2 merge, in order; seconds: per
    block, seconds per temporal patch (exact: a float, computed as a Fraction here)."""
    ids = [int(i) for i in input_ids]
    out = [[0] * len(ids) for _ in range(3)]
    next_id, block, i = 0, 0, 0
    while i < len(ids):
        if ids[i] != vision_token:
            for row in out:
                row[i] = next_id
            next_id += 1
            i += 1
            continue
        t_count, h, w = grids[block]
        H, W = h // merge, w // merge
        start, largest = next_id, next_id
        for t in range(t_count):
            if tokens_per_second is None:
                time = t
            else:
                time = int(t * Fraction(seconds[block]) * tokens_per_second)  # floor, exact
            for y in range(H):
                for x in range(W):
                    assert ids[i] == vision_token, "grid larger than its run of tokens"
                    out[0][i], out[1][i], out[2][i] = start + time, start + y, start + x
                    largest = max(largest, start + time, start + y, start + x)
                    i += 1
        next_id = largest + 1
        block += 1
    return torch.tensor(out)


def next_position(positions) -> int:
    """Where the first token after the prompt goes: max(all ids) + 1."""
    return int(positions.max()) + 1


def reference_position_ids(loaded, inputs):
    """[3, B, L] reference ids of a left-padded batch of video prompts (one video per row, as
    support.model_inputs builds them), 0 on padding; None for 1D-RoPE models.

    A video whose token frames are separate runs (Qwen3-VL: a timestamp before each) is one
    block per token frame, each of grid (1, h, w): Qwen's rule for Qwen3-VL."""
    config = loaded.model.config
    if loaded.adapter.position_mode != "keep":
        return None
    seconds = inputs.get("second_per_grid_ts")
    tokens_per_second = None if seconds is None else config.vision_config.tokens_per_second
    ids, mask = inputs["input_ids"], inputs["attention_mask"].bool()
    out = torch.zeros(3, *ids.shape, dtype=torch.long)
    for row in range(ids.shape[0]):
        t, h, w = inputs["video_grid_thw"][row].tolist()
        row_ids = ids[row, mask[row]]
        is_video = (row_ids == config.video_token_id).int()
        runs = int((torch.diff(is_video, prepend=is_video.new_zeros(1)) == 1).sum())
        grids = [(t, h, w)] if runs == 1 else [(1, h, w)] * t
        row_seconds = None if seconds is None else [float(seconds[row])]
        out[:, row, mask[row]] = reference_positions(
            row_ids, config.video_token_id, grids, seconds=row_seconds,
            tokens_per_second=tokens_per_second)
    return out


def with_text_row(positions, attention_mask):
    """[3, B, L] -> [4, B, L] with row 0 the plain token index (what generate() passes)."""
    text = (attention_mask.long().cumsum(-1) - 1).clamp_min(0)
    return torch.cat([text[None], positions])
